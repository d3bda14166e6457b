package smaregiplatform_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// advanceOn429 moves the simulator's clock a second on by each 429 it
// answers, as the second the client waits (Retry-After: 1) would.
func advanceOn429(e *env) {
	e.setHooks(nil, func(_ *http.Request, status int) {
		if status == http.StatusTooManyRequests {
			e.clock.Advance(time.Second)
		}
	})
}

// TestRetryAfterIsHonoured: a read and a write answered 429 are made again
// after Retry-After (a throttled write was not applied: it is applied once),
// and the 429s are counted by call.
func TestRetryAfterIsHonoured(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) {
		o.Platform.ReadsPerSecond = 3
		o.Platform.WritesPerSecond = 1
	})
	advanceOn429(e)
	cl := newClient(t, e, func(o *smaregiplatform.Options) { o.PageSize = 25 })
	throttledReads := counter(t, "smaregi_platform_throttled_total", map[string]string{"call": smaregiplatform.CallStockList})
	if rows := listAll(t, cl, "1"); len(rows) != 50 {
		t.Fatalf("listed %d rows through a 429, want 50", len(rows))
	}
	if n := counter(t, "smaregi_platform_throttled_total", map[string]string{"call": smaregiplatform.CallStockList}) - throttledReads; n != 1 {
		t.Fatalf("%v stock_list 429s counted, want 1 (token + 3 pages at 3 reads a second)", n)
	}
	throttledWrites := counter(t, "smaregi_platform_throttled_total", map[string]string{"call": smaregiplatform.CallStockAdd})
	ctx := context.Background()
	for _, memo := range []string{"w-1", "w-2"} {
		if _, err := cl.AddStock(ctx, smaregi.StockUpdate{StoreID: "1", ProductID: "8000004", Amount: 1, Memo: memo}); err != nil {
			t.Fatalf("AddStock %s: %v", memo, err)
		}
	}
	if n := counter(t, "smaregi_platform_throttled_total", map[string]string{"call": smaregiplatform.CallStockAdd}) - throttledWrites; n != 1 {
		t.Fatalf("%v stock_add 429s counted, want 1", n)
	}
	if stock, _ := e.sim.StockOf("1", "8000004"); stock != 12 {
		t.Fatalf("stock %d after two adds of 1 (one throttled), want 12", stock)
	}

	// A Retry-After beyond MaxRetryAfter is not slept through: the caller
	// gets the 429, transient and classed rate limited.
	impatient := newClient(t, e, func(o *smaregiplatform.Options) { o.MaxRetryAfter = 500 * time.Millisecond })
	e.setHooks(nil, nil)
	_, _ = impatient.AddStock(ctx, smaregi.StockUpdate{StoreID: "1", ProductID: "8000004", Amount: 1, Memo: "w-3"})
	_, err := impatient.AddStock(ctx, smaregi.StockUpdate{StoreID: "1", ProductID: "8000004", Amount: 1, Memo: "w-4"})
	var ae *smaregiplatform.APIError
	if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusTooManyRequests || ae.RetryAfter != time.Second ||
		!smaregiplatform.IsTransient(err) || smaregiplatform.IsAmbiguous(err) || smaregiplatform.Cause(err) != smaregiplatform.CauseRateLimited {
		t.Fatalf("err = %v, want a transient 429 with Retry-After 1s", err)
	}
}

