package smaregiplatform_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// TestListStockPagesBothWays: the same store listed by `page` and by
// `Link: rel="next"` (including a first page that is exactly full and has
// no Link) gives every row once, with the simulator's amounts.
func TestListStockPagesBothWays(t *testing.T) {
	cases := []struct {
		paging   string
		pageSize int
		requests int64
	}{
		{smaregisim.PagingPage, 7, 8},  // 7 full pages and a short one
		{smaregisim.PagingPage, 10, 6}, // 5 full pages and an empty one
		{smaregisim.PagingLink, 7, 8},  // 7 pages carry a Link
		{smaregisim.PagingLink, 10, 5}, // the last full page has no Link
		{smaregisim.PagingLink, 50, 2}, // page 2 repeats page 1: the end
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s/limit%d", c.paging, c.pageSize), func(t *testing.T) {
			e := startSim(t, func(o *smaregisim.Options) { o.Platform.Paging = c.paging })
			if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: "8000007", Amount: 3, StockDivision: "05"}); err != nil {
				t.Fatal(err)
			}
			cl := newClient(t, e, func(o *smaregiplatform.Options) { o.PageSize = c.pageSize })
			rows := listAll(t, cl, "1")
			seen := map[string]bool{}
			for _, r := range rows {
				if seen[r.ProductID] {
					t.Fatalf("product %s listed twice", r.ProductID)
				}
				seen[r.ProductID] = true
				want, err := e.sim.StockOf("1", r.ProductID)
				if err != nil || r.StockAmount != want || r.StoreID != "1" || r.UpdDateTime.IsZero() {
					t.Fatalf("row %+v, simulator has %d (%v)", r, want, err)
				}
			}
			if len(rows) != 50 {
				t.Fatalf("listed %d rows, want 50", len(rows))
			}
			if n := e.apiCalls.Load(); n != c.requests {
				t.Errorf("%d list requests, want %d", n, c.requests)
			}
		})
	}
}

// TestIncrementalListingAndTheWindow: a watermark lists the rows changed
// since; one older than the 31-day window asks for a full reconcile
// without a request.
func TestIncrementalListingAndTheWindow(t *testing.T) {
	for _, paging := range []string{smaregisim.PagingPage, smaregisim.PagingLink} {
		t.Run(paging, func(t *testing.T) {
			e := startSim(t, func(o *smaregisim.Options) { o.Platform.Paging = paging })
			cl := newClient(t, e, func(o *smaregiplatform.Options) { o.PageSize = 2 })
			ctx := context.Background()
			e.clock.Advance(30 * 24 * time.Hour)
			watermark := e.clock.Now()
			e.clock.Advance(time.Minute)
			changed := []string{"8000003", "8000011", "8000042"}
			for _, p := range changed {
				if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: p, Amount: -1, StockDivision: "05"}); err != nil {
					t.Fatal(err)
				}
			}
			// Another store's change is not this store's.
			if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "2", ProductID: "8000005", Amount: -1, StockDivision: "05"}); err != nil {
				t.Fatal(err)
			}
			var got []string
			err := cl.ListStock(ctx, smaregi.StockQuery{StoreID: "1", UpdatedSince: watermark}, func(page []smaregi.StockRow) error {
				for _, r := range page {
					got = append(got, r.ProductID)
					if r.StockAmount != 9 {
						t.Errorf("row %+v, want stock 9", r)
					}
				}
				return nil
			})
			if err != nil || strings.Join(got, ",") != strings.Join(changed, ",") {
				t.Fatalf("incremental listing = %v, %v; want %v", got, err, changed)
			}

			// A watermark just under 30 days old: inside the window.
			e.clock.Advance(30*24*time.Hour - 2*time.Minute)
			if err := cl.ListStock(ctx, smaregi.StockQuery{StoreID: "1", UpdatedSince: watermark}, func([]smaregi.StockRow) error { return nil }); err != nil {
				t.Fatalf("a watermark 30 days old: %v", err)
			}
			// Past 31 days less the margin: a full reconcile.
			e.clock.Advance(24 * time.Hour)
			calls := e.apiCalls.Load()
			err = cl.ListStock(ctx, smaregi.StockQuery{StoreID: "1", UpdatedSince: watermark}, func([]smaregi.StockRow) error { return nil })
			if !smaregiplatform.IsFullReconcileNeeded(err) || smaregiplatform.IsTransient(err) {
				t.Fatalf("a watermark 31 days old: %v, want IsFullReconcileNeeded", err)
			}
			if e.apiCalls.Load() != calls {
				t.Fatal("a request was sent for a watermark outside the window")
			}
		})
	}
}

// TestLinkOutsideTheAPIIsNotFollowed: a Link to another host would carry
// the Bearer token there.
func TestLinkOutsideTheAPIIsNotFollowed(t *testing.T) {
	e := startSim(t, nil)
	e.setHooks(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, "/pos/stock") {
			return false
		}
		w.Header().Set("Link", `<https://evil.test/ct-plat/pos/stock?cursor=x>; rel="next"`)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`[{"storeId":"1","productId":"8000001","stockAmount":"1","layawayStockAmount":"0","updDateTime":"2026-11-26T09:00:00+09:00"}]`))
		return true
	}, nil)
	cl := newClient(t, e, nil)
	err := cl.ListStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "outside the API base") {
		t.Fatalf("err = %v, want the Link refused", err)
	}
}

// TestProductIDsByCode: a few codes one call each, many by a scan; unknown
// codes are absent.
func TestProductIDsByCode(t *testing.T) {
	e := startSim(t, nil)
	cl := newClient(t, e, func(o *smaregiplatform.Options) { o.PageSize = 20 })
	products := e.sim.Products()
	ctx := context.Background()
	few := []string{products[0].ProductCode, products[17].ProductCode, "0000000000000"}
	got, err := cl.ProductIDsByCode(ctx, few)
	if err != nil || len(got) != 2 || got[few[0]] != products[0].ProductID || got[few[1]] != products[17].ProductID {
		t.Fatalf("ProductIDsByCode(few) = %v, %v", got, err)
	}
	var many []string
	for _, p := range products {
		many = append(many, p.ProductCode)
	}
	many = append(many, "4900000000000")
	got, err = cl.ProductIDsByCode(ctx, many)
	if err != nil || len(got) != len(products) {
		t.Fatalf("ProductIDsByCode(many): %d found, %v; want %d", len(got), err, len(products))
	}
	for _, p := range products {
		if got[p.ProductCode] != p.ProductID {
			t.Fatalf("code %s -> %q, want %s", p.ProductCode, got[p.ProductCode], p.ProductID)
		}
	}
}
