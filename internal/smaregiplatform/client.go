// Package smaregiplatform is a typed client for Smaregi's Platform API (the
// successor of the legacy スマレジAPI; ../shared/docs/smaregi-platform-api.md):
// client-credentials tokens cached per contract and client, stock listings
// (full, and incremental within the 31-day window) paged by `page` or by
// `Link: rel="next"`, relative adds with a memo, bulk adds with a callback,
// the stock change history for resolving ambiguous writes, and product
// lookups by code. It follows the legacy client's (internal/smaregi)
// conventions, with the HTTP plumbing both share (internal/smaregihttp):
// typed errors with IsTransient/IsAmbiguous/IsConfigError, one
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
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
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
	readLimiter  smaregihttp.Limiter
	writeLimiter smaregihttp.Limiter
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
	// Smaregi does not redirect API calls; following one would carry the
	// Authorization header (Bearer token, or the Basic client secret) to
	// the target (see exchange).
	c.http = smaregihttp.Client(opts.HTTPClient)
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