// TestOneLimiterPerAppAndContract: clients of one app and contract draw
// from one limiter of the registry; another app does not.
func TestOneLimiterPerAppAndContract(t *testing.T) {
	e := startSim(t, nil)
	// Two calls of burst, then one every few hours: the third call's wait
	// exceeds any test's deadline, so Wait refuses at once.
	reg := smaregi.NewLimiterRegistry(0.0001, 2)
	a := newClient(t, e, func(o *smaregiplatform.Options) { o.Limiters = reg })
	b := newClient(t, e, func(o *smaregiplatform.Options) { o.Limiters = reg })
	other := newClient(t, e, func(o *smaregiplatform.Options) { o.Limiters = reg; o.ClientID = "other-app" })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	noop := func([]smaregi.StockRow) error { return nil }
	if err := a.ListStock(ctx, smaregi.StockQuery{StoreID: "1"}, noop); err != nil { // token + one page
		t.Fatal(err)
	}
	before := e.apiCalls.Load()
	err := b.ListStock(ctx, smaregi.StockQuery{StoreID: "1"}, noop)
	var te *smaregiplatform.TransportError
	if !errors.As(err, &te) || te.MaybeSent || !smaregiplatform.IsTransient(err) {
		t.Fatalf("second client of the app and contract: %v, want the shared limiter to refuse", err)
	}
	if e.apiCalls.Load() != before {
		t.Fatal("a call went out past the limiter")
	}
	// The other app has its own limiter (its token call is refused by
	// the simulator, but only after passing its limiter).
	err = other.ListStock(ctx, smaregi.StockQuery{StoreID: "1"}, noop)
	if smaregiplatform.Cause(err) != smaregiplatform.CauseInvalidClient {
		t.Fatalf("another app: %v, want its own limiter and an invalid_client answer", err)
	}
	if reg.For(smaregiplatform.LimiterKey(testClientID, testContract)) == reg.For(testContract) {
		t.Fatal("the Platform key collides with the legacy contract key")
	}
}

// TestRedirectsAreNeverFollowed: neither the Bearer token nor the Basic
// client secret is carried to a redirect's target, whether the client
// built its own HTTP client or was given one that follows redirects.
func TestRedirectsAreNeverFollowed(t *testing.T) {
	var reached atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	defer elsewhere.Close()
	location := elsewhere.URL + "/steal?next=secret-location-marker"
	for _, where := range []string{"/app/", "/pos/"} {
		for _, given := range []*http.Client{nil, {Timeout: 10 * time.Second}} {
			e := startSim(t, nil)
			e.setHooks(func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.Contains(r.URL.Path, where) {
					return false
				}
				http.Redirect(w, r, location, http.StatusFound)
				return true
			}, nil)
			cl := newClient(t, e, func(o *smaregiplatform.Options) { o.HTTPClient = given; o.MaxAttempts = 1 })
			for _, call := range []func() error{
				func() error {
					return cl.ListStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return nil })
				},
				func() error {
					_, err := cl.AddStock(context.Background(), smaregi.StockUpdate{StoreID: "1", ProductID: "8000001", Amount: 1})
					return err
				},
			} {
				err := call()
				assertNoSecret(t, err)
				var ae *smaregiplatform.APIError
				if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusFound || strings.Contains(err.Error(), "secret-location-marker") {
					t.Fatalf("%s: err = %v, want a 302 APIError without the Location", where, err)
				}
			}
			if given != nil && given.CheckRedirect != nil {
				t.Fatal("the caller's http.Client was modified")
			}
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the redirect target was called %d times", n)
	}
}

// TestSecretNeverInErrors: a server echoing the credentials back, and bad
// options, give errors without the secret.
func TestSecretNeverInErrors(t *testing.T) {
	e := startSim(t, nil)
	basic := base64.StdEncoding.EncodeToString([]byte(testClientID + ":" + testSecret))
	e.setHooks(func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"invalid_request","error_description":"got ` + r.Header.Get("Authorization") +
			` i.e. ` + testSecret + ` / ` + basic + `"}`))
		return true
	}, nil)
	cl := newClient(t, e, nil)
	err := cl.ListStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "[redacted]") {
		t.Fatalf("err = %v, want the echo redacted", err)
	}
	assertNoSecret(t, err)
	if strings.Contains(err.Error(), basic) {
		t.Fatalf("error carries the Basic credentials: %v", err)
	}
	for _, mod := range []func(*smaregiplatform.Options){
		func(o *smaregiplatform.Options) { o.ClientSecret = testSecret + "\n" },
		func(o *smaregiplatform.Options) { o.Endpoint = "https://u:" + testSecret + "@api.test/" },
		func(o *smaregiplatform.Options) { o.TokenEndpoint = "::" + testSecret },
		func(o *smaregiplatform.Options) { o.ContractID = "a/" + testSecret },
	} {
		o := e.options()
		mod(&o)
		_, err := smaregiplatform.New(o)
		if err == nil {
			t.Fatal("New accepted invalid options")
		}
		assertNoSecret(t, err)
	}
}
