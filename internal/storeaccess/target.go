package storeaccess

import (
	"fmt"
	"net/http"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// Target is where and as whom one store's calls go. AccessToken is a
// secret: it never enters an error, a log line or status.
type Target struct {
	Endpoint    string
	ContractID  string
	StoreID     string
	AccessToken string
}

// String names the target without its token, for errors and logs.
func (t Target) String() string {
	return fmt.Sprintf("contract %s store %s at %s", t.ContractID, t.StoreID, t.Endpoint)
}

// Clients builds smaregi clients for targets. Every client draws from the
// process's one LimiterRegistry, so that all callers of a contract (checks,
// pulls, pushes, lookups) share Smaregi's per-contract budget, and from one
// HTTP client, so that they share a connection pool.
type Clients struct {
	// Limiters is the process-wide registry; nil means unthrottled.
	Limiters *smaregi.LimiterRegistry
	// HTTPClient sends every call; nil gives the smaregi package's default.
	HTTPClient *http.Client
	// Allowed is the endpoint allowlist; a target outside it gets no client
	// (a *ConfigError), so no request leaves. The zero value allows all.
	Allowed Endpoints
}

// NewClients returns a factory drawing from limiters.
func NewClients(limiters *smaregi.LimiterRegistry, hc *http.Client) *Clients {
	return &Clients{Limiters: limiters, HTTPClient: hc}
}

// Client returns a client for t. tune carries what differs per caller
// (attempts, timeouts, page and batch sizes); its endpoint, contract, token,
// limiter and HTTP client are always the target's and the factory's. The
// error never contains the token.
func (c *Clients) Client(t Target, tune smaregi.Options) (*smaregi.Client, error) {
	if c != nil {
		if err := c.Allowed.Check(t.Endpoint); err != nil {
			return nil, err
		}
	}
	o := tune
	o.Endpoint, o.ContractID, o.AccessToken = t.Endpoint, t.ContractID, t.AccessToken
	if c != nil {
		o.Limiters = c.Limiters
		if c.HTTPClient != nil {
			o.HTTPClient = c.HTTPClient
		}
	}
	cl, err := smaregi.New(o)
	if err != nil {
		return nil, fmt.Errorf("building the Smaregi client for contract %s: %w", t.ContractID, err)
	}
	return cl, nil
}
