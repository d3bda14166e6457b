package smaregisim

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// BenchmarkIncrementalPull100k pages through 100,000 stock rows of one store
// the way the operator's full reconcile does: updDateTime >= watermark,
// ordered by updDateTime, 1000 per page, over real HTTP. It reports the time
// per complete pass over all 100 pages.
func BenchmarkIncrementalPull100k(b *testing.B) {
	s, hs, clk := startSim(b, func(o *Options) {
		o.Products = 100000
		o.Stores = []string{"1", "2", "3"}
	})
	// Spread changes over time so the index is not trivially one second.
	for i := range 1000 {
		clk.Advance(time.Second)
		_, _ = s.StockMovement(StockMovement{StoreID: "1", ProductID: fmt.Sprint(FirstProductID + i*97), Amount: 1, StockDivision: "05"})
	}
	b.ResetTimer()
	for range b.N {
		for page := 1; ; page++ {
			a := call(b, hs, "stock_ref", fmt.Sprintf(`{"table_name":"Stock","fields":["productId","stockAmount","updDateTime"],"conditions":[{"storeId":"1","updDateTime >=":"2026-11-26 09:00:00"}],"order":["updDateTime asc"],"limit":1000,"page":%d}`, page))
			if a.status != 200 {
				b.Fatalf("%d %s", a.status, a.body)
			}
			if len(a.body) < 100 {
				break
			}
		}
	}
}

// BenchmarkPlatformListing100k pages through 100,000 stock rows of one store
// with GET /pos/stock (1000 per page, Link paging) over real HTTP: the
// Platform side of the full reconcile. It reports the time per full pass.
func BenchmarkPlatformListing100k(b *testing.B) {
	_, hs, _ := startPlat(b, func(o *Options) {
		o.Products = 100000
		o.Stores = []string{"1", "2", "3"}
		o.Platform.Paging = PagingLink
	})
	tok := mustToken(b, hs)
	b.ResetTimer()
	for range b.N {
		next, rows := "/"+testContract+"/pos/stock?store_id=1&limit=1000", 0
		for next != "" {
			a := do(b, hs, "GET", next, tok, "", nil)
			if a.status != 200 {
				b.Fatalf("%d %s", a.status, a.body)
			}
			rows += bytes.Count(a.body, []byte(`"storeId"`))
			next = linkNext(a.hdr.Get("Link"))
		}
		if rows != 100000 {
			b.Fatalf("%d rows, want 100000", rows)
		}
	}
}
