package mirror

import (
	"slices"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// The poll interval doubles with each poll that finds nothing new, up to
// PollStretchMax times spec.sync.pollInterval, and is back at the
// configured interval at once when a poll finds a change no send announced
// or a full reconcile finds drift. Driven on a fake clock, minute by
// minute, counting the stock_ref calls that reach the simulator.
func TestPollStretchesWhileQuietAndSnapsBack(t *testing.T) {
	h := newHarness(t, nil)
	clk := clocktesting.NewFakeClock(time.Now())
	e, _ := newEngine(t, h, func(o *Options) { o.Clock = clk })
	q := withDrain(t, e)
	run(t, e)
	cfg := h.config()
	cfg.PollInterval, cfg.FullResyncInterval = time.Minute, 24*time.Hour
	e.UpsertStore(cfg)
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))
	drain(t, e, q)

	// walk steps the clock n minutes, one at a time, running the schedule
	// and waiting for its pulls; it returns the minutes that pulled.
	walk := func(n int) []int {
		t.Helper()
		var pulled []int
		for m := 1; m <= n; m++ {
			before := h.refCalls.Load()
			clk.Step(time.Minute)
			e.scheduleDue()
			drain(t, e, q)
			if h.refCalls.Load() != before {
				pulled = append(pulled, m)
			}
		}
		return pulled
	}
	// Quiet: intervals 1, 2, 4, then 8 minutes (DefaultPollStretchMax).
	if got, want := walk(40), []int{1, 3, 7, 15, 23, 31, 39}; !slices.Equal(got, want) {
		t.Fatalf("quiet store polled at minutes %v, want %v", got, want)
	}
	// The interval in force is reported (smaregi_mirror_poll_interval_seconds),
	// so the staleness alert measures against it.
	if s, _ := e.Snapshot(testKey); s.PollInterval != 8*time.Minute {
		t.Fatalf("snapshot's poll interval %s, want 8m", s.PollInterval)
	}

	// A change no send announced: the next (stretched) poll finds it, and
	// the store is polled every minute again.
	h.clk.Advance(time.Second)
	if _, err := h.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: "8000003", Amount: 2, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	if got, want := walk(10), []int{7, 8, 10}; !slices.Equal(got, want) {
		t.Fatalf("after an unannounced change, polls at minutes %v, want %v (found at 7, then 1 and 2 minutes apart)", got, want)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatal(d)
	}

	// Drift found by a full reconcile (a change stamped an hour back, which
	// no poll sees) ends the stretch until a full reconcile finds none.
	h.clk.Advance(-time.Hour)
	if _, err := h.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: "8000004", Amount: 1, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(time.Hour)
	e.RequestPull(testKey, TriggerFull)
	drain(t, e, q)
	if s, _ := e.Snapshot(testKey); s.Drift != 1 {
		t.Fatalf("full reconcile found drift %d, want 1", s.Drift)
	}
	if got, want := walk(4), []int{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Fatalf("after drift, polls at minutes %v, want every minute %v", got, want)
	}
	e.RequestPull(testKey, TriggerFull)
	drain(t, e, q)
	if s, _ := e.Snapshot(testKey); s.Drift != 0 {
		t.Fatalf("second full reconcile found drift %d, want 0", s.Drift)
	}
	if got, want := walk(8), []int{1, 3, 7}; !slices.Equal(got, want) {
		t.Fatalf("after a reconcile without drift, polls at minutes %v, want %v", got, want)
	}
}

// PollStretchMax 1 keeps the configured interval.
func TestPollStretchMaxOneKeepsTheInterval(t *testing.T) {
	h := newHarness(t, nil)
	clk := clocktesting.NewFakeClock(time.Now())
	e, _ := newEngine(t, h, func(o *Options) { o.Clock, o.PollStretchMax = clk, 1 })
	q := withDrain(t, e)
	run(t, e)
	cfg := h.config()
	cfg.PollInterval = time.Minute
	e.UpsertStore(cfg)
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))
	drain(t, e, q)
	before := h.refCalls.Load()
	for range 10 {
		clk.Step(time.Minute)
		e.scheduleDue()
		drain(t, e, q)
	}
	if got := h.refCalls.Load() - before; got != 10 {
		t.Fatalf("%d polls in 10 minutes, want 10", got)
	}
}
