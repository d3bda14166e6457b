// Package heappeak measures the peak Go heap while a benchmark runs, for the
// design's memory targets (a full reconcile of 100,000 products, many
// stores), which the allocation counts of -benchmem do not show.
package heappeak

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// Sampler samples the live heap until Stop.
type Sampler struct {
	base uint64
	peak atomic.Uint64
	stop chan struct{}
	done chan struct{}
}

// Start collects garbage, takes the heap in use as the baseline and samples
// it every 5 ms from then on.
func Start() *Sampler {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := &Sampler{base: ms.HeapInuse, stop: make(chan struct{}), done: make(chan struct{})}
	s.peak.Store(ms.HeapInuse)
	go func() {
		defer close(s.done)
		for {
			s.sample()
			select {
			case <-s.stop:
				s.sample() // what the last interval allocated
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *Sampler) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.HeapInuse > s.peak.Load() {
		s.peak.Store(ms.HeapInuse)
	}
}

// Stop ends sampling and returns the peak heap in use and its growth over
// the baseline, in bytes.
func (s *Sampler) Stop() (peak, growth uint64) {
	close(s.stop)
	<-s.done
	peak = s.peak.Load()
	return peak, peak - min(peak, s.base)
}

// Report stops sampling and reports peak-heap-MB and peak-heap-growth-MB.
func (s *Sampler) Report(b *testing.B) {
	peak, growth := s.Stop()
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(growth)/(1<<20), "peak-heap-growth-MB")
}
