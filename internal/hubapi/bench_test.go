package hubapi

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// BenchmarkStockListing100k lists a 100,000-row mirror over real HTTP on
// loopback, with the caller's reviews cached as in steady use. Allocations
// per listing show that the answer is streamed, not built in memory.
func BenchmarkStockListing100k(b *testing.B) {
	f := newFixture(b, fixtureOpts{safetyStock: 1})
	rows := make([]inventory.Row, 100_000)
	for i := range rows {
		rows[i] = inventory.Row{ProductID: fmt.Sprint(8000001 + i), StockAmount: int64(i % 50), LayawayStockAmount: int64(i % 3), UpdDateTime: t0}
	}
	f.mem.put(f.key, rows...)
	get := func() int64 {
		req, _ := http.NewRequest("GET", f.path("/stock"), nil)
		req.Header.Set("Authorization", "Bearer "+f.viewer)
		resp, err := f.client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("listing: %d %v", resp.StatusCode, err)
		}
		return n
	}
	size := get() // warms the review cache
	b.SetBytes(size)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}
