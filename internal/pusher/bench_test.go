package pusher

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// BenchmarkAdjustmentToApplied submits b.N adjustments over 3 stores, paced
// at about 2,000 a second, against the simulator over HTTP with 10 ms of
// latency per call, and reports the submission→applied latency (p50, p99)
// and the throughput. The design target is p99 under 1 s.
func BenchmarkAdjustmentToApplied(b *testing.B) {
	h := newHarness(b, 3)
	if err := h.sim.SetFaults(smaregisim.Faults{LatencyMs: 10}); err != nil {
		b.Fatal(err)
	}
	h.start(b, nil)
	rng := rand.New(rand.NewPCG(9, 9))
	adjs := make([]inventory.Adjustment, b.N)
	for i := range adjs {
		adjs[i] = randomAdjustment(rng, h.keys[i%len(h.keys)], fmt.Sprintf("bench-%d", i))
	}
	b.ResetTimer()
	start := time.Now()
	// Callers submit concurrently, as the hub API's requests do (one
	// submission waits for its fsync; concurrent ones share commits).
	const callers = 32
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < len(adjs); i += callers {
				// Paced: caller c submits its k-th at start + k*callers/2 ms.
				time.Sleep(time.Until(start.Add(time.Duration(i) * time.Millisecond / 2)))
				if _, _, err := h.inv.SubmitAdjustment(context.Background(), adjs[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	waitSettled(b, h.inv, adjs, 5*time.Minute)
	elapsed := time.Since(start)
	b.StopTimer()
	lat := make([]float64, 0, len(adjs))
	for _, a := range adjs {
		got, _, _ := h.inv.GetAdjustment(context.Background(), a.Key, a.ID)
		if got.State != inventory.AdjustmentApplied {
			b.Fatalf("%s is %s", a.ID, got.State)
		}
		lat = append(lat, got.AppliedAt.Sub(got.CreatedAt).Seconds()*1000)
	}
	sort.Float64s(lat)
	pct := func(q float64) float64 { return lat[min(len(lat)-1, int(q*float64(len(lat))))] }
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(float64(len(adjs))/elapsed.Seconds(), "adjustments/s")
}
