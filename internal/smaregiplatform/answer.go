package smaregiplatform

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/stocksync/smaregi-operator/internal/answertext"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// errorBody is an RFC 7807 problem or an OAuth2 error.
type errorBody struct {
	Type             string       `json:"type"`
	Title            string       `json:"title"`
	Status           smaregi.Flex `json:"status"`
	Detail           string       `json:"detail"`
	Error            string       `json:"error"`
	ErrorDescription string       `json:"error_description"`
}

func (c *Client) apiError(call string, resp *http.Response, body []byte) error {
	ae := &APIError{Call: call, HTTPStatus: resp.StatusCode}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		ae.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"))
	}
	var eb errorBody
	if looksLikeJSON(body) && json.Unmarshal(body, &eb) == nil && (eb.Title != "" || eb.Detail != "" || eb.Type != "" || eb.Error != "") {
		ae.Problem = true
		ae.Type, ae.Title = c.safeText(eb.Type), c.safeText(eb.Title)
		ae.Detail = c.safeText(eb.Detail)
		if eb.Error != "" {
			ae.OAuthError = c.safeText(eb.Error)
			ae.Detail = c.safeText(eb.ErrorDescription)
		}
		return ae
	}
	ae.Detail = c.describeOpaque(resp, body)
	return ae
}

// describeOpaque summarises a non-JSON answer (answertext.Opaque).
func (c *Client) describeOpaque(resp *http.Response, body []byte) string {
	return answertext.Opaque(resp.Header.Get("Content-Type"), body, c.secrets()...)
}

// safeText makes server-supplied text fit for errors, status and events,
// the client secret and Basic credentials removed (answertext.Safe).
func (c *Client) safeText(s string) string { return answertext.Safe(s, c.secrets()...) }

// secrets are what must never leave in a text: the client secret and the
// Basic credentials made from it.
func (c *Client) secrets() []string {
	return []string{c.secret, strings.TrimPrefix(c.basicAuth, "Basic ")}
}

func (c *Client) redact(s string) string {
	for _, secret := range c.secrets() {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// scrub removes the secret from an error's text while keeping the chain for
// errors.Is/As.
func (c *Client) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if red := c.redact(msg); red != msg {
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

func looksLikeJSON(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && (b[0] == '{' || b[0] == '[')
}

func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

func parseRetryAfter(v string) time.Duration {
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
