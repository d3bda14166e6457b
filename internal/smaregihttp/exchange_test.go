package smaregihttp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const secret = "tok-SECRET-2b8e6f0a1c9d4735"

// TestClientNeverFollowsRedirects: over real HTTP, a 302 comes back as the
// answer and its target is never called, whether the client is the default
// one or a copy of the caller's client that would follow redirects; the
// caller's value is left as it was.
func TestClientNeverFollowsRedirects(t *testing.T) {
	var reached atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached.Add(1) }))
	t.Cleanup(target.Close)
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusFound)
	}))
	t.Cleanup(origin.Close)

	callers := map[string]*http.Client{"default": nil, "caller's": {Timeout: 10 * time.Second}}
	for name, given := range callers {
		t.Run(name, func(t *testing.T) {
			hc := Client(given)
			if hc == given {
				t.Fatal("Client returned the caller's own value")
			}
			if given == nil && hc.Transport != sharedTransport {
				t.Fatal("the default client does not use the shared transport")
			}
			if given != nil && (given.CheckRedirect != nil || hc.Timeout != given.Timeout) {
				t.Fatalf("caller's client modified (CheckRedirect set: %v) or its Timeout not kept (%v)", given.CheckRedirect != nil, hc.Timeout)
			}
			resp, err := hc.Get(origin.URL)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d, want the 302 itself", resp.StatusCode)
			}
		})
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target was called %d times", n)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSendTellsWhetherTheRequestMayHaveLeft covers the facts a write's
// verdict rests on: a refused dial sent nothing; a connection cut after
// the request was written may have delivered it; a transport that ignores
// traces is trusted only with a dial error.
func TestSendTellsWhetherTheRequestMayHaveLeft(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	_ = ln.Close()

	cut := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(cut.Close)
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("{}")) }))
	t.Cleanup(ok.Close)

	opaque := func(err error) *http.Client {
		return &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, err })}
	}
	cases := []struct {
		name      string
		hc        *http.Client
		url       string
		maybeSent bool
	}{
		{"dial refused", Client(nil), "http://" + closedAddr + "/", false},
		{"cut after sending", Client(nil), cut.URL, true},
		{"untraced dial error", opaque(&net.OpError{Op: "dial", Err: errors.New("refused")}), ok.URL, false},
		{"untraced DNS error", opaque(&net.DNSError{Err: "no such host", Name: "x"}), ok.URL, false},
		{"untraced reset", opaque(errors.New("connection reset")), ok.URL, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, c.url, strings.NewReader("a=1"))
			if err != nil {
				t.Fatal(err)
			}
			resp, maybeSent, err := Send(c.hc, req)
			if err == nil {
				_ = resp.Body.Close()
				t.Fatal("want an error")
			}
			if maybeSent != c.maybeSent {
				t.Fatalf("maybeSent %v, want %v (error %v)", maybeSent, c.maybeSent, err)
			}
		})
	}

	req, _ := http.NewRequest(http.MethodGet, ok.URL, nil)
	resp, _, err := Send(Client(nil), req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
}

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

// TestReadAnswerIsBounded: an answer of exactly the limit is read; one byte
// more is refused; a read error loses the secret but keeps its chain.
func TestReadAnswerIsBounded(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("stale")
	answer := func(body io.Reader) *http.Response {
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(body)}
	}
	if err := readAnswer(&buf, answer(strings.NewReader("0123456789")), 10, nil); err != nil || buf.String() != "0123456789" {
		t.Fatalf("answer at the limit: %v, buffer %q", err, buf.String())
	}
	if err := readAnswer(&buf, answer(strings.NewReader("0123456789x")), 10, nil); err == nil || err.Error() != "answer larger than 10 bytes" {
		t.Fatalf("answer over the limit: %v", err)
	}
	cause := errors.New("connection reset by " + secret)
	err := ReadAnswer(&buf, answer(failingReader{cause}), secret)
	if err == nil || strings.Contains(err.Error(), secret) || !errors.Is(err, cause) ||
		!strings.HasPrefix(err.Error(), "read answer (HTTP 200): connection reset by [redacted]") {
		t.Fatalf("read error: %v", err)
	}
}

func TestLooksLikeJSON(t *testing.T) {
	for in, want := range map[string]bool{
		`{"a":1}`: true, " \r\n\t[1]": true, "": false, "  ": false,
		"<html>": false, "null": false,
	} {
		if got := LooksLikeJSON([]byte(in)); got != want {
			t.Errorf("LooksLikeJSON(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 3 ":                           3 * time.Second,
		"0":                             0,
		"-1":                            0,
		"soon":                          0,
		"Wed, 21 Oct 2015 07:28:00 GMT": 0, // past
	} {
		if got := ParseRetryAfter(in); got != want {
			t.Errorf("ParseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
	future := time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)
	if got := ParseRetryAfter(" " + future + " "); got <= 0 || got > time.Hour {
		t.Errorf("ParseRetryAfter(an hour ahead) = %v", got)
	}
}

func TestScrub(t *testing.T) {
	if Scrub(nil, secret) != nil {
		t.Fatal("Scrub(nil) is not nil")
	}
	plain := context.DeadlineExceeded
	if got := Scrub(plain, secret, ""); got != plain {
		t.Fatalf("an error without a secret was replaced: %v", got)
	}
	got := Scrub(&net.OpError{Op: "read", Err: errors.New("peer said " + secret)}, "", secret)
	var op *net.OpError
	if strings.Contains(got.Error(), secret) || !strings.Contains(got.Error(), "[redacted]") || !errors.As(got, &op) {
		t.Fatalf("Scrub = %v (chain kept: %v)", got, op != nil)
	}
}
