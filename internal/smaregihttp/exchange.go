// Package smaregihttp is the HTTP plumbing both Smaregi clients share (the
// legacy API in internal/smaregi, the Platform API in
// internal/smaregiplatform): one pooled transport that never follows
// redirects, knowing whether a failed exchange may have reached the server
// and what that means for a retry, reading a bounded answer, Retry-After,
// jittered backoff, scrubbing secrets out of errors, and the call metrics.
// What each API means by an answer (error codes, problems, which calls
// write) stays in its client; this package holds only what is the same for
// both, so a fix here reaches both.
package smaregihttp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/stocksync/smaregi-operator/internal/answertext"
)

// MaxAnswerBytes caps one answer. A full page of either API is ~150 KB;
// anything near this cap is not an answer a client can use, and reading it
// whole would let a broken server exhaust the operator's memory.
const MaxAnswerBytes = 32 << 20

// sharedTransport serves every client built without an HTTPClient, so one
// operator with 1,000 stores, on either API, keeps one connection pool.
var sharedTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	return t
}()

// Client returns the *http.Client to send with: for nil, one on the shared
// pooled transport; otherwise a copy of hc (the caller's value is not
// modified) whose CheckRedirect never follows a redirect.
func Client(hc *http.Client) *http.Client {
	if hc == nil {
		return &http.Client{Transport: sharedTransport, CheckRedirect: noRedirects}
	}
	c := *hc
	c.CheckRedirect = noRedirects
	return &c
}

// noRedirects hands a 3xx back instead of following it: Go copies custom
// headers (the legacy X_access_token) and, to the same host, Authorization
// (a Bearer token or the Basic client secret) to the redirect target, even
// from https to http. Smaregi does not redirect API calls, so each client
// reports a 3xx as an error.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Send sends req with hc. When it fails, maybeSent tells whether request
// bytes may have left this process: for a write that decides between
// "safe to send again" and "maybe applied" (see Unanswered).
func Send(hc *http.Client, req *http.Request) (resp *http.Response, maybeSent bool, err error) {
	var traced, wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn:      func(string) { traced.Store(true) },
		WroteHeaders: func() { wrote.Store(true) },
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err = hc.Do(req)
	if err == nil {
		return resp, true, nil
	}
	maybeSent = wrote.Load()
	if !traced.Load() {
		// A transport that ignores traces (a test's RoundTripper, a
		// wrapper): only a failed dial proves nothing was sent.
		maybeSent = !isDialError(err)
	}
	return nil, maybeSent, err
}

func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// ReadAnswer reads resp's body into buf (reset first), at most
// MaxAnswerBytes. Its errors say the answer was lost after the request was
// sent; secrets are scrubbed out of them (Scrub).
func ReadAnswer(buf *bytes.Buffer, resp *http.Response, secrets ...string) error {
	return readAnswer(buf, resp, MaxAnswerBytes, secrets)
}

func readAnswer(buf *bytes.Buffer, resp *http.Response, limit int, secrets []string) error {
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, int64(limit)+1)); err != nil {
		return fmt.Errorf("read answer (HTTP %d): %w", resp.StatusCode, Scrub(err, secrets...))
	}
	if buf.Len() > limit {
		return fmt.Errorf("answer larger than %d bytes", limit)
	}
	return nil
}

// LooksLikeJSON reports whether an answer is worth decoding as JSON: a
// proxy's HTML page must be summarised (answertext.Opaque), not reported as
// a JSON syntax error.
func LooksLikeJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

// ParseRetryAfter reads a Retry-After header (seconds or an HTTP date); 0
// when absent, malformed or already past.
func ParseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// Scrub removes the secrets from err's text (answertext.Redact) while
// keeping the chain for errors.Is/As. When no secret is in the text (the
// common case) err is returned as it is.
func Scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := answertext.Redact(msg, secrets...); red != msg {
		return &scrubbedError{msg: red, err: err}
	}
	return err
}

type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }
