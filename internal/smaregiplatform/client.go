// Package smaregiplatform is a typed client for Smaregi's Platform API (the
// successor of the legacy スマレジAPI; ../shared/docs/smaregi-platform-api.md):
// client-credentials tokens cached per contract and client, stock listings
// (full, and incremental within the 31-day window) paged by `page` or by
// `Link: rel="next"`, relative adds with a memo, bulk adds with a callback,
// the stock change history for resolving ambiguous writes, and product
// lookups by code. It follows the legacy client's (internal/smaregi)
// conventions: typed errors with IsTransient/IsAmbiguous/IsConfigError, one
// rate limiter per app and contract from a smaregi.LimiterRegistry, retries
// only where they are safe, no redirects, Prometheus metrics, and rows of
// the legacy client's types (smaregi.StockRow, smaregi.HistoryRow).
package smaregiplatform

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// Default bases of the production service; the sandbox is
// https://api.smaregi.dev/ and https://id.smaregi.dev/.
const (
	DefaultEndpoint      = "https://api.smaregi.jp/"
	DefaultTokenEndpoint = "https://id.smaregi.jp/"
)

// Scopes the operator uses.
const (
	ScopeStockRead        = "pos.stock:read"
	ScopeStockWrite       = "pos.stock:write"
	ScopeStockChangesRead = "pos.stock-changes:read"
	ScopeProductsRead     = "pos.products:read"
)

// DefaultScopes are requested unless Options.Scopes says otherwise: stock
// read and write, the change history (to resolve ambiguous writes) and
// products (code lookups).
var DefaultScopes = []string{ScopeStockRead, ScopeStockWrite, ScopeStockChangesRead, ScopeProductsRead}

// Protocol limits.
const (
	MaxPageSize = 1000 // rows per list page (`limit`)
	MaxBulkRows = 100  // rows per bulk request
	MaxMemo     = 100  // characters of a memo
	// MaxWindow is the longest upd_date_time-from/-to window of a list.
	MaxWindow = 31 * 24 * time.Hour
)

// Defaults for Options left zero.
const (
	DefaultMaxAttempts    = 4
	DefaultRequestTimeout = 60 * time.Second
	DefaultMaxRetryAfter  = 30 * time.Second
	// DefaultWindowMargin is kept free at the young end of the 31-day
	// window, so that an incremental listing that takes a while, or a
	// server clock a little ahead of ours, still ends after "now".
	DefaultWindowMargin = time.Hour
	defaultBackoffInit  = 250 * time.Millisecond
	defaultBackoffMax   = 10 * time.Second
	maxBodyBytes        = 32 << 20
)

// Options configures a Client.
type Options struct {
	// Endpoint is the API base (DefaultEndpoint); calls go to
	// {Endpoint}{contract}/pos/….
	Endpoint string
	// TokenEndpoint is the identity base (DefaultTokenEndpoint); tokens
	// come from {TokenEndpoint}app/{contract}/token.
	TokenEndpoint string
	// ContractID is the shop's contract; ClientID and ClientSecret are the
	// app's credentials from the developer console. The secret never
	// enters an error or a log line.
	ContractID   string
	ClientID     string
	ClientSecret string
	// Scopes requested with every token; default DefaultScopes.
	Scopes []string
	// HTTPClient sends the calls; default: a shared pooled transport. A
	// copy that never follows redirects is used.
	HTTPClient *http.Client
	// Limiters throttles reads and token calls, WriteLimiters writes (the
	// API counts them apart: 50 reads and 20 writes a second in
	// production); both keyed by LimiterKey, so every client of one app
	// and contract shares them. WriteLimiters nil: writes use Limiters.
	// Both nil: unthrottled.
	Limiters      *smaregi.LimiterRegistry
	WriteLimiters *smaregi.LimiterRegistry
	// Tokens is the token cache to share; nil: a cache of this client's own.
	Tokens *TokenCache
	// MaxAttempts bounds attempts of one call (first try included) on
	// transient errors; default DefaultMaxAttempts. A write is retried only
	// when it was certainly not applied (429, nothing sent).
	MaxAttempts int
	// Backoff between attempts; zero fields take 250ms and 10s.
	Backoff smaregi.Backoff
	// MaxRetryAfter is the longest Retry-After honoured by waiting; a
	// longer one is returned as the error. Default DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// RequestTimeout bounds one attempt; default DefaultRequestTimeout.
	RequestTimeout time.Duration
	// PageSize is the `limit` of list calls, 1..MaxPageSize (default).
	PageSize int
	// WindowMargin: see DefaultWindowMargin.
	WindowMargin time.Duration
	// Clock is used for token lifetimes and the 31-day window; default
	// time.Now. (Tokens keep the TokenCache's clock when one is shared.)
	Clock func() time.Time
}

// Client calls the Platform API for one contract as one app. It is safe for
// concurrent use.
type Client struct {
	apiBase      *url.URL // {endpoint}{contract}/pos/
	tokenURL     string
	contractID   string
	clientID     string
	secret       string
	basicAuth    string // "Basic …", a secret too
	scopes       string
	http         *http.Client
	readLimiter  limiter
	writeLimiter limiter
	tokens       *TokenCache
	tokenKey     tokenKey
	maxAttempts  int
	backoff      smaregi.Backoff
	maxRetry     time.Duration
	timeout      time.Duration
	pageSize     int
	margin       time.Duration
	now          func() time.Time
	metrics      *clientMetrics
}

type limiter interface {
	Wait(ctx context.Context) error
}

// LimiterKey is the key of an app's and contract's limiter in a
// smaregi.LimiterRegistry. It cannot collide with a legacy contract ID (those
// hold no NUL), so one registry may serve both APIs.
func LimiterKey(clientID, contractID string) string {
	return "platform\x00" + clientID + "\x00" + contractID
}

// New validates opts and returns a client. Errors never contain the secret.
func New(opts Options) (*Client, error) {
	api, err := parseBase("endpoint", opts.Endpoint, DefaultEndpoint)
	if err != nil {
		return nil, err
	}
	idp, err := parseBase("token endpoint", opts.TokenEndpoint, DefaultTokenEndpoint)
	if err != nil {
		return nil, err
	}
	if !validContract(opts.ContractID) {
		return nil, errors.New("smaregi platform: contract ID must be 1 to 64 letters, digits, '-' or '_'")
	}
	if strings.TrimSpace(opts.ClientID) == "" {
		return nil, errors.New("smaregi platform: client ID is empty")
	}
	if strings.ContainsAny(opts.ClientID, "\r\n:") {
		return nil, errors.New("smaregi platform: client ID contains a line break or ':' (check the Secret for a trailing newline)")
	}
	if strings.TrimSpace(opts.ClientSecret) == "" {
		return nil, errors.New("smaregi platform: client secret is empty")
	}
	if strings.ContainsAny(opts.ClientSecret, "\r\n") {
		return nil, errors.New("smaregi platform: client secret contains a line break (check the Secret for a trailing newline)")
	}
	scopes := opts.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	for _, s := range scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return nil, fmt.Errorf("smaregi platform: scope %q is not valid", s)
		}
	}
	c := &Client{
		apiBase:     api.JoinPath(opts.ContractID, "pos"),
		tokenURL:    idp.JoinPath("app", opts.ContractID, "token").String(),
		contractID:  opts.ContractID,
		clientID:    opts.ClientID,
		secret:      opts.ClientSecret,
		basicAuth:   "Basic " + base64.StdEncoding.EncodeToString([]byte(opts.ClientID+":"+opts.ClientSecret)),
		scopes:      strings.Join(scopes, " "),
		http:        opts.HTTPClient,
		tokens:      opts.Tokens,
		maxAttempts: opts.MaxAttempts,
		backoff:     opts.Backoff,
		maxRetry:    opts.MaxRetryAfter,
		timeout:     opts.RequestTimeout,
		pageSize:    opts.PageSize,
		margin:      opts.WindowMargin,
		now:         opts.Clock,
		metrics:     getMetrics(),
	}
	c.apiBase.Path += "/"
	if c.http == nil {
		c.http = defaultHTTPClient()
	} else {
		hc := *c.http
		hc.CheckRedirect = noRedirects
		c.http = &hc
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.tokens == nil {
		c.tokens = NewTokenCache(c.now)
	}
	c.tokenKey = newTokenKey(c.tokenURL, c.contractID, c.clientID, c.secret, c.scopes)
	key := LimiterKey(opts.ClientID, opts.ContractID)
	if opts.Limiters != nil {
		c.readLimiter = opts.Limiters.For(key)
		c.writeLimiter = c.readLimiter
	}
	if opts.WriteLimiters != nil {
		c.writeLimiter = opts.WriteLimiters.For(key)
	}
	if c.maxAttempts <= 0 {
		c.maxAttempts = DefaultMaxAttempts
	}
	if c.backoff.Initial <= 0 {
		c.backoff.Initial = defaultBackoffInit
	}
	if c.backoff.Max <= 0 {
		c.backoff.Max = defaultBackoffMax
	}
	c.backoff.Max = max(c.backoff.Max, c.backoff.Initial)
	if c.maxRetry <= 0 {
		c.maxRetry = DefaultMaxRetryAfter
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.pageSize <= 0 || c.pageSize > MaxPageSize {
		c.pageSize = MaxPageSize
	}
	if c.margin <= 0 {
		c.margin = DefaultWindowMargin
	}
	return c, nil
}

// parseBase checks a base URL. The parse error is not wrapped: it quotes the
// URL, which a careless configuration might have stuffed with credentials.
func parseBase(what, raw, def string) (*url.URL, error) {
	if raw == "" {
		raw = def
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("smaregi platform: invalid %s: want an absolute http(s) URL such as %s", what, def)
	}
	if u.User != nil {
		return nil, fmt.Errorf("smaregi platform: invalid %s: credentials in the URL are not allowed", what)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("smaregi platform: invalid %s: a query or fragment is not allowed", what)
	}
	return u, nil
}

func validContract(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-' || b == '_') {
			return false
		}
	}
	return true
}

