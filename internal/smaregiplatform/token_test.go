package smaregiplatform_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

func listAll(t *testing.T, c *smaregiplatform.Client, store string) []smaregi.StockRow {
	t.Helper()
	var rows []smaregi.StockRow
	err := c.ListStock(context.Background(), smaregi.StockQuery{StoreID: store}, func(page []smaregi.StockRow) error {
		rows = append(rows, page...)
		return nil
	})
	assertNoSecret(t, err)
	if err != nil {
		t.Fatalf("ListStock: %v", err)
	}
	return rows
}

// TestTokenCachedSharedAndRefreshedBeforeExpiry: one token serves every call
// and every client of the contract sharing the cache, until 80% of its
// lifetime; a client with another secret never borrows it.
func TestTokenCachedSharedAndRefreshedBeforeExpiry(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Platform.TokenLifetime = 100 * time.Second })
	cache := smaregiplatform.NewTokenCache(e.clock.Now)
	c1 := newClient(t, e, func(o *smaregiplatform.Options) { o.Tokens = cache })
	c2 := newClient(t, e, func(o *smaregiplatform.Options) { o.Tokens = cache })
	listAll(t, c1, "1")
	listAll(t, c2, "2")
	listAll(t, c1, "1")
	if n := e.tokenCalls.Load(); n != 1 {
		t.Fatalf("%d token calls for three listings of two clients sharing a cache, want 1", n)
	}
	e.clock.Advance(79 * time.Second)
	listAll(t, c2, "1")
	if n := e.tokenCalls.Load(); n != 1 {
		t.Fatalf("%d token calls at 79%% of the lifetime, want 1", n)
	}
	e.clock.Advance(2 * time.Second)
	listAll(t, c1, "1")
	if n := e.tokenCalls.Load(); n != 2 {
		t.Fatalf("%d token calls past 80%% of the lifetime, want 2 (refreshed before expiry)", n)
	}
	if n := counter(t, "smaregi_platform_requests_total", map[string]string{"call": smaregiplatform.CallStockList, "outcome": "success"}); n < 4 {
		t.Errorf("smaregi_platform_requests_total{stock_list,success} = %v, want at least 4", n)
	}

	// Same contract and client ID, wrong secret: its own token request,
	// refused, although a good token for the client ID is cached.
	bad := newClient(t, e, func(o *smaregiplatform.Options) { o.Tokens = cache; o.ClientSecret = "wrong-" + testSecret })
	err := bad.ListStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return nil })
	if smaregiplatform.Cause(err) != smaregiplatform.CauseInvalidClient {
		t.Fatalf("wrong secret with a cached good token: %v", err)
	}
	if strings.Contains(err.Error(), "wrong-") {
		t.Fatalf("error carries the (wrong) secret: %v", err)
	}
}

// TestRefreshOnceOn401: a token Smaregi revoked (the app was reinstalled) is
// replaced once and the call made again; a write is applied exactly once.
func TestRefreshOnceOn401(t *testing.T) {
	e := startSim(t, nil)
	c := newClient(t, e, nil)
	listAll(t, c, "1")
	revoke := func() {
		for _, inst := range [][]string{{"elsewhere"}, {testContract}} {
			if err := e.sim.SetPlatform(smaregisim.PlatformSettings{Installed: inst}); err != nil {
				t.Fatal(err)
			}
		}
	}
	revoke()
	if rows := listAll(t, c, "1"); len(rows) != 50 {
		t.Fatalf("listed %d rows after a refresh, want 50", len(rows))
	}
	if n := e.tokenCalls.Load(); n != 2 {
		t.Fatalf("%d token calls, want 2", n)
	}
	revoke()
	before, _ := e.sim.StockOf("1", "8000001")
	h, err := c.AddStock(context.Background(), smaregi.StockUpdate{StoreID: "1", ProductID: "8000001", Amount: 5, Memo: "refresh-1"})
	if err != nil {
		t.Fatalf("AddStock after revocation: %v", err)
	}
	after, _ := e.sim.StockOf("1", "8000001")
	if after != before+5 || h.StockAmount != after || h.ID == "" {
		t.Fatalf("stock %d -> %d (entry %+v), want +5 applied once", before, after, h)
	}
}

