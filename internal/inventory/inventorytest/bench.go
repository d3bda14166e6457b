package inventorytest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/heappeak"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// BenchmarkRecordSend measures durable RecordSend throughput with many
// concurrent callers (parallelism × GOMAXPROCS goroutines), as a receiver
// under load would call it. It reports sends/s and the p99 latency.
func BenchmarkRecordSend(b *testing.B, st inventory.Store, parallelism int) {
	ctx := context.Background()
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(parallelism)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := seq.Add(1)
			rec := inventory.SendRecord{
				ID: fmt.Sprintf("bench-%d-%d", start.UnixNano(), i), Namespace: "bench", ProcName: "transaction_send",
				Targets:    []inventory.StoreKey{{Namespace: "bench", Name: fmt.Sprintf("store-%d", i%50)}},
				Rows:       3,
				ReceivedAt: time.Now(),
			}
			t := time.Now()
			if _, err := st.RecordSend(ctx, rec); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "sends/s")
	if len(lat) > 0 {
		sortDurations(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

// BenchmarkFullSync measures a full sync of rows products in pages of 1,000
// against a mirror that already holds them, with about 1% drift each time.
// It reports seconds per sync and the peak Go heap during it; pages are
// generated on the fly so the heap is the store's, not the benchmark's.
func BenchmarkFullSync(b *testing.B, st inventory.Store, rows int) {
	ctx := context.Background()
	key := inventory.StoreKey{Namespace: "bench", Name: "fullsync"}
	page := func(iter, from, to int) []inventory.Row {
		out := make([]inventory.Row, 0, to-from)
		for i := from; i < to; i++ {
			stock := int64(i % 50)
			if i%100 == iter%100 { // ~1% drift that moves every iteration
				stock += int64(iter) + 1
			}
			out = append(out, inventory.Row{ProductID: fmt.Sprintf("%015d", 8000000+i), StockAmount: stock,
				UpdDateTime: time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)})
		}
		return out
	}
	sync := func(iter int) inventory.Drift {
		fs, err := st.BeginFullSync(ctx, key)
		if err != nil {
			b.Fatal(err)
		}
		defer func() { _ = fs.Abort() }()
		for from := 0; from < rows; from += 1000 {
			if err := fs.Add(ctx, page(iter, from, min(rows, from+1000))); err != nil {
				b.Fatal(err)
			}
		}
		d, err := fs.Commit(ctx, time.Now())
		if err != nil {
			b.Fatal(err)
		}
		return d
	}
	sync(-1) // fill the mirror
	heap := heappeak.Start()
	b.ResetTimer()
	start := time.Now()
	drift := 0
	for i := 0; i < b.N; i++ {
		drift += sync(i).Total()
	}
	elapsed := time.Since(start)
	b.StopTimer()
	heap.Report(b)
	b.ReportMetric(elapsed.Seconds()/float64(b.N), "s/sync")
	b.ReportMetric(float64(drift)/float64(b.N), "drift/sync")
}
