package pusher

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// awaitingNow fails unless adjustment id is pending and awaiting
// confirmation, with an open attempt.
func awaitingNow(h *harness, key inventory.StoreKey, id string) error {
	ctx := context.Background()
	got, ok, err := h.inv.GetAdjustment(ctx, key, id)
	if err != nil || !ok {
		return fmt.Errorf("GetAdjustment: %v %v", ok, err)
	}
	if got.State != inventory.AdjustmentPending || !got.AwaitingConfirmation {
		return fmt.Errorf("adjustment %s is %s (awaiting confirmation %v), want pending and awaiting", id, got.State, got.AwaitingConfirmation)
	}
	if opens, err := h.inv.OpenAttempts(ctx, key); err != nil || len(opens) != 1 {
		return fmt.Errorf("open attempts %d, %v; want 1", len(opens), err)
	}
	return nil
}

// The reproduction: Smaregi commits a stock_upd after the client's
// timeout. The history read right after the timeout shows nothing; the
// pusher must keep the adjustment pending (awaiting confirmation) instead
// of resending, and settle it applied once the late commit shows.
func TestLateCommitIsNotAppliedTwice(t *testing.T) {
	h := newHarness(t, 1)
	key := h.keys[0]
	if err := h.sim.SetFaults(smaregisim.Faults{LateCommitRate: 1, LateCommitDelay: smaregisim.Duration(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	clk := testingclock.NewFakeClock(time.Now())
	h.start(t, func(o *Options) {
		o.Clock = clk
		o.RequestTimeout = 300 * time.Millisecond
		o.SettlePeriod = 5 * time.Minute
	})
	adj := inventory.Adjustment{Key: key, ID: "late", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -2}}}
	submitAll(t, h.inv, []inventory.Adjustment{adj})
	stepUntil(t, clk, 10*time.Millisecond, "the call to reach the simulator", func() error {
		if h.sim.LateCommitsPending() == 0 {
			return errors.New("no call held")
		}
		return nil
	})
	// From here on a resend would be applied at once.
	if err := h.sim.SetFaults(smaregisim.Faults{}); err != nil {
		t.Fatal(err)
	}
	// The client times out, the history shows nothing, then the server
	// commits; the pusher waits on its clock meanwhile.
	waitUntil(t, 10*time.Second, "the late commit to land while the pusher waits", func() error {
		if n := h.sim.LateCommitsPending(); n != 0 {
			return fmt.Errorf("%d late commits pending", n)
		}
		if err := awaitingNow(h, key, adj.ID); err != nil {
			return err
		}
		return workerWaits(clk)
	})
	stepUntil(t, clk, time.Second, "the adjustment to settle", func() error {
		return stillPending(t, h.inv, []inventory.Adjustment{adj})
	})
	verifyExactlyOnce(t, h, []inventory.Adjustment{adj}, true)
}

// An attempt found open (its sender gone) whose call never reached
// Smaregi: a fresh pusher does not conclude "not applied" before the
// settle period after the attempt's durable RequestDeadline, then resends
// it and applies it once.
func TestNotAppliedOnlyAfterTheSettlePeriod(t *testing.T) {
	h := newHarness(t, 1)
	key := h.keys[0]
	ctx := context.Background()
	clk := testingclock.NewFakeClock(time.Now().UTC().Truncate(time.Millisecond))
	adj := inventory.Adjustment{Key: key, ID: "orphan", Lines: []inventory.AdjustmentLine{{ProductID: product(1), Quantity: -1}}}
	submitAll(t, h.inv, []inventory.Adjustment{adj})
	at := inventory.Attempt{Key: key, ID: "att-orphan", AdjustmentIDs: []string{adj.ID},
		Rows: inventory.MergeAttemptRows([]inventory.Adjustment{adj}), StartedAt: clk.Now(), RequestDeadline: clk.Now().Add(10 * time.Second)}
	if err := h.inv.BeginAttempt(ctx, at); err != nil {
		t.Fatal(err)
	}
	h.start(t, func(o *Options) {
		o.Clock = clk
		o.SettlePeriod = time.Minute // another request timeout than the sender's: the deadline is the attempt's
	})
	// 10s + 1m must pass on the pusher's clock; each step lets it re-read.
	for passed := time.Duration(0); passed < 60*time.Second; passed += 20 * time.Second {
		waitUntil(t, 10*time.Second, "the pusher to re-read and wait", func() error {
			if err := awaitingNow(h, key, adj.ID); err != nil {
				return err
			}
			return workerWaits(clk)
		})
		clk.Step(20 * time.Second)
	}
	waitUntil(t, 10*time.Second, "the pusher to re-read and wait at 60s", func() error {
		if err := awaitingNow(h, key, adj.ID); err != nil {
			return err
		}
		return workerWaits(clk)
	})
	stepUntil(t, clk, 20*time.Second, "the adjustment to be resent and applied", func() error {
		return stillPending(t, h.inv, []inventory.Adjustment{adj})
	})
	verifyExactlyOnce(t, h, []inventory.Adjustment{adj}, true)
}
