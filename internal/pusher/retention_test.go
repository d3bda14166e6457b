package pusher

import (
	"context"
	"testing"
	"time"

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
	h.start(t, func(o *Options) { o.AdjustmentRetention = time.Nanosecond })
	old := generate(h, 5, 7)
	submitAll(t, h.inv, old)
	waitSettled(t, h.inv, old, 20*time.Second)
	verifyExactlyOnce(t, h, old, true)
	// The mirror's pull reflects them.
	if n, err := h.inv.MarkAdjustmentsReflected(ctx, key, time.Now()); err != nil || n != len(old) {
		t.Fatalf("MarkAdjustmentsReflected = %d, %v; want %d", n, err, len(old))
	}
	// New work wakes the store's worker (a new one, or the running one
	// within SweepInterval), which prunes.
	fresh := []inventory.Adjustment{{Key: key, ID: "fresh", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}}}
	submitAll(t, h.inv, fresh)
	deadline := time.Now().Add(20 * time.Second)
	for {
		left := 0
		for _, a := range old {
			if _, ok, err := h.inv.GetAdjustment(ctx, key, a.ID); err != nil {
				t.Fatal(err)
			} else if ok {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d reflected adjustments never pruned", left, len(old))
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitSettled(t, h.inv, fresh, 20*time.Second)
	// Applied, not reflected yet: kept however old.
	got, ok, err := h.inv.GetAdjustment(ctx, key, "fresh")
	if err != nil || !ok || got.State != inventory.AdjustmentApplied {
		t.Fatalf("fresh = %+v, %v, %v; want applied and kept", got, ok, err)
	}
}
