package smaregiplatform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"
)

// do runs an API call with a Bearer token: on a 401 the token is dropped and
// the call made once more with a new one (a 401 applies nothing, so this is
// safe for writes), and transient failures are retried (see retry).
func (c *Client) do(ctx context.Context, r request, buf *bytes.Buffer, decode func([]byte) error) (http.Header, error) {
	for refreshed := false; ; refreshed = true {
		tok, err := c.token(ctx)
		if err != nil {
			return nil, fmt.Errorf("obtain an access token for contract %s: %w", c.contractID, err)
		}
		h, err := c.retryWith(ctx, r, "Bearer "+tok, buf, decode)
		var ae *APIError
		if err != nil && errors.As(err, &ae) && ae.HTTPStatus == http.StatusUnauthorized {
			if !refreshed {
				c.tokens.invalidate(c.tokenKey, tok)
				continue
			}
			ae.Refreshed = true
		}
		return h, err
	}
}

func (c *Client) retry(ctx context.Context, r request, buf *bytes.Buffer, decode func([]byte) error) (http.Header, error) {
	return c.retryWith(ctx, r, c.basicAuth, buf, decode)
}

// retryWith makes bounded, jittered attempts while the failure is transient
// (for writes: only when nothing was applied). A 429's Retry-After is
// honoured up to MaxRetryAfter; a longer one is returned to the caller.
func (c *Client) retryWith(ctx context.Context, r request, auth string, buf *bytes.Buffer, decode func([]byte) error) (http.Header, error) {
	for attempt := 1; ; attempt++ {
		h, err := c.attempt(ctx, r, auth, buf, decode)
		if err == nil || attempt >= c.maxAttempts || !IsTransient(err) || ctx.Err() != nil {
			return h, err
		}
		wait := c.backoffFor(attempt)
		var ae *APIError
		throttled := errors.As(err, &ae) && ae.HTTPStatus == http.StatusTooManyRequests
		if throttled || (ae != nil && ae.RetryAfter > 0) {
			if ae.RetryAfter > c.maxRetry {
				return h, err
			}
			if ae.RetryAfter > 0 {
				// Smaregi said when; sooner would only draw another 429
				// (and Smaregi refuses persistent offenders for longer).
				wait = ae.RetryAfter
			}
		}
		log.FromContext(ctx).V(1).Info("retrying Smaregi Platform call", "call", r.call, "attempt", attempt,
			"wait", wait.String(), "error", err.Error())
		start := time.Now()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return h, fmt.Errorf("%w (gave up retrying: %w)", err, ctx.Err())
		case <-t.C:
		}
		if throttled {
			c.metrics.retryAfterWait.Observe(time.Since(start).Seconds())
		}
	}
}

// backoffFor: half the exponential step plus a random half ("equal
// jitter"), as in the legacy client.
func (c *Client) backoffFor(attempt int) time.Duration {
	ceil := c.backoff.Initial << min(attempt-1, 20)
	if ceil <= 0 || ceil > c.backoff.Max {
		ceil = c.backoff.Max
	}
	half := ceil / 2
	return half + time.Duration(rand.Int64N(int64(ceil-half)+1))
}

// attempt performs one exchange after the limiter and records its metrics.
func (c *Client) attempt(ctx context.Context, r request, auth string, buf *bytes.Buffer, decode func([]byte) error) (http.Header, error) {
	lim := c.readLimiter
	if isWriteCall(r.call) {
		lim = c.writeLimiter
	}
	if lim != nil {
		start := time.Now()
		if err := lim.Wait(ctx); err != nil {
			err = &TransportError{Call: r.call, Err: fmt.Errorf("wait for the app and contract's rate limiter: %w", err)}
			c.metrics.requests.WithLabelValues(r.call, outcomeOf(err)).Inc()
			return nil, err
		}
		c.metrics.limitWait.Observe(time.Since(start).Seconds())
	}
	start := time.Now()
	h, err := c.exchange(ctx, r, auth, buf, decode)
	c.metrics.duration.WithLabelValues(r.call).Observe(time.Since(start).Seconds())
	c.metrics.requests.WithLabelValues(r.call, outcomeOf(err)).Inc()
	var ae *APIError
	if errors.As(err, &ae) && ae.HTTPStatus == http.StatusTooManyRequests {
		c.metrics.throttled.WithLabelValues(r.call).Inc()
	}
	return h, err
}

func (c *Client) exchange(ctx context.Context, r request, auth string, buf *bytes.Buffer, decode func([]byte) error) (http.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	switch {
	case r.form != "":
		body = strings.NewReader(r.form)
	case r.body != nil:
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, r.url, body)
	if err != nil {
		return nil, &TransportError{Call: r.call, Err: fmt.Errorf("build request: %w", err)}
	}
	switch {
	case r.form != "":
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	case r.body != nil:
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", auth)

	// Whether request bytes may have left this process decides whether a
	// failed write is ambiguous or safely retryable.
	var traced, wrote atomic.Bool
	trace := &httptrace.ClientTrace{
		GetConn:      func(string) { traced.Store(true) },
		WroteHeaders: func() { wrote.Store(true) },
	}
	req = req.WithContext(httptrace.WithClientTrace(ctx, trace))
	resp, err := c.http.Do(req)
	if err != nil {
		maybeSent := wrote.Load()
		if !traced.Load() {
			maybeSent = !isDialError(err)
		}
		return nil, &TransportError{Call: r.call, MaybeSent: maybeSent, Err: c.scrub(err)}
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(resp.Body, maxBodyBytes+1)); err != nil {
		return nil, &TransportError{Call: r.call, MaybeSent: true, Err: fmt.Errorf("read answer (HTTP %d): %w", resp.StatusCode, c.scrub(err))}
	}
	if buf.Len() > maxBodyBytes {
		return nil, &TransportError{Call: r.call, MaybeSent: true, Err: fmt.Errorf("answer larger than %d bytes", maxBodyBytes)}
	}
	b := buf.Bytes()
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		// The Location is left out: it may carry a token or point at an
		// attacker's host, and this text can reach status.
		return nil, &APIError{Call: r.call, HTTPStatus: resp.StatusCode,
			Detail: "redirect not followed (Smaregi does not redirect API calls; check spec.endpoint and spec.tokenEndpoint)"}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, c.apiError(r.call, resp, b)
	}
	if !looksLikeJSON(b) {
		return nil, &TransportError{Call: r.call, MaybeSent: true,
			Err: fmt.Errorf("HTTP %d with a non-JSON answer: %s", resp.StatusCode, c.describeOpaque(resp, b))}
	}
	if err := decode(b); err != nil {
		return nil, &TransportError{Call: r.call, MaybeSent: true, Err: fmt.Errorf("decode answer: %w", c.scrub(err))}
	}
	return resp.Header, nil
}
