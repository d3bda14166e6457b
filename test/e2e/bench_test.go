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

// The end-to-end benchmark (`make bench-e2e`): the operator binary, the
// simulator over HTTP on 127.0.0.1 with no added latency, a real
// kube-apiserver, and a channel calling the hub API with real
// ServiceAccount tokens. It is behind the "bench" build tag so that
// `make test` does not run it and `make bench`'s `-bench .` over ./...
// does not pick it up twice. Bounded: 150 timed sales and adjustments
// and a burst of 400 sales, about three minutes in all; loopback only.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

const (
	benchStores   = 4
	benchProducts = 1000
	// benchSamples is the number of timed sales and of timed adjustments.
	benchSamples = 150
	// benchSalePace and benchAdjustmentPace space the starts of two timed
	// samples, which go round benchStores stores of one contract, so that
	// each meets an idle store: the figures are the latency of one event,
	// not of a queue. A sale makes the simulator post two sends
	// (transaction_send, stock_send), which cost the operator two pulls
	// (the second send arrives while the first pull runs or after it, and
	// may describe a later change); an adjustment costs two calls
	// (stock_upd, then the pull that reflects it). The operator allows 10 calls a second per contract
	// (--smaregi-rate-limit) and, after a burst of 4, 2 send-driven pulls a
	// second per store (mirror.DefaultSendPullRate): offered faster, the
	// samples would measure those bounds (the burst below does), not the
	// path. The limiter's mean wait per call is reported, and is ~0 when
	// they hold: here under 6 calls a second per contract (a token
	// bucket nearer its rate makes some calls wait), a sale every 1.4 s
	// per store.
	benchSalePace       = 350 * time.Millisecond
	benchAdjustmentPace = 300 * time.Millisecond
	// benchBurst is the number of sales rung up back to back for the
	// calls-per-sale and convergence figures.
	benchBurst = 400
	// benchPollEvery is how often the channel polls the hub API while it
	// waits for one change: the measurement's own granularity.
	benchPollEvery = time.Millisecond
)

// BenchmarkEndToEnd reports, for 4 stores of one contract on bolt, on the
// legacy API (sales announced by API送信 sends):
//   - sale-visible-p50-ms / -p99-ms: a sale rung up in the simulator until
//     GET …/stock?productId= in the hub API shows its stock;
//   - sale-watch-p50-ms / -p99-ms: the same sale until a channel watching
//     the store (pkg/hubclient, list then watch) receives its MODIFIED
//     event;
//   - adjustment-applied-p50-ms / -p99-ms: POST …/adjustments until GET
//     …/adjustments/{id} says "applied";
//   - sale-limiter-wait-ms, adjustment-limiter-wait-ms: the mean time a
//     Smaregi call waited for the contract's rate limiter in that phase;
//   - calls/sale, calls/adjustment: Smaregi calls per timed sale and per
//     timed adjustment;
//   - burst-calls/sale: Smaregi calls the operator made for a burst of 400
//     back-to-back sales in one store, per sale;
//   - burst-converge-ms: from the burst's first sale until that store's
//     whole mirror equals the simulator's stock.
//
// Run it with -benchtime 1x: one op is the whole workload.
func BenchmarkEndToEnd(b *testing.B) { benchEndToEnd(b, false) }

// BenchmarkEndToEndPlatform is BenchmarkEndToEnd for 4 stores of one
// contract on the Platform API: sales announced by webhooks (pos:stock and
// pos:transactions), adjustments written one product per call, each write
// echoed back as a webhook. The Platform limits are the operator's
// defaults (40 reads and 16 writes a second per app and contract), the
// simulator's Smaregi's published 50 and 20.
func BenchmarkEndToEndPlatform(b *testing.B) { benchEndToEnd(b, true) }

