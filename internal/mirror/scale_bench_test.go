package mirror

import (
	"fmt"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// BenchmarkManyStores checks the design target "1,000 stores in one operator
// with flat per-store memory" and, reduced, issue 13's 10,000 stores: one
// engine imports N stores (20 products each, not 1,000: the simulator and
// the import would hold 10,000,000 rows) and the heap and goroutines it
// holds afterwards are reported per store, with the process's CPU while
// idle after the import. Flat means the per-store figures do not grow with N. The simulator
// runs in the same process; its state exists before the baseline is taken,
// so the delta is the engine's (registry, per-store readers, status state)
// plus the inventory's caches.
func BenchmarkManyStores(b *testing.B) {
	for _, n := range []int{100, 1000, 10_000} {
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
	// The operator's timings, not the harness's fast ones: the idle CPU
	// figure is the schedule's and status loop's ticks over n stores.
	e, _ := newEngine(b, h, func(o *Options) { o.Tick, o.StatusInterval = DefaultTick, DefaultStatusInterval })
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
	// Idle cost: nothing is due for minutes (poll and full resync), so
	// what the process burns now is the engine's schedule ticks over n
	// stores (and the idle simulator, test harness and GC).
	idle := 3 * time.Second
	cpu0 := processCPU(b)
	time.Sleep(idle)
	idleCPU := processCPU(b) - cpu0
	after := heapInUse()
	b.ReportMetric(float64(after-before)/float64(n), "heap-B/store")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutinesBefore)/float64(n), "goroutines/store")
	b.ReportMetric(imported.Seconds(), "import-s")
	b.ReportMetric(100*idleCPU.Seconds()/idle.Seconds(), "idle-cpu-%")
}

// processCPU is the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapInUse is the live heap after a full collection.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}
