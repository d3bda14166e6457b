//go:build bench

/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package e2e

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// floodMemoryLimit is the chart's limits.memory, given to the operator as
// GOMEMLIMIT as config/manager/manager.yaml does.
const floodMemoryLimit = 512 << 20

// BenchmarkReceiverKeylessFlood (issue 20 §1): the operator binary, with a
// store whose receiver route is live, takes a flood of concurrent 4 MiB
// POSTs on that route without the key, over real HTTP on loopback, and
// reports how far its RSS rose. Each client posts its next body as soon as
// the last is answered, so the flood keeps SMAREGI_FLOOD_CONCURRENCY
// requests in flight (default 32) for SMAREGI_FLOOD_ROUNDS bodies each
// (default 8). Two bodies, one after the other:
//
//   - issue-body: goqsystem_key=wrong&0=&1=&…, the body (before:
//     about 117 MB allocated per request, 730 MB RSS for eight at once);
//   - keyless-one-field: one 4 MiB field and no key, which the receiver
//     must read whole before it knows the key is not last: the costliest
//     body an outsider can send.
//
// Metrics, per body: baseline-rss-MB (before the flood), peak-rss-MB (the
// highest VmRSS sampled every 5 ms during it), growth-MB/in-flight (the
// rise over baseline divided by the requests in flight; the target is
// under 10), and the answers: 401, 413, 503 (busy: past
// --receiver-max-in-flight-bytes) and transport errors (the receiver
// closes a connection whose body it did not read). limit-MB is the
// GOMEMLIMIT the operator ran with.
//
// Run it with -benchtime 1x: one op is the whole flood.
func BenchmarkReceiverKeylessFlood(b *testing.B) {
	concurrency := envInt(b, "SMAREGI_FLOOD_CONCURRENCY", 32)
	rounds := envInt(b, "SMAREGI_FLOOD_ROUNDS", 8)
	s := newShop(b, "floode2e", []string{"1"}, 5)
	ns := newNamespace(b, "flood")
	cfg := newOperatorConfig(b)
	cfg.env = append(cfg.env, "GOMEMLIMIT="+strconv.Itoa(floodMemoryLimit))
	op := startOperator(b, cfg)
	declareStores(b, ns, s, time.Hour, "1")
	target := waitReady(b, ns, "store-1").Status.Receiver.URL
	pid := op.cmd.Process.Pid

	const size = 4<<20 - 64
	bodies := []struct{ name, body string }{
		{"issue-body", emptyFields("goqsystem_key=wrong&", size)},
		{"keyless-one-field", "junk=" + strings.Repeat("x", size-5)},
	}
	tr := &http.Transport{MaxIdleConnsPerHost: concurrency}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: time.Minute}

	for b.Loop() {
		for _, body := range bodies {
			// Let the heap settle from what came before.
			time.Sleep(2 * time.Second)
			baseline := procField(pid, "VmRSS:")
			var peak atomic.Uint64
			peak.Store(uint64(baseline * 1024))
			stop := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					if kb := uint64(procField(pid, "VmRSS:") * 1024); kb > peak.Load() {
						peak.Store(kb)
					}
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()

			var mu sync.Mutex
			answers := map[int]int{}
			transportErrors := 0
			var wg sync.WaitGroup
			for range concurrency {
				wg.Go(func() {
					for range rounds {
						req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(body.body))
						if err != nil {
							b.Error(err)
							return
						}
						req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
						resp, err := hc.Do(req)
						mu.Lock()
						if err != nil {
							transportErrors++
						} else {
							answers[resp.StatusCode]++
						}
						mu.Unlock()
						if err == nil {
							_, _ = io.Copy(io.Discard, resp.Body)
							_ = resp.Body.Close()
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			<-sampled

			peakMB := float64(peak.Load()) / 1024
			for status := range answers {
				switch status {
				case http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
				default:
					b.Errorf("%s: %d answers with status %d, want only 401, 413 or 503", body.name, answers[status], status)
				}
			}
			if answers[http.StatusUnauthorized]+answers[http.StatusRequestEntityTooLarge] == 0 {
				b.Errorf("%s: no request was answered 401 or 413: %v, %d transport errors", body.name, answers, transportErrors)
			}
			if peakMB*(1<<20) > floodMemoryLimit {
				b.Errorf("%s: peak RSS %.0f MB, past the %d MB limit", body.name, peakMB, floodMemoryLimit>>20)
			}
			b.Logf("%s: %d in flight x %d rounds: RSS %.0f -> peak %.0f MB; answers %v, %d transport errors",
				body.name, concurrency, rounds, baseline, peakMB, answers, transportErrors)
			b.ReportMetric(baseline, body.name+"-baseline-rss-MB")
			b.ReportMetric(peakMB, body.name+"-peak-rss-MB")
			b.ReportMetric((peakMB-baseline)/float64(concurrency), body.name+"-growth-MB/in-flight")
			b.ReportMetric(float64(answers[http.StatusUnauthorized]), body.name+"-401s")
			b.ReportMetric(float64(answers[http.StatusRequestEntityTooLarge]), body.name+"-413s")
			b.ReportMetric(float64(answers[http.StatusServiceUnavailable]), body.name+"-503s")
			b.ReportMetric(float64(transportErrors), body.name+"-transport-errors")
		}
	}
	b.ReportMetric(float64(floodMemoryLimit>>20), "limit-MB")
}

// emptyFields is head followed by empty fields "0=&1=&…" up to size bytes.
func emptyFields(head string, size int) string {
	var sb strings.Builder
	sb.Grow(size + 16)
	sb.WriteString(head)
	for i := 0; sb.Len() < size-16; i++ {
		sb.WriteString(strconv.Itoa(i))
		sb.WriteString("=&")
	}
	return sb.String()
}
