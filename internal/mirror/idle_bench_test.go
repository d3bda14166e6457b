package mirror

import (
	"strconv"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// BenchmarkIdleCalls counts the Smaregi calls (stock_ref) that idle stores
// cost at the default schedule (poll 1m, full resync 1h, 1,000 SKUs): issue
// 13's "Smaregi calls per idle store per hour". The engine runs on a fake
// clock walked minute by minute through four hours with nothing changing
// in Smaregi; the first hour (the import and the stretch building up) is
// left out of the figure. "stretch" is the default (DefaultPollStretchMax);
// "fixed" polls at the configured interval (PollStretchMax 1), as before
// the stretch. Credential checks are the controller's, not the engine's, and
// are not counted here (6 an hour at --credentials-recheck-interval 10m).
func BenchmarkIdleCalls(b *testing.B) {
	for _, c := range []struct {
		name    string
		stretch int
	}{{"stretch", DefaultPollStretchMax}, {"fixed", 1}} {
		b.Run(c.name, func(b *testing.B) {
			for range b.N {
				idleCalls(b, c.stretch)
			}
		})
	}
}

func idleCalls(b *testing.B, stretch int) {
	const stores, hours = 10, 4
	ids := make([]string, stores)
	for i := range ids {
		ids[i] = strconv.Itoa(i + 1)
	}
	h := newHarness(b, func(o *smaregisim.Options) {
		o.Stores = ids
		o.Products = 1000
	})
	// A shop's rows do not all share one second: one later change per
	// store puts the watermark past the import's second, so a poll's
	// overlap (DefaultOverlap) re-reads that row, not all 1,000, and costs
	// one call, as it would in a real shop.
	h.clk.Advance(5 * time.Minute)
	for _, id := range ids {
		if _, err := h.sim.StockMovement(smaregisim.StockMovement{StoreID: id, ProductID: "8000001", Amount: 1, StockDivision: "05"}); err != nil {
			b.Fatal(err)
		}
	}
	clk := clocktesting.NewFakeClock(time.Now())
	e, _ := newEngine(b, h, func(o *Options) { o.Clock, o.PollStretchMax = clk, stretch })
	q := withDrain(b, e)
	run(b, e)
	for _, id := range ids {
		cfg := h.config()
		cfg.Key.Name = "store-" + id
		cfg.StoreID = id
		cfg.PollInterval, cfg.FullResyncInterval = time.Minute, time.Hour
		e.UpsertStore(cfg)
	}
	for _, id := range ids {
		key := testKey
		key.Name = "store-" + id
		waitFor(b, time.Minute, "the initial imports", synced(e, key))
	}
	drain(b, e, q)
	var afterFirstHour int64
	for m := 1; m <= hours*60; m++ {
		clk.Step(time.Minute)
		e.scheduleDue()
		drain(b, e, q)
		if m == 60 {
			afterFirstHour = h.refCalls.Load()
		}
	}
	perStoreHour := float64(h.refCalls.Load()-afterFirstHour) / stores / (hours - 1)
	b.ReportMetric(perStoreHour, "idle-calls/store/h")
}
