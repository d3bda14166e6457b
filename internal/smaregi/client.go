// Package smaregi is a typed client for the legacy Smaregi API (スマレジAPI):
// stock reads streamed page by page, batched stock updates, product code
// lookups, typed errors, one rate limiter per contract, retries only where a
// retry is safe, and Prometheus metrics. The protocol is described in
// docs/smaregi-api.md.
package smaregi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stocksync/smaregi-operator/internal/answertext"
	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
)

// DefaultEndpoint is the legacy API URL shown in every shop's admin screen.
const DefaultEndpoint = "https://webapi.smaregi.jp/access/"

// Protocol limits (docs/smaregi-api.md 1.2, 1.3).
const (
	MaxPageSize  = 1000 // rows per stock_ref page
	MaxBatchSize = 500  // rows per stock_upd call
)

// Defaults for Options left zero.
const (
	DefaultMaxReadAttempts = 4
	DefaultRequestTimeout  = 60 * time.Second
	defaultBackoffInitial  = 250 * time.Millisecond
	defaultBackoffMax      = 10 * time.Second
)

// Backoff sets the wait between read attempts: exponential from Initial,
// capped at Max, with jitter so that many stores of one contract do not
// retry in lockstep.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Options configures a Client.
type Options struct {
	// Endpoint is the legacy API URL; defaults to DefaultEndpoint.
	Endpoint string
	// ContractID (契約ID) and AccessToken (アクセストークン) authenticate every call.
	ContractID  string
	AccessToken string
	// HTTPClient sends the calls; defaults to a client with its own pooled
	// transport. Its Timeout, if set, applies on top of RequestTimeout. The
	// client uses a copy whose CheckRedirect never follows a redirect (the
	// caller's value is not modified): a redirect would carry
	// X_access_token to wherever the Location points.
	HTTPClient *http.Client
	// Limiters, if set, throttles calls through the contract's shared limiter.
	Limiters *LimiterRegistry
	// MaxReadAttempts bounds attempts of one read (first try included);
	// defaults to DefaultMaxReadAttempts. Writes are always sent once.
	MaxReadAttempts int
	// Backoff between read attempts; zero fields take defaults (250ms, 10s).
	Backoff Backoff
	// RequestTimeout bounds one attempt; defaults to DefaultRequestTimeout.
	RequestTimeout time.Duration
	// PageSize is the stock_ref page size, 1..MaxPageSize; defaults to
	// MaxPageSize. Smaller sizes exist for tests and slow links.
	PageSize int
	// BatchSize is the number of rows per stock_upd call, 1..MaxBatchSize;
	// defaults to MaxBatchSize.
	BatchSize int
}

// Client calls the legacy Smaregi API for one contract. It is safe for
// concurrent use.
type Client struct {
	endpoint    string
	contractID  string
	token       string
	http        *http.Client
	limiter     smaregihttp.Limiter
	maxAttempts int
	backoff     Backoff
	timeout     time.Duration
	pageSize    int
	batchSize   int
	metrics     *smaregihttp.CallMetrics
}

