package smaregiplatform_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// BenchmarkListStock100k lists a store of 100,000 stock rows through the
// client from the simulator over real HTTP on 127.0.0.1 (100 pages of
// 1,000, token included), the way a full reconcile does, by `page` and by
// `Link`. It reports rows/s and the bytes the whole process (client and
// simulator) allocates per row; compare BenchmarkStreamStock100k of
// internal/smaregi (the legacy client over the same simulator).
func BenchmarkListStock100k(b *testing.B) {
	const products = 100000
	for _, paging := range []string{smaregisim.PagingPage, smaregisim.PagingLink} {
		b.Run(paging, func(b *testing.B) {
			e := startSim(b, func(o *smaregisim.Options) {
				o.Products = products
				o.Stores = []string{"1"}
				o.Platform.Paging = paging
			})
			for i := range 1000 {
				e.clock.Advance(time.Second)
				if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: fmt.Sprint(8000001 + (i*97)%products),
					Amount: 1, StockDivision: "05"}); err != nil {
					b.Fatal(err)
				}
			}
			c := newClient(b, e, nil)
			ctx := context.Background()
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			b.ResetTimer()
			start := time.Now()
			total := 0
			for range b.N {
				n := 0
				err := c.ListStock(ctx, smaregi.StockQuery{StoreID: "1"}, func(page []smaregi.StockRow) error {
					n += len(page)
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
				if n != products {
					b.Fatalf("listed %d rows, want %d", n, products)
				}
				total += n
			}
			elapsed := time.Since(start)
			b.StopTimer()
			runtime.ReadMemStats(&ms1)
			b.ReportMetric(float64(total)/elapsed.Seconds(), "rows/s")
			b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(total), "B/row")
		})
	}
}
