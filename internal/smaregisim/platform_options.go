package smaregisim

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Platform API scopes the simulator knows.
const (
	ScopeStockRead        = "pos.stock:read"
	ScopeStockWrite       = "pos.stock:write"
	ScopeStockChangesRead = "pos.stock-changes:read"
	ScopeProductsRead     = "pos.products:read"
	ScopeStoresRead       = "pos.stores:read"
	ScopeTransactionsRead = "pos.transactions:read"
)

// DefaultPlatformScopes are the scopes granted to the app unless
// PlatformOptions.Scopes says otherwise.
var DefaultPlatformScopes = []string{ScopeStockRead, ScopeStockWrite, ScopeStockChangesRead,
	ScopeProductsRead, ScopeStoresRead, ScopeTransactionsRead}

// Paging styles of the Platform lists.
const (
	// PagingPage: the client counts pages with `page`; no Link header
	// (default).
	PagingPage = "page"
	// PagingLink: answers carry `Link: <…>; rel="next"` with an opaque
	// cursor while more rows follow; `page` is ignored.
	PagingLink = "link"
)

// Platform rate limit defaults: the production figures of a third-party
// summary (the sandbox is said to allow 10 and 4).
const (
	DefaultPlatformReadsPerSecond  = 50
	DefaultPlatformWritesPerSecond = 20
)

// PlatformOptions configures the Platform API side. The zero value serves it
// with the defaults given on each field; the Platform API is always on (it
// needs ClientID and ClientSecret to issue tokens, so without them every
// token request is invalid_client).
type PlatformOptions struct {
	// ClientID and ClientSecret are the app's credentials (Basic auth on
	// the token endpoint).
	ClientID     string
	ClientSecret string
	// Scopes the app was granted in the developer console. Default
	// DefaultPlatformScopes.
	Scopes []string
	// Installed are the contracts that installed the app. Default: the
	// simulator's contract. A token for another installed contract is
	// issued, but that contract has no shop here (its calls are 404).
	Installed []string
	// TokenLifetime is expires_in of issued tokens; default 3600s. Tokens
	// expire by the simulator's clock.
	TokenLifetime time.Duration
	// ReadsPerSecond and WritesPerSecond limit calls per app and contract
	// in each second of the simulator's clock; token requests count as
	// reads. 0 means the default (50 and 20), negative means unlimited.
	ReadsPerSecond  int
	WritesPerSecond int
	// Paging: PagingPage (default) or PagingLink.
	Paging string
	// WebhookDelay holds every webhook and bulk callback this long (real
	// time) before it is posted.
	WebhookDelay time.Duration
	// WebhookDuplicateRate posts a webhook twice (same Smaregi-Event-Id)
	// with this probability.
	WebhookDuplicateRate float64
}

// PlatformSettings are the Platform settings that can change at run time
// (PUT /_sim/platform). Nil or zero fields are left as they are.
type PlatformSettings struct {
	// ClientSecret re-issues the secret; never shown back.
	ClientSecret string `json:"clientSecret,omitempty"`
	// Scopes replaces the granted scopes; existing tokens keep theirs.
	Scopes []string `json:"scopes,omitempty"`
	// Installed replaces the set of contracts with the app installed;
	// uninstalling revokes that contract's tokens.
	Installed            []string `json:"installed,omitempty"`
	ReadsPerSecond       *int     `json:"readsPerSecond,omitempty"`
	WritesPerSecond      *int     `json:"writesPerSecond,omitempty"`
	Paging               string   `json:"paging,omitempty"`
	WebhookDelayMs       *int     `json:"webhookDelayMs,omitempty"`
	WebhookDuplicateRate *float64 `json:"webhookDuplicateRate,omitempty"`
}

// WebhookConfig is the app's webhook setting in the developer console: one
// URL for every contract, plus fixed headers (the only proof of origin).
type WebhookConfig struct {
	URL string `json:"url"`
	// Headers are added to every webhook. Their values are secrets: never
	// logged nor shown back.
	Headers map[string]string `json:"headers,omitempty"`
}

func (o PlatformOptions) withDefaults(contract string) (PlatformOptions, error) {
	if len(o.Scopes) == 0 {
		o.Scopes = DefaultPlatformScopes
	}
	o.Scopes = slices.Clone(o.Scopes)
	if len(o.Installed) == 0 {
		o.Installed = []string{contract}
	}
	o.Installed = slices.Clone(o.Installed)
	if o.TokenLifetime == 0 {
		o.TokenLifetime = time.Hour
	}
	if o.TokenLifetime < 0 {
		return o, fmt.Errorf("smaregisim: negative token lifetime %v", o.TokenLifetime)
	}
	if o.ReadsPerSecond == 0 {
		o.ReadsPerSecond = DefaultPlatformReadsPerSecond
	}
	if o.WritesPerSecond == 0 {
		o.WritesPerSecond = DefaultPlatformWritesPerSecond
	}
	if o.Paging == "" {
		o.Paging = PagingPage
	}
	if err := checkPlatformValues(o.Scopes, o.Paging, o.WebhookDuplicateRate); err != nil {
		return o, err
	}
	if o.WebhookDelay < 0 {
		return o, fmt.Errorf("smaregisim: negative webhook delay %v", o.WebhookDelay)
	}
	return o, nil
}

func checkPlatformValues(scopes []string, paging string, dupRate float64) error {
	for _, sc := range scopes {
		if strings.TrimSpace(sc) == "" || strings.ContainsAny(sc, " \t") {
			return fmt.Errorf("smaregisim: scope %q is not valid", sc)
		}
	}
	if paging != "" && paging != PagingPage && paging != PagingLink {
		return fmt.Errorf("smaregisim: paging %q: want %s or %s", paging, PagingPage, PagingLink)
	}
	if dupRate < 0 || dupRate > 1 {
		return fmt.Errorf("smaregisim: webhook duplicate rate %v outside [0,1]", dupRate)
	}
	return nil
}

func checkCallbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	return nil
}
