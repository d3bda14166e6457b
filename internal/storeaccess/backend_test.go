package storeaccess

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

const (
	simContract = "backendtest"
	simToken    = "legacy-token"
	simClientID = "app-client"
	simSecret   = "app-secret"
)

// startSim serves one simulated shop with both APIs on 127.0.0.1.
func startSim(t *testing.T) (*smaregisim.Server, string) {
	t.Helper()
	sim, err := smaregisim.New(smaregisim.Options{Contract: simContract, Token: simToken, Stores: []string{"1", "2"},
		Products: 5, InitialStock: 10, Seed: 1,
		Platform: smaregisim.PlatformOptions{ClientID: simClientID, ClientSecret: simSecret, ReadsPerSecond: -1, WritesPerSecond: -1}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = sim.Close()
	})
	return sim, "http://" + ln.Addr().String() + "/"
}

func simTargets(base string) map[v1alpha1.StoreAPI]Target {
	return map[v1alpha1.StoreAPI]Target{
		v1alpha1.APILegacy: {API: v1alpha1.APILegacy, Endpoint: base + "access/", ContractID: simContract, StoreID: "1",
			Credentials: Credentials{AccessToken: simToken}},
		v1alpha1.APIPlatform: {API: v1alpha1.APIPlatform, Endpoint: base, TokenEndpoint: base, ContractID: simContract, StoreID: "1",
			Credentials: Credentials{ClientID: simClientID, ClientSecret: simSecret}},
	}
}

// TestBackendsAgree runs the same calls through both APIs' backends against
// one simulated shop: what the engine, the pusher and the hub API rely on
// reads the same whichever API a store speaks.
func TestBackendsAgree(t *testing.T) {
	sim, base := startSim(t)
	ctx := context.Background()
	first := sim.Products()[0]
	for api, target := range simTargets(base) {
		t.Run(string(api), func(t *testing.T) {
			b, err := (&Clients{}).Backend(target, Tune{MaxReadAttempts: 1, PageSize: 2})
			if err != nil {
				t.Fatal(err)
			}
			if got := b.MaxRowsPerWrite(); got != MaxRowsPerWrite(api) {
				t.Errorf("MaxRowsPerWrite = %d, want %d", got, MaxRowsPerWrite(api))
			}
			rows := map[string]int64{}
			pages := 0
			err = b.ListStock(ctx, smaregi.StockQuery{StoreID: "1"}, func(page []smaregi.StockRow) error {
				pages++
				for _, r := range page {
					rows[r.ProductID] = r.StockAmount
				}
				return nil
			})
			if err != nil || len(rows) != 5 || pages != 3 {
				t.Fatalf("ListStock: %d rows in %d pages, %v; want 5 rows in 3 pages of 2", len(rows), pages, err)
			}

			memo := "test-" + string(api)
			since := time.Now().Add(-time.Second)
			if err := b.AddStock(ctx, []smaregi.StockUpdate{{StoreID: "1", ProductID: first.ProductID, Amount: -3,
				StockDivision: smaregi.DefaultStockDivision, Memo: memo}}); err != nil {
				t.Fatalf("AddStock: %v", err)
			}
			want := rows[first.ProductID] - 3
			if n, _ := sim.StockOf("1", first.ProductID); n != want {
				t.Fatalf("stock after AddStock: %d, want %d", n, want)
			}
			// A sale of the same amount: a different division, which the
			// division filter must keep out (the pusher matches ambiguous
			// writes by amount when memos are not known to be kept).
			if _, err := sim.Sale("1", []smaregisim.SaleLine{{ProductID: first.ProductID, Quantity: 3}}); err != nil {
				t.Fatal(err)
			}
			want -= 3
			var found, otherDivision []smaregi.HistoryRow
			err = b.History(ctx, smaregi.HistoryQuery{StoreID: "1", ProductIDs: []string{first.ProductID}, Since: since,
				StockDivision: smaregi.DefaultStockDivision}, func(page []smaregi.HistoryRow) error {
				for _, r := range page {
					if r.Memo == memo {
						found = append(found, r)
					}
					if r.StockDivision != smaregi.DefaultStockDivision {
						otherDivision = append(otherDivision, r)
					}
				}
				return nil
			})
			if err != nil || len(found) != 1 || found[0].Amount != -3 {
				t.Fatalf("History: %+v, %v; want the one row carrying the memo", found, err)
			}
			if len(otherDivision) != 0 {
				t.Fatalf("History by division %s returned %+v; want API writes only, not the sale", smaregi.DefaultStockDivision, otherDivision)
			}

			changed := 0
			err = b.ListStock(ctx, smaregi.StockQuery{StoreID: "1", UpdatedSince: since.Truncate(time.Second)}, func(page []smaregi.StockRow) error {
				for _, r := range page {
					if r.ProductID == first.ProductID && r.StockAmount == want {
						changed++
					}
				}
				return nil
			})
			if err != nil || changed != 1 {
				t.Fatalf("incremental ListStock: product seen %d times, %v", changed, err)
			}

			ids, err := b.ProductIDsByCode(ctx, []string{first.ProductCode, "no-such-code"})
			if err != nil || len(ids) != 1 || ids[first.ProductCode] != first.ProductID {
				t.Fatalf("ProductIDsByCode = %v, %v", ids, err)
			}

			// A lost answer: applied, and the caller cannot know.
			if err := sim.SetFaults(smaregisim.Faults{LostResponseRate: 1}); err != nil {
				t.Fatal(err)
			}
			err = b.AddStock(ctx, []smaregi.StockUpdate{{StoreID: "1", ProductID: first.ProductID, Amount: 1,
				StockDivision: smaregi.DefaultStockDivision, Memo: memo + "-lost"}})
			if err := sim.SetFaults(smaregisim.Faults{}); err != nil {
				t.Fatal(err)
			}
			if err == nil || !IsAmbiguous(err) || IsRefusedConfig(err) {
				t.Fatalf("lost answer: %v; want an ambiguous error", err)
			}
			if !IsSmaregiAnswer(err) {
				t.Errorf("lost answer not recognised as Smaregi's: %v", err)
			}
		})
	}
}

