package smaregi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// TestRedirectsAreNeverFollowed: a 302 from the endpoint to another server
// must not carry X_access_token there, whether the client built its own
// HTTP client or was handed one that would follow redirects. The answer is
// an error that names neither the token nor the Location.
func TestRedirectsAreNeverFollowed(t *testing.T) {
	var reached atomic.Int32
	var leaked atomic.Value
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		if v := r.Header.Get("X_access_token"); v != "" {
			leaked.Store(v)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"total_count":"0","result":[]}`))
	}))
	t.Cleanup(elsewhere.Close)
	location := elsewhere.URL + "/steal?next=secret-location-marker"
	endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, location, http.StatusFound)
	}))
	t.Cleanup(endpoint.Close)

	clients := map[string]func(*smaregi.Options){
		"default client": nil,
		"caller's client that follows redirects": func(o *smaregi.Options) {
			o.HTTPClient = &http.Client{Timeout: 10 * time.Second}
		},
	}
	for name, mod := range clients {
		t.Run(name, func(t *testing.T) {
			var given *http.Client
			c := newClient(t, endpoint.URL+"/access/", func(o *smaregi.Options) {
				o.MaxReadAttempts = 1
				if mod != nil {
					mod(o)
				}
				given = o.HTTPClient
			})
			for _, call := range []func() error{
				func() error { return c.CheckCredentials(context.Background(), "1") },
				func() error {
					_, err := c.UpdateStock(context.Background(), smaregi.Relative,
						[]smaregi.StockUpdate{{StoreID: "1", ProductID: "8000001", Amount: -1}})
					return err
				},
			} {
				err := call()
				assertNoToken(t, err)
				if strings.Contains(err.Error(), "secret-location-marker") || strings.Contains(err.Error(), elsewhere.URL) {
					t.Fatalf("error carries the redirect's Location: %v", err)
				}
				var ae *smaregi.APIError
				if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusFound {
					t.Fatalf("want an APIError with HTTP 302, got %v", err)
				}
			}
			if n := reached.Load(); n != 0 {
				t.Fatalf("the redirect target was called %d times (token leaked: %v)", n, leaked.Load() != nil)
			}
			if given != nil && given.CheckRedirect != nil {
				t.Fatal("the caller's http.Client was modified")
			}
		})
	}
}