// New validates opts and returns a client. Errors never contain the token.
func New(opts Options) (*Client, error) {
	endpoint := opts.Endpoint
	if endpoint == "" {
		endpoint = DefaultEndpoint
	}
	u, err := url.Parse(endpoint)
	// The parse error itself is not wrapped: it quotes the whole URL, which
	// a careless configuration might have stuffed with credentials.
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, errors.New("smaregi: invalid endpoint: want an absolute http(s) URL such as " + DefaultEndpoint)
	}
	if u.User != nil {
		return nil, errors.New("smaregi: invalid endpoint: credentials in the URL are not allowed")
	}
	if u.Fragment != "" {
		return nil, errors.New("smaregi: invalid endpoint: a URL fragment is not allowed")
	}
	if strings.TrimSpace(opts.ContractID) == "" {
		return nil, errors.New("smaregi: contract ID is empty")
	}
	if strings.ContainsAny(opts.ContractID, "\r\n") {
		return nil, errors.New("smaregi: contract ID contains a line break")
	}
	if strings.TrimSpace(opts.AccessToken) == "" {
		return nil, errors.New("smaregi: access token is empty")
	}
	if strings.ContainsAny(opts.AccessToken, "\r\n") {
		// A Secret written with a trailing newline is a common mistake; say
		// so without echoing the value.
		return nil, errors.New("smaregi: access token contains a line break (check the Secret for a trailing newline)")
	}
	c := &Client{
		endpoint:    u.String(),
		contractID:  opts.ContractID,
		token:       opts.AccessToken,
		maxAttempts: opts.MaxReadAttempts,
		backoff:     opts.Backoff,
		timeout:     opts.RequestTimeout,
		pageSize:    opts.PageSize,
		batchSize:   opts.BatchSize,
		metrics:     getMetrics(),
	}
	// The legacy API never redirects; following one would carry
	// X_access_token to wherever the Location points (see exchange).
	c.http = smaregihttp.Client(opts.HTTPClient)
	if opts.Limiters != nil {
		c.limiter = opts.Limiters.For(opts.ContractID)
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = DefaultMaxReadAttempts
	}
	if c.backoff.Initial <= 0 {
		c.backoff.Initial = defaultBackoffInitial
	}
	if c.backoff.Max <= 0 {
		c.backoff.Max = defaultBackoffMax
	}
	if c.backoff.Max < c.backoff.Initial {
		c.backoff.Max = c.backoff.Initial
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.pageSize <= 0 || c.pageSize > MaxPageSize {
		c.pageSize = MaxPageSize
	}
	if c.batchSize <= 0 || c.batchSize > MaxBatchSize {
		c.batchSize = MaxBatchSize
	}
	return c, nil
}

// attemptResult is what one HTTP exchange produced besides its error.
type attemptResult struct {
	retryAfter time.Duration
}

// call runs proc once (writes) or with bounded, jittered retries on
// transient errors (reads). decode receives the body of a 2xx JSON answer;
// it must not keep the slice.
func (c *Client) call(ctx context.Context, proc string, params []byte, buf *bytes.Buffer, decode func([]byte) error) error {
	attempts := c.maxAttempts
	if isWriteProc(proc) {
		attempts = 1 // a relative update is not idempotent: never resend
	}
	for attempt := 1; ; attempt++ {
		res, err := c.attempt(ctx, proc, params, buf, decode)
		if err == nil || attempt >= attempts || !IsTransient(err) || ctx.Err() != nil {
			return err
		}
		wait := smaregihttp.Backoff(c.backoff.Initial, c.backoff.Max, attempt)
		if res.retryAfter > wait {
			wait = min(res.retryAfter, c.backoff.Max)
		}
		log.FromContext(ctx).V(1).Info("retrying Smaregi read", "proc", proc, "attempt", attempt, "wait", wait.String(), "error", err.Error())
		if cerr := smaregihttp.Sleep(ctx, wait); cerr != nil {
			// Keep the last real failure (it says more, and keeps its
			// class) and the context's reason for errors.Is.
			return fmt.Errorf("%w (gave up retrying: %w)", err, cerr)
		}
	}
}

// attempt performs one HTTP exchange and records its metrics.
func (c *Client) attempt(ctx context.Context, proc string, params []byte, buf *bytes.Buffer, decode func([]byte) error) (attemptResult, error) {
	if err := c.metrics.WaitLimiter(ctx, c.limiter); err != nil {
		err = &TransportError{ProcName: proc, Err: fmt.Errorf("wait for the contract's rate limiter: %w", err)}
		c.metrics.Count(proc, outcomeOf(err))
		return attemptResult{}, err
	}
	start := time.Now()
	res, err := c.exchange(ctx, proc, params, buf, decode)
	c.metrics.Observe(proc, outcomeOf(err), start)
	return res, err
}

