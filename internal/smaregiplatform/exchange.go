package smaregiplatform

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
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
		wait := smaregihttp.Backoff(c.backoff.Initial, c.backoff.Max, attempt)
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
		if cerr := smaregihttp.Sleep(ctx, wait); cerr != nil {
			return h, fmt.Errorf("%w (gave up retrying: %w)", err, cerr)
		}
		if throttled {
			c.metrics.retryAfterWait.Observe(time.Since(start).Seconds())
		}
	}
}

// attempt performs one exchange after the limiter and records its metrics.
func (c *Client) attempt(ctx context.Context, r request, auth string, buf *bytes.Buffer, decode func([]byte) error) (http.Header, error) {
	lim := c.readLimiter
	if isWriteCall(r.call) {
		lim = c.writeLimiter
	}
	if err := c.metrics.calls.WaitLimiter(ctx, lim); err != nil {
		err = &TransportError{Call: r.call, Err: fmt.Errorf("wait for the app and contract's rate limiter: %w", err)}
		c.metrics.calls.Count(r.call, outcomeOf(err))
		return nil, err
	}
	start := time.Now()
	h, err := c.exchange(ctx, r, auth, buf, decode)
	c.metrics.calls.Observe(r.call, outcomeOf(err), start)
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
	resp, maybeSent, err := smaregihttp.Send(c.http, req)
	if err != nil {
		return nil, &TransportError{Call: r.call, MaybeSent: maybeSent, Err: c.scrub(err)}
	}
	defer resp.Body.Close()
	if err := smaregihttp.ReadAnswer(buf, resp, c.secrets()...); err != nil {
		return nil, &TransportError{Call: r.call, MaybeSent: true, Err: err}
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
	if !smaregihttp.LooksLikeJSON(b) {
		return nil, &TransportError{Call: r.call, MaybeSent: true,
			Err: fmt.Errorf("HTTP %d with a non-JSON answer: %s", resp.StatusCode, c.describeOpaque(resp, b))}
	}
	if err := decode(b); err != nil {
		return nil, &TransportError{Call: r.call, MaybeSent: true, Err: fmt.Errorf("decode answer: %w", c.scrub(err))}
	}
	return resp.Header, nil
}
