package hubapi

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

func reportQuantiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkSaleToWatchEvent measures, in process over loopback HTTP, the
// time from a mirror change being committed (ApplyPull, as a pull after a
// sale) to its event reaching a watching client (bbolt). It leaves out the
// receiver and the pull from Smaregi.
func BenchmarkSaleToWatchEvent(b *testing.B) {
	inv := openBolt(b, filepath.Join(b.TempDir(), "inventory.db"))
	defer inv.Close()
	f := newFixture(b, fixtureOpts{store: inv})
	ctx := context.Background()
	c := &hubclient.Client{BaseURL: f.base, Token: f.viewer}
	w, err := c.Watch(ctx, f.ns, f.store.Name, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer w.Close()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := inv.ApplyPull(ctx, f.key, []inventory.Row{{ProductID: "8000001", StockAmount: int64(i), UpdDateTime: t0}}, t0); err != nil {
			b.Fatal(err)
		}
		for {
			e, err := w.Next()
			if err != nil {
				b.Fatal(err)
			}
			if e.Type == hubclient.Modified {
				break
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportQuantiles(b, lat)
}

// BenchmarkWatchFanout runs 1,000 watchers of one store while it changes
// 100 times a second for 5 seconds (one iteration whatever b.N), in process
// over loopback HTTP (bbolt). It reports the event delay (commit to each
// watcher) and the Go heap per watcher, server and client sides together.
func BenchmarkWatchFanout(b *testing.B) {
	const watchers, rate, seconds = 1000, 100, 5
	inv := openBolt(b, filepath.Join(b.TempDir(), "inventory.db"))
	defer inv.Close()
	f := newFixture(b, fixtureOpts{store: inv})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr := &http.Transport{MaxIdleConnsPerHost: watchers, MaxConnsPerHost: 0}
	c := &hubclient.Client{BaseURL: f.base, Token: f.viewer, HTTP: &http.Client{Transport: tr}}

	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	var (
		mu      sync.Mutex
		commits = map[uint64]time.Time{}
		lat     []time.Duration
		wg      sync.WaitGroup
	)
	ready := make(chan struct{}, watchers)
	for i := 0; i < watchers; i++ {
		w, err := c.Watch(ctx, f.ns, f.store.Name, 0)
		if err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.Close()
			ready <- struct{}{}
			var mine []time.Duration
			for n := 0; n < rate*seconds; {
				e, err := w.Next()
				if err != nil {
					break
				}
				if e.Type != hubclient.Modified {
					continue
				}
				n++
				now := time.Now()
				mu.Lock()
				at := commits[e.ResourceVersion]
				mu.Unlock()
				mine = append(mine, now.Sub(at))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	for i := 0; i < watchers; i++ {
		<-ready
	}
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	b.ResetTimer()
	tick := time.NewTicker(time.Second / rate)
	for i := 0; i < rate*seconds; i++ {
		<-tick.C
		mu.Lock() // the version is known only after the commit: hold readers
		if _, err := inv.ApplyPull(ctx, f.key, []inventory.Row{{ProductID: fmt.Sprint(8000000 + i%50), StockAmount: int64(i), UpdDateTime: t0}}, t0); err != nil {
			mu.Unlock()
			b.Fatal(err)
		}
		commits[uint64(i+1)] = time.Now()
		mu.Unlock()
	}
	tick.Stop()
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(ms1.HeapInuse-ms0.HeapInuse)/watchers/1024, "heap-KiB/watcher")
	b.ReportMetric(float64(len(lat))/float64(watchers*rate*seconds), "delivered-fraction")
	reportQuantiles(b, lat)
}