func (c *Client) exchange(ctx context.Context, proc string, params []byte, buf *bytes.Buffer, decode func([]byte) error) (attemptResult, error) {
	var res attemptResult
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	form := "proc_name=" + url.QueryEscape(proc) + "&params=" + url.QueryEscape(string(params))
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, strings.NewReader(form))
	if err != nil {
		return res, &TransportError{ProcName: proc, Err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	req.Header.Set("Accept", "application/json")
	// Set directly, not via Header.Set, to keep the documented spelling
	// with underscores and lower case.
	req.Header["X_contract_id"] = []string{c.contractID}
	req.Header["X_access_token"] = []string{c.token}

	// Whether request bytes may have left this process decides whether a
	// failed write is ambiguous (maybe applied) or safely retryable.
	resp, maybeSent, err := smaregihttp.Send(c.http, req)
	if err != nil {
		return res, &TransportError{ProcName: proc, MaybeSent: maybeSent, Err: c.scrub(err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.retryAfter = smaregihttp.ParseRetryAfter(resp.Header.Get("Retry-After"))
	}
	if err := smaregihttp.ReadAnswer(buf, resp, c.token); err != nil {
		return res, &TransportError{ProcName: proc, MaybeSent: true, Err: err}
	}
	body := buf.Bytes()

	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		// The Location is left out on purpose: it may carry a token or
		// point at an attacker's host, and this text can reach status.
		return res, &APIError{ProcName: proc, HTTPStatus: resp.StatusCode,
			Message: "redirect not followed (the legacy API never redirects; check spec.endpoint)"}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return res, c.apiError(proc, resp, body)
	}
	// Some servers answer errors with 200 and an error body.
	if code, msg, ok := c.parseErrorBody(body); ok {
		return res, &APIError{ProcName: proc, HTTPStatus: resp.StatusCode, Code: code, Message: msg}
	}
	if !smaregihttp.LooksLikeJSON(body) {
		// Something answered 200 with a page we cannot read: for a write we
		// do not know whether Smaregi applied it, so it is a transport-level
		// failure with the request sent (ambiguous for writes).
		return res, &TransportError{ProcName: proc, MaybeSent: true, Err: fmt.Errorf("HTTP %d with a non-JSON answer: %s", resp.StatusCode, c.describeOpaque(resp, body))}
	}
	if err := decode(body); err != nil {
		return res, &TransportError{ProcName: proc, MaybeSent: true, Err: fmt.Errorf("decode answer: %w", c.scrub(err))}
	}
	return res, nil
}

// errorBody is Smaregi's JSON error answer.
type errorBody struct {
	ErrorCode        *Flex `json:"error_code"`
	Error            Flex  `json:"error"`
	ErrorDescription Flex  `json:"error_description"`
}

// parseErrorBody recognises {"error_code":…} answers. Success bodies are
// checked cheaply first: they never contain the key.
func (c *Client) parseErrorBody(body []byte) (int, string, bool) {
	if !bytes.Contains(body, []byte(`"error_code"`)) && !bytes.Contains(body, []byte(`"error"`)) {
		return 0, "", false
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil {
		return 0, "", false
	}
	if eb.ErrorCode == nil && eb.Error == "" {
		return 0, "", false
	}
	code := 0
	if eb.ErrorCode != nil {
		if n, err := eb.ErrorCode.Int64(); err == nil {
			code = int(n)
		}
	}
	msg := string(eb.Error)
	if eb.ErrorDescription != "" && string(eb.ErrorDescription) != msg {
		if msg != "" {
			msg += ": "
		}
		msg += string(eb.ErrorDescription)
	}
	return code, c.safeText(msg), true
}

func (c *Client) apiError(proc string, resp *http.Response, body []byte) error {
	ae := &APIError{ProcName: proc, HTTPStatus: resp.StatusCode}
	if code, msg, ok := c.parseErrorBody(body); ok {
		ae.Code, ae.Message = code, msg
		return ae
	}
	ae.Message = c.describeOpaque(resp, body)
	return ae
}

// describeOpaque summarises a non-JSON answer (answertext.Opaque).
func (c *Client) describeOpaque(resp *http.Response, body []byte) string {
	return answertext.Opaque(resp.Header.Get("Content-Type"), body, c.token)
}

// safeText makes server-supplied text fit for errors, status and events,
// the token removed (answertext.Safe).
func (c *Client) safeText(s string) string { return answertext.Safe(s, c.token) }

// scrub removes the token from an error's text (smaregihttp.Scrub).
func (c *Client) scrub(err error) error { return smaregihttp.Scrub(err, c.token) }