// TestPlatformBackendRefusesSeveralProducts: the Platform API has no
// all-or-none write of several products, so a Backend asked for one sends
// nothing.
func TestPlatformBackendRefusesSeveralProducts(t *testing.T) {
	sim, base := startSim(t)
	b, err := (&Clients{}).Backend(simTargets(base)[v1alpha1.APIPlatform], Tune{MaxReadAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	ps := sim.Products()
	err = b.AddStock(context.Background(), []smaregi.StockUpdate{
		{StoreID: "1", ProductID: ps[0].ProductID, Amount: 1}, {StoreID: "1", ProductID: ps[1].ProductID, Amount: 1}})
	if err == nil || IsAmbiguous(err) {
		t.Fatalf("two products: %v; want a definite refusal", err)
	}
	for _, p := range ps[:2] {
		if n, _ := sim.StockOf("1", p.ProductID); n != 10 {
			t.Errorf("product %s changed to %d", p.ProductID, n)
		}
	}
}

// TestPlatformRefusalsExplained: a wrong client secret, a missing scope and
// an app not installed each read as their own condition reason with the
// remedy, are configuration (no hot retry), and never carry the secret.
func TestPlatformRefusalsExplained(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name   string
		mod    func(*smaregisim.Server, *Target)
		reason string
		hint   string
	}{
		{"wrong secret", func(_ *smaregisim.Server, t *Target) { t.Credentials.ClientSecret = "wrong-secret-value" },
			v1alpha1.ReasonInvalidClient, "clientSecret"},
		{"missing scope", func(s *smaregisim.Server, _ *Target) {
			_ = s.SetPlatform(smaregisim.PlatformSettings{Scopes: []string{smaregisim.ScopeProductsRead}})
		}, v1alpha1.ReasonMissingScope, "pos.stock:read"},
		{"not installed", func(s *smaregisim.Server, _ *Target) {
			_ = s.SetPlatform(smaregisim.PlatformSettings{Installed: []string{"someone-else"}})
		}, v1alpha1.ReasonAppNotInstalled, "利用開始"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sim, base := startSim(t)
			target := simTargets(base)[v1alpha1.APIPlatform]
			c.mod(sim, &target)
			b, err := (&Clients{}).Backend(target, Tune{MaxReadAttempts: 1})
			if err != nil {
				t.Fatal(err)
			}
			err = b.ListStock(ctx, smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return nil })
			if !IsRefusedConfig(err) {
				t.Fatalf("err = %v; want a configuration refusal", err)
			}
			d := Explain(err, Subject{Call: CallStockList, ContractID: simContract, StoreID: "1",
				Credentials: CredentialsRef{Secret: "app-creds", API: v1alpha1.APIPlatform}})
			if d.Reason != c.reason || !d.Config || !strings.Contains(d.Message, c.hint) {
				t.Errorf("Explain = %+v; want reason %s mentioning %q", d, c.reason, c.hint)
			}
			for _, s := range []string{simSecret, target.Credentials.ClientSecret} {
				if strings.Contains(err.Error(), s) || strings.Contains(d.Message, s) {
					t.Errorf("the client secret leaks: %v / %s", err, d.Message)
				}
			}
		})
	}
}

// The Platform's incremental window is 31 days: an older watermark is a
// full reconcile, said without calling Smaregi.
func TestPlatformOldWatermarkNeedsFullReconcile(t *testing.T) {
	_, base := startSim(t)
	b, err := (&Clients{}).Backend(simTargets(base)[v1alpha1.APIPlatform], Tune{MaxReadAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	err = b.ListStock(context.Background(), smaregi.StockQuery{StoreID: "1", UpdatedSince: time.Now().Add(-40 * 24 * time.Hour)},
		func([]smaregi.StockRow) error { return nil })
	if !NeedsFullReconcile(err) || !smaregiplatform.IsFullReconcileNeeded(err) {
		t.Fatalf("err = %v; want a full reconcile", err)
	}
}