func benchEndToEnd(b *testing.B, platform bool) {
	// Initial rows an hour old: otherwise every incremental pull of the
	// first minute (the re-read overlap) would read all 1,000 of them.
	ids := make([]string, benchStores)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	contract := "benche2e"
	if platform {
		contract = "benche2eplat"
	}
	s := newShopAged(b, contract, ids, benchProducts, time.Hour)
	ns := newNamespace(b, "bench")
	op := startOperator(b, newOperatorConfig(b))
	// A long poll, so that the figures are the sends' work alone.
	if platform {
		for _, id := range ids {
			declarePlatformStore(b, ns, "store-"+id, s, id, 10*time.Minute)
		}
	} else {
		declareStores(b, ns, s, 10*time.Minute, ids...)
	}
	for _, id := range ids {
		waitReady(b, ns, "store-"+id)
	}
	if platform {
		connectWebhooks(b, s, getStore(b, ns, "store-1")) // one webhook URL per app
	} else {
		connectSends(b, s, getStore(b, ns, "store-1")) // one receiver URL per contract
	}
	viewer := bearerToken(b, ns, "dashboard", hubapi.StockViewerRole)
	adjuster := bearerToken(b, ns, "online-shop", hubapi.AdjusterRole)
	for _, id := range ids {
		waitFor(b, 60*time.Second, "the initial import of store-"+id, func() bool {
			return mirrorDiff(b, op, viewer, s, ns, "store-"+id, id) == ""
		})
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	// A channel watching every store, as a live feed's user would.
	watch := newWatchClock()
	wctx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	wc := &hubclient.Client{BaseURL: "http://" + op.apiAddr, Token: viewer}
	for _, id := range ids {
		go func() { _ = wc.Sync(wctx, ns, "store-"+id, watch.handler("store-"+id)) }()
	}
	// Warm-up, untimed: each store's first incremental pull after the
	// import re-reads the overlap below the import's watermark, here all
	// 1,000 rows (the simulator stamped them all in the same second), in
	// two pages, while the import has drained the contract's rate limiter.
	for _, id := range ids {
		p := strconv.Itoa(smaregisim.FirstProductID)
		if _, err := s.sim.Sale(id, []smaregisim.SaleLine{{ProductID: p, Quantity: 1}}); err != nil {
			b.Fatal(err)
		}
		want, err := s.sim.StockOf(id, p)
		if err != nil {
			b.Fatal(err)
		}
		pollUntil(b, "the warm-up sale of store-"+id, func() bool {
			got, ok := hubRow(hc, op, viewer, ns, "store-"+id, p)
			return ok && got == want
		})
	}
	time.Sleep(time.Second) // the limiter's bucket refills

	for i := 0; i < b.N; i++ {
		w0, c0 := limiterWait(b, op), smaregiCalls(b, op)
		sale, saleWatch := benchSales(b, s, op, hc, viewer, ns, i, watch)
		w1, c1 := limiterWait(b, op), smaregiCalls(b, op)
		adj := benchAdjustments(b, op, hc, adjuster, ns, i)
		w2, c2 := limiterWait(b, op), smaregiCalls(b, op)
		calls, conv := benchBurstOf(b, s, op, viewer, ns, i)
		logSlowest(b, "sale", sale)
		logSlowest(b, "adjustment", adj)
		b.ReportMetric(ms(pct(sale, 50)), "sale-visible-p50-ms")
		b.ReportMetric(ms(pct(sale, 99)), "sale-visible-p99-ms")
		b.ReportMetric(ms(pct(saleWatch, 50)), "sale-watch-p50-ms")
		b.ReportMetric(ms(pct(saleWatch, 99)), "sale-watch-p99-ms")
		b.ReportMetric(ms(pct(adj, 50)), "adjustment-applied-p50-ms")
		b.ReportMetric(ms(pct(adj, 99)), "adjustment-applied-p99-ms")
		b.ReportMetric((c1-c0)/benchSamples, "calls/sale")
		b.ReportMetric((c2-c1)/benchSamples, "calls/adjustment")
		b.ReportMetric(w1.sub(w0), "sale-limiter-wait-ms")
		b.ReportMetric(w2.sub(w1), "adjustment-limiter-wait-ms")
		b.ReportMetric(calls, "burst-calls/sale")
		b.ReportMetric(ms(conv), "burst-converge-ms")
	}
}

// benchSales times benchSamples single sales, one product each, each on an
// idle store: until the hub API shows it, and until the watching channel
// received it.
func benchSales(b *testing.B, s *shop, op *operator, hc *http.Client, token, ns string, round int, watch *watchClock) (visible, watched []time.Duration) {
	b.Helper()
	out := make([]time.Duration, 0, benchSamples)
	outWatch := make([]time.Duration, 0, benchSamples)
	for i := range benchSamples {
		p := strconv.Itoa(smaregisim.FirstProductID + (round*benchSamples+i)%benchProducts)
		id := strconv.Itoa(i%benchStores + 1)
		start := pace(i, benchSalePace)
		if _, err := s.sim.Sale(id, []smaregisim.SaleLine{{ProductID: p, Quantity: 1}}); err != nil {
			b.Fatalf("sale %d: %v", i, err)
		}
		want, err := s.sim.StockOf(id, p)
		if err != nil {
			b.Fatal(err)
		}
		pollUntil(b, "sale "+strconv.Itoa(i)+" in the hub API", func() bool {
			got, ok := hubRow(hc, op, token, ns, "store-"+id, p)
			return ok && got == want
		})
		out = append(out, time.Since(start))
		var at time.Time
		pollUntil(b, "sale "+strconv.Itoa(i)+" in the watch", func() bool {
			var ok bool
			at, ok = watch.seen("store-"+id, p, want)
			return ok
		})
		outWatch = append(outWatch, at.Sub(start))
	}
	return out, outWatch
}

// watchClock records when a watching channel received each product's
// stock, per store.
type watchClock struct {
	mu   sync.Mutex
	last map[string]watchSeen // store/product
}

type watchSeen struct {
	stock int64
	at    time.Time
}

func newWatchClock() *watchClock { return &watchClock{last: map[string]watchSeen{}} }

func (w *watchClock) seen(store, product string, stock int64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	v, ok := w.last[store+"/"+product]
	return v.at, ok && v.stock == stock
}

// handler is the hubclient.Handler of one store's watch.
func (w *watchClock) handler(store string) hubclient.Handler { return watchHandler{w, store} }

type watchHandler struct {
	w     *watchClock
	store string
}

func (h watchHandler) Replace([]hubclient.Item, uint64) {}

func (h watchHandler) Apply(e hubclient.Event) {
	if e.Type != hubclient.Modified {
		return
	}
	now := time.Now()
	h.w.mu.Lock()
	h.w.last[h.store+"/"+e.Item.ProductID] = watchSeen{stock: e.Item.StockAmount, at: now}
	h.w.mu.Unlock()
}

// benchAdjustments times benchSamples adjustments of one line each, each
// submitted to an idle pusher.
func benchAdjustments(b *testing.B, op *operator, hc *http.Client, token, ns string, round int) []time.Duration {
	b.Helper()
	out := make([]time.Duration, 0, benchSamples)
	for i := range benchSamples {
		p := strconv.Itoa(smaregisim.FirstProductID + (i*13)%benchProducts)
		id := fmt.Sprintf("bench-%d-%d", round, i)
		start := pace(i, benchAdjustmentPace)
		store := "store-" + strconv.Itoa(i%benchStores+1)
		code, _, err := postAdjustment(op, token, ns, store, adjustmentRequest{ID: id, Reason: "order",
			Lines: []adjustmentLine{{ProductID: p, Quantity: -1}}})
		if err != nil || (code != http.StatusCreated && code != http.StatusOK && code != http.StatusAccepted) {
			b.Fatalf("POST adjustment %s: %d %v", id, code, err)
		}
		pollUntil(b, "adjustment "+id+" applied", func() bool {
			return adjustmentStateOf(hc, op, token, ns, store, id) == "applied"
		})
		out = append(out, time.Since(start))
	}
	return out
}

// benchBurstOf rings up benchBurst sales back to back and reports the
// operator's Smaregi calls per sale and the time until the whole mirror
// equals Smaregi's stock.
func benchBurstOf(b *testing.B, s *shop, op *operator, token, ns string, round int) (float64, time.Duration) {
	b.Helper()
	before := smaregiCalls(b, op)
	start := time.Now()
	ringUp(b, s, benchBurst, []string{"1"}, benchProducts, uint64(round)+7)
	if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
		b.Fatal(err)
	}
	if err := s.sim.WaitWebhooksIdle(context.Background()); err != nil {
		b.Fatal(err)
	}
	pollUntil(b, "the mirror to converge after the burst", func() bool {
		return mirrorDiff(b, op, token, s, ns, "store-1", "1") == ""
	})
	conv := time.Since(start)
	// A pull started by the burst's last sends may still be on its way;
	// it is part of the burst's cost.
	time.Sleep(500 * time.Millisecond)
	return float64(smaregiCalls(b, op)-before) / benchBurst, conv
}

