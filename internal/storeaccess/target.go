package storeaccess

import (
	"fmt"
	"net/http"
	"time"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
)

// Target is where and as whom one store's calls go. Credentials are
// secret: they never enter an error, a log line or status. A Target is
// comparable, so a cached client can be reused while its target is equal.
type Target struct {
	// API is the store's Smaregi API; empty means Legacy.
	API v1alpha1.StoreAPI
	// Endpoint is the API URL (legacy) or API base (Platform);
	// TokenEndpoint the Platform identity base (empty for legacy).
	Endpoint      string
	TokenEndpoint string
	ContractID    string
	StoreID       string
	Credentials   Credentials
}

// Platform reports whether t speaks the Platform API.
func (t Target) Platform() bool { return t.API == v1alpha1.APIPlatform }

// String names the target without its credentials, for errors and logs.
func (t Target) String() string {
	api := t.API
	if api == "" {
		api = v1alpha1.APILegacy
	}
	return fmt.Sprintf("%s contract %s store %s at %s", api, t.ContractID, t.StoreID, t.Endpoint)
}

// Tune is what differs per caller of a store's Smaregi: how hard one call
// tries and how big its pages are. Zero fields take each client's defaults.
type Tune struct {
	// MaxReadAttempts bounds attempts of one read (first try included).
	// Writes are sent once, except where the API says for certain that
	// nothing was applied (a Platform 429).
	MaxReadAttempts int
	// Backoff between read attempts.
	Backoff smaregi.Backoff
	// RequestTimeout bounds one attempt.
	RequestTimeout time.Duration
	// PageSize of stock listings.
	PageSize int
}

// Clients builds the Backend of a target. Every backend draws from the
// process's limiter registries, so that all callers of a contract (checks,
// pulls, pushes, lookups) share Smaregi's budget (per contract for the
// legacy API, per app and contract for the Platform API), and from one HTTP
// client, so that they share a connection pool.
type Clients struct {
	// Limiters is the process-wide registry of legacy per-contract
	// limiters; nil means unthrottled.
	Limiters *smaregi.LimiterRegistry
	// PlatformLimiters and PlatformWriteLimiters throttle Platform reads
	// (and token calls) and writes, keyed by app and contract (the API
	// counts reads and writes apart). nil: unthrottled; a nil
	// PlatformWriteLimiters makes writes use PlatformLimiters.
	PlatformLimiters      *smaregi.LimiterRegistry
	PlatformWriteLimiters *smaregi.LimiterRegistry
	// PlatformTokens caches Platform access tokens per contract and app for
	// every backend, refreshed before expiry; nil gives each backend its
	// own (tests).
	PlatformTokens *smaregiplatform.TokenCache
	// HTTPClient sends every call; nil gives each package's default.
	HTTPClient *http.Client
	// Allowed is the endpoint allowlist; a target outside it gets no client
	// (a *ConfigError), so no request leaves. The zero value allows all.
	Allowed Endpoints
}

// NewClients returns a factory drawing legacy calls from limiters.
func NewClients(limiters *smaregi.LimiterRegistry, hc *http.Client) *Clients {
	return &Clients{Limiters: limiters, HTTPClient: hc}
}

// Backend returns the backend of t's API. tune carries what differs per
// caller; the endpoint, contract, credentials, limiters and HTTP client are
// always the target's and the factory's. The error never contains a secret.
func (c *Clients) Backend(t Target, tune Tune) (Backend, error) {
	if c == nil {
		c = &Clients{}
	}
	if err := c.Allowed.Check(t.Endpoint); err != nil {
		return nil, err
	}
	if t.Platform() {
		if err := c.Allowed.Check(t.TokenEndpoint); err != nil {
			return nil, err
		}
		cl, err := smaregiplatform.New(smaregiplatform.Options{
			Endpoint: t.Endpoint, TokenEndpoint: t.TokenEndpoint, ContractID: t.ContractID,
			ClientID: t.Credentials.ClientID, ClientSecret: t.Credentials.ClientSecret,
			HTTPClient: c.HTTPClient, Limiters: c.PlatformLimiters, WriteLimiters: c.PlatformWriteLimiters,
			Tokens: c.PlatformTokens, MaxAttempts: tune.MaxReadAttempts, Backoff: tune.Backoff,
			RequestTimeout: tune.RequestTimeout, PageSize: tune.PageSize,
		})
		if err != nil {
			return nil, fmt.Errorf("building the Smaregi Platform client for contract %s: %w", t.ContractID, err)
		}
		return platformBackend{c: cl, storeID: t.StoreID}, nil
	}
	cl, err := smaregi.New(smaregi.Options{
		Endpoint: t.Endpoint, ContractID: t.ContractID, AccessToken: t.Credentials.AccessToken,
		HTTPClient: c.HTTPClient, Limiters: c.Limiters, MaxReadAttempts: tune.MaxReadAttempts,
		Backoff: tune.Backoff, RequestTimeout: tune.RequestTimeout, PageSize: tune.PageSize,
	})
	if err != nil {
		return nil, fmt.Errorf("building the Smaregi client for contract %s: %w", t.ContractID, err)
	}
	return legacyBackend{c: cl}, nil
}