// sharedTransport is used by every client built without an HTTPClient, so
// all stores keep one connection pool.
var sharedTransport = func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	return t
}()

func defaultHTTPClient() *http.Client {
	return &http.Client{Transport: sharedTransport, CheckRedirect: noRedirects}
}

// noRedirects hands a 3xx back instead of following it: Go would copy the
// Authorization header (Bearer token, or the Basic client secret) to the
// target. Smaregi does not redirect API calls; a 3xx is reported as an error.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// request is one HTTP exchange to make.
type request struct {
	call   string
	method string
	url    string
	// form is set for the token call (Basic auth), body for JSON writes.
	form string
	body []byte
}

// token returns the cached token, fetching one when needed.
func (c *Client) token(ctx context.Context) (string, error) {
	return c.tokens.get(ctx, c.tokenKey, c.fetchToken)
}

type tokenAnswer struct {
	AccessToken string       `json:"access_token"`
	TokenType   string       `json:"token_type"`
	ExpiresIn   smaregi.Flex `json:"expires_in"`
}

// fetchToken asks the identity server for a client-credentials token, with
// the retries of a read.
func (c *Client) fetchToken(ctx context.Context) (string, time.Duration, error) {
	form := "grant_type=client_credentials&scope=" + url.QueryEscape(c.scopes)
	r := request{call: CallToken, method: http.MethodPost, url: c.tokenURL, form: form}
	var ans tokenAnswer
	var buf bytes.Buffer
	_, err := c.retry(ctx, r, &buf, func(b []byte) error { return json.Unmarshal(b, &ans) })
	if err != nil {
		return "", 0, err
	}
	if ans.AccessToken == "" || !strings.EqualFold(ans.TokenType, "Bearer") {
		return "", 0, &TransportError{Call: CallToken, MaybeSent: true,
			Err: fmt.Errorf("token answer without a Bearer access_token (token_type %q)", c.safeText(ans.TokenType))}
	}
	if strings.ContainsAny(ans.AccessToken, "\r\n") {
		return "", 0, &TransportError{Call: CallToken, MaybeSent: true, Err: errors.New("token answer with a line break in access_token")}
	}
	secs, err := ans.ExpiresIn.Int64()
	if err != nil || secs < 0 {
		secs = 0
	}
	return ans.AccessToken, time.Duration(secs) * time.Second, nil
}

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

// describeOpaque summarises a non-JSON answer (a proxy's HTML page) by its
// title, so an operator sees "502 Bad Gateway" rather than markup.
func (c *Client) describeOpaque(resp *http.Response, body []byte) string {
	ct := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	desc := fmt.Sprintf("non-JSON answer (%s, %d bytes)", strings.TrimSpace(ct), len(body))
	if title := htmlTitle(body); title != "" {
		desc += ": " + c.safeText(title)
	}
	return desc
}

func htmlTitle(body []byte) string {
	lower := bytes.ToLower(body[:min(len(body), 4096)])
	i := bytes.Index(lower, []byte("<title"))
	if i < 0 {
		return ""
	}
	j := bytes.IndexByte(lower[i:], '>')
	if j < 0 {
		return ""
	}
	start := i + j + 1
	end := bytes.Index(lower[start:], []byte("</title"))
	if end < 0 {
		return ""
	}
	return html.UnescapeString(string(body[start : start+end]))
}

// safeText makes server-supplied text fit for errors, status and events:
// the secret removed (a server might echo a header back), one line, bounded.
func (c *Client) safeText(s string) string {
	s = c.redact(s)
	s = strings.Join(strings.Fields(s), " ")
	const maxLen = 300
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func (c *Client) redact(s string) string {
	for _, secret := range []string{c.secret, strings.TrimPrefix(c.basicAuth, "Basic ")} {
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