// paceStart is when the current phase's first sample started.
var paceStart time.Time

// pace waits until sample i of a phase is due (i × every after the
// phase's first) and returns the time it starts.
func pace(i int, every time.Duration) time.Time {
	if i == 0 {
		paceStart = time.Now()
		return paceStart
	}
	time.Sleep(time.Until(paceStart.Add(time.Duration(i) * every)))
	return time.Now()
}

// waits is a sum and count of rate-limiter waits.
type waits struct{ sum, n float64 }

// sub is the mean wait in ms between two readings.
func (w waits) sub(before waits) float64 {
	if w.n == before.n {
		return 0
	}
	return (w.sum - before.sum) / (w.n - before.n) * 1000
}

// limiterWait reads the rate-limiter waits of both APIs' clients.
func limiterWait(b *testing.B, op *operator) waits {
	b.Helper()
	var w waits
	for _, api := range []string{"client", "platform"} {
		sum, _ := metric(b, op, "smaregi_"+api+"_rate_limiter_wait_seconds_sum")
		n, _ := metric(b, op, "smaregi_"+api+"_rate_limiter_wait_seconds_count")
		w.sum, w.n = w.sum+sum, w.n+n
	}
	return w
}

// pollUntil polls cond every benchPollEvery: waitFor's 100 ms between
// checks would be the measurement's resolution. The 60 s bound only stops
// a broken run.
func pollUntil(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(benchPollEvery)
	}
}

