package smaregisim

import (
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
