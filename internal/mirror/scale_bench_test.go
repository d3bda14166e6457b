package mirror

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// BenchmarkManyStores checks the design target "1,000 stores in one operator
// with flat per-store memory": one engine imports N stores (20 products
// each) and the heap and goroutines it holds afterwards are reported per
// store. Flat means the per-store figures do not grow with N. The simulator
// runs in the same process; its state exists before the baseline is taken,
// so the delta is the engine's (registry, per-store readers, status state)
// plus the inventory's caches.
func BenchmarkManyStores(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for range b.N {
				manyStores(b, n)
			}
		})
	}
}

func manyStores(b *testing.B, n int) {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	h := newHarness(b, func(o *smaregisim.Options) {
		o.Stores = ids
		o.Products = 20
	})
	before := heapInUse()
	goroutinesBefore := runtime.NumGoroutine()
	e, _ := newEngine(b, h, nil)
	run(b, e)
	start := time.Now()
	for _, id := range ids {
		cfg := h.config()
		cfg.Key.Name = "store-" + id
		cfg.StoreID = id
		e.UpsertStore(cfg)
	}
	for _, id := range ids {
		key := testKey
		key.Name = "store-" + id
		waitFor(b, 5*time.Minute, fmt.Sprintf("initial import of %d stores", n), synced(e, key))
	}
	imported := time.Since(start)
	after := heapInUse()
	b.ReportMetric(float64(after-before)/float64(n), "heap-B/store")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutinesBefore)/float64(n), "goroutines/store")
	b.ReportMetric(imported.Seconds(), "import-s")
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