// hubRow reads one product's stockAmount through the hub API.
func hubRow(hc *http.Client, op *operator, token, ns, name, productID string) (int64, bool) {
	req, _ := http.NewRequest(http.MethodGet,
		fmt.Sprintf("http://%s/api/v1/namespaces/%s/smaregistores/%s/stock?productId=%s", op.apiAddr, ns, name, productID), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, false
	}
	defer func() { _ = resp.Body.Close() }()
	var out stockListing
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || len(out.Items) != 1 {
		return 0, false
	}
	return out.Items[0].StockAmount, true
}

func adjustmentStateOf(hc *http.Client, op *operator, token, ns, name, id string) string {
	req, _ := http.NewRequest(http.MethodGet,
		fmt.Sprintf("http://%s/api/v1/namespaces/%s/smaregistores/%s/adjustments/%s", op.apiAddr, ns, name, id), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := hc.Do(req)
	if err != nil {
		return ""
	}
	defer func() { _ = resp.Body.Close() }()
	var out adjustmentState
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil {
		return ""
	}
	return out.State
}

// smaregiCalls sums smaregi_client_requests_total and
// smaregi_platform_requests_total over every call and outcome: every call
// the operator made to either API, retries and token calls included.
func smaregiCalls(b *testing.B, op *operator) float64 {
	b.Helper()
	resp, err := http.Get("http://" + op.metricsAddr + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "smaregi_client_requests_total{")
		if !ok {
			rest, ok = strings.CutPrefix(sc.Text(), "smaregi_platform_requests_total{")
		}
		if !ok {
			continue
		}
		_, v, _ := strings.Cut(rest, "} ")
		n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			b.Fatalf("parsing %q: %v", sc.Text(), err)
		}
		sum += n
	}
	return sum
}

// logSlowest logs the three slowest samples with their index, to tell a
// start-up effect or a periodic one from noise.
func logSlowest(b *testing.B, what string, ds []time.Duration) {
	idx := make([]int, len(ds))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(x, y int) int { return int(ds[y] - ds[x]) })
	var out []string
	for _, i := range idx[:min(3, len(idx))] {
		out = append(out, fmt.Sprintf("#%d %.1f ms", i, ms(ds[i])))
	}
	b.Logf("slowest %ss: %s", what, strings.Join(out, ", "))
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