// TestConfigErrorsAreClassified: each cause a person must fix is a config
// error (never transient nor ambiguous, not retried) with its cause, and
// no error carries the secret.
func TestConfigErrorsAreClassified(t *testing.T) {
	ctx := context.Background()
	list := func(c *smaregiplatform.Client) error {
		return c.ListStock(ctx, smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return nil })
	}
	add := func(c *smaregiplatform.Client) error {
		_, err := c.AddStock(ctx, smaregi.StockUpdate{StoreID: "1", ProductID: "8000001", Amount: 1, Memo: "cfg"})
		return err
	}
	cases := []struct {
		name      string
		sim       func(*smaregisim.Options)
		client    func(*smaregiplatform.Options)
		call      func(*smaregiplatform.Client) error
		cause     string
		maxTokens int64
	}{
		{"wrong secret", nil, func(o *smaregiplatform.Options) { o.ClientSecret = "nope-" + testSecret }, list, smaregiplatform.CauseInvalidClient, 1},
		{"unknown client", nil, func(o *smaregiplatform.Options) { o.ClientID = "someone-else" }, add, smaregiplatform.CauseInvalidClient, 1},
		{"not installed", func(o *smaregisim.Options) { o.Platform.Installed = []string{"another"} }, nil, add, smaregiplatform.CauseAppNotInstalled, 1},
		{"scope not granted", func(o *smaregisim.Options) {
			o.Platform.Scopes = []string{smaregisim.ScopeStockRead, smaregisim.ScopeStockWrite}
		}, nil, list, smaregiplatform.CauseMissingScope, 1},
		{"token lacks scope (403)", nil, func(o *smaregiplatform.Options) {
			o.Scopes = []string{smaregiplatform.ScopeStockRead}
		}, add, smaregiplatform.CauseMissingScope, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := startSim(t, c.sim)
			cl := newClient(t, e, c.client)
			err := c.call(cl)
			assertNoSecret(t, err)
			if got := smaregiplatform.Cause(err); got != c.cause {
				t.Fatalf("Cause = %q, want %q (err %v)", got, c.cause, err)
			}
			if !smaregiplatform.IsConfigError(err) || smaregiplatform.IsTransient(err) || smaregiplatform.IsAmbiguous(err) {
				t.Fatalf("config %v transient %v ambiguous %v, want config only: %v", smaregiplatform.IsConfigError(err),
					smaregiplatform.IsTransient(err), smaregiplatform.IsAmbiguous(err), err)
			}
			if n := e.tokenCalls.Load(); n > c.maxTokens {
				t.Fatalf("%d token calls: a config error was retried", n)
			}
		})
	}

	// A 401 although the token was just issued: the app itself is refused.
	t.Run("401 after refresh", func(t *testing.T) {
		e := startSim(t, nil)
		e.setHooks(func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.Contains(r.URL.Path, "/pos/") {
				return false
			}
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Unauthorized","status":401,"detail":"no"}`))
			return true
		}, nil)
		err := add(newClient(t, e, nil))
		var ae *smaregiplatform.APIError
		if !errors.As(err, &ae) || !ae.Refreshed || smaregiplatform.Cause(err) != smaregiplatform.CauseInvalidClient || !smaregiplatform.IsConfigError(err) {
			t.Fatalf("err = %v, want a refreshed 401 classed invalid client", err)
		}
		if n, m := e.tokenCalls.Load(), e.apiCalls.Load(); n != 2 || m != 2 {
			t.Fatalf("%d token calls and %d API calls, want 2 and 2 (one refresh, one retry)", n, m)
		}
	})
}
