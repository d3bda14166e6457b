package smaregi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// BenchmarkStreamStock100k streams a store of 100,000 stock rows through the
// client from the simulator over real HTTP on 127.0.0.1 (100 pages of
// 1,000), the way a full reconcile does. It reports rows/s and the bytes the
// whole process (client and simulator) allocates per row.
func BenchmarkStreamStock100k(b *testing.B) {
	const products = 100000
	e := startSim(b, func(o *smaregisim.Options) {
		o.Products = products
		o.Stores = []string{"1"}
	})
	// Spread changes over a thousand seconds so that pages end inside and
	// between seconds, as in a live shop.
	for i := range 1000 {
		e.clock.Advance(time.Second)
		if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: pid(i * 97), Amount: 1, StockDivision: "05"}); err != nil {
			b.Fatal(err)
		}
	}
	c := newClient(b, e.Endpoint(), nil)
	ctx := context.Background()
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	start := time.Now()
	total := 0
	for range b.N {
		n := 0
		err := c.StreamStock(ctx, smaregi.StockQuery{StoreID: "1"}, func(page []smaregi.StockRow) error {
			n += len(page)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		if n != products {
			b.Fatalf("streamed %d rows, want %d", n, products)
		}
		total += n
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(total), "B/row")
}

// BenchmarkStreamStockClientOnly100k isolates the client's cost: the answers
// of a simulator stream of 100,000 rows are recorded once, then replayed by
// a server over real HTTP that only looks up and writes the recorded bytes,
// so rows/s and B/row are (almost all) the client's own.
func BenchmarkStreamStockClientOnly100k(b *testing.B) {
	const products = 100000
	e := startSim(b, func(o *smaregisim.Options) {
		o.Products = products
		o.Stores = []string{"1"}
	})
	for i := range 1000 {
		e.clock.Advance(time.Second)
		if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: pid(i * 97), Amount: 1, StockDivision: "05"}); err != nil {
			b.Fatal(err)
		}
	}
	recorded := map[string][]byte{}
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		key := r.PostForm.Get("params")
		rr := httptest.NewRecorder()
		r.Body = io.NopCloser(strings.NewReader(r.PostForm.Encode()))
		e.sim.Handler().ServeHTTP(rr, r)
		recorded[key] = rr.Body.Bytes()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(rr.Body.Bytes())
	}))
	defer rec.Close()
	stream := func(c *smaregi.Client) int {
		n := 0
		if err := c.StreamStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func(page []smaregi.StockRow) error {
			n += len(page)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		return n
	}
	if n := stream(newClient(b, rec.URL+"/access/", nil)); n != products {
		b.Fatalf("recorded %d rows, want %d", n, products)
	}
	replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		body, ok := recorded[r.PostForm.Get("params")]
		if !ok {
			http.Error(w, "not recorded", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	defer replay.Close()
	c := newClient(b, replay.URL+"/access/", nil)
	stream(c) // warm the connection pool and buffers

	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	start := time.Now()
	total := 0
	for range b.N {
		if n := stream(c); n != products {
			b.Fatalf("streamed %d rows, want %d", n, products)
		}
		total += products
	}
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(total)/elapsed.Seconds(), "rows/s")
	b.ReportMetric(float64(ms1.TotalAlloc-ms0.TotalAlloc)/float64(total), "B/row")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(total), "allocs/row")
}
