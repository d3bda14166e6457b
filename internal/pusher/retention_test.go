package pusher

import (
	"context"
	"fmt"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

func TestAdjustmentRetentionDefault(t *testing.T) {
	if got := (Options{}).withDefaults().AdjustmentRetention; got != 30*24*time.Hour {
		t.Fatalf("default AdjustmentRetention = %v, want 30 days", got)
	}
	if got := (Options{AdjustmentRetention: time.Hour}).withDefaults().AdjustmentRetention; got != time.Hour {
		t.Fatalf("AdjustmentRetention = %v, want the one set", got)
	}
}

// The pusher applies the adjustment retention: once applied adjustments are
// reflected by a pull, a later run of the store's worker deletes them, and
// never one that is pending or not yet reflected.
func TestPusherPrunesSettledAdjustments(t *testing.T) {
	h := newHarness(t, 1)
	ctx := context.Background()
	key := h.keys[0]
	clk := testingclock.NewFakeClock(time.Now())
	var window time.Duration
	h.start(t, func(o *Options) { o.Clock, o.AdjustmentRetention, window = clk, time.Nanosecond, o.Window })
	old := generate(h, 5, 7)
	submitAll(t, h.inv, old)
	stepUntil(t, clk, window, "the first adjustments to settle", func() error { return stillPending(t, h.inv, old) })
	verifyExactlyOnce(t, h, old, true)
	// The mirror's pull, started after they were applied, reflects them.
	clk.Step(time.Minute)
	if n, err := h.inv.MarkAdjustmentsReflected(ctx, key, clk.Now()); err != nil || n != len(old) {
		t.Fatalf("MarkAdjustmentsReflected = %d, %v; want %d", n, err, len(old))
	}
	// New work wakes the store's worker (a new one, or the running one, a
	// minute past its last pruning, more than SweepInterval), which prunes.
	fresh := []inventory.Adjustment{{Key: key, ID: "fresh", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}}}
	submitAll(t, h.inv, fresh)
	stepUntil(t, clk, window, "the reflected adjustments to be pruned and the new one to settle", func() error {
		left := 0
		for _, a := range old {
			if _, ok, err := h.inv.GetAdjustment(ctx, key, a.ID); err != nil {
				t.Fatal(err)
			} else if ok {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d of %d reflected adjustments not pruned", left, len(old))
		}
		return stillPending(t, h.inv, fresh)
	})
	// Applied, not reflected yet: kept however old.
	got, ok, err := h.inv.GetAdjustment(ctx, key, "fresh")
	if err != nil || !ok || got.State != inventory.AdjustmentApplied {
		t.Fatalf("fresh = %+v, %v, %v; want applied and kept", got, ok, err)
	}
}
