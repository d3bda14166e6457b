package pusher

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// countingStore counts the attempts recorded.
type countingStore struct {
	Store
	begins atomic.Int64
}

func (s *countingStore) BeginAttempt(ctx context.Context, at inventory.Attempt) error {
	s.begins.Add(1)
	return s.Store.BeginAttempt(ctx, at)
}

// switchTargets answers a configuration error (what cmd/main.go makes of
// the sync engine's *mirror.CredentialsError) until healed.
type switchTargets struct {
	h      *harness
	healed atomic.Bool
	calls  atomic.Int64
}

func (s *switchTargets) Target(ctx context.Context, key inventory.StoreKey) (storeaccess.Target, error) {
	s.calls.Add(1)
	if !s.healed.Load() {
		return storeaccess.Target{}, &storeaccess.ConfigError{Reason: "Suspended", Message: "SmaregiStore " + key.String() + " is suspended"}
	}
	return s.h.Target(ctx, key)
}

func (p *Pusher) blockedCount() int {
	p.blockedMu.Lock()
	defer p.blockedMu.Unlock()
	return len(p.blocked)
}

// A store whose target cannot be looked up for a configuration reason
// (suspended, no credentials Secret) records no attempt, waits
// ConfigBackoff, and is not counted as blocked, whether or not an attempt
// is open; once the configuration is fixed its adjustments are applied.
func TestTargetConfigErrorChurnsNothing(t *testing.T) {
	h := newHarness(t, 1)
	ctx := context.Background()
	key := h.keys[0]
	st := &countingStore{Store: h.inv}
	targets := &switchTargets{h: h}
	o := h.options()
	o.Store, o.Targets = st, targets
	o.ConfigBackoff = 7 * time.Minute
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{p: p, key: key, wake: make(chan struct{}, 1)}

	adj := inventory.Adjustment{Key: key, ID: "a", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}}
	submitAll(t, h.inv, []inventory.Adjustment{adj})
	for i := 0; i < 3; i++ {
		wait, _, err := w.step(ctx)
		if !isTargetConfig(err) || wait != o.ConfigBackoff {
			t.Fatalf("step %d: wait %v, err %v; want ConfigBackoff and the configuration error", i, wait, err)
		}
	}
	if n := st.begins.Load(); n != 0 {
		t.Fatalf("%d attempts recorded for a store that cannot be sent to, want 0", n)
	}
	if ats, _ := h.inv.OpenAttempts(ctx, key); len(ats) != 0 {
		t.Fatalf("open attempts %v", ats)
	}

	// An attempt left open by a crash a while ago (its request deadline and
	// settle period long past), then the store was suspended: it cannot be
	// resolved, but that is not a stuck store.
	crash := inventory.Adjustment{Key: key, ID: "crash", Lines: []inventory.AdjustmentLine{{ProductID: product(1), Quantity: -2}}}
	submitAll(t, h.inv, []inventory.Adjustment{crash})
	if err := h.inv.BeginAttempt(ctx, inventory.Attempt{Key: key, ID: "att-crash", AdjustmentIDs: []string{"crash"},
		Rows: inventory.MergeAttemptRows([]inventory.Adjustment{crash}), StartedAt: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	wait, _, err := w.step(ctx)
	if !isTargetConfig(err) || wait != o.ConfigBackoff {
		t.Fatalf("with an open attempt: wait %v, err %v; want ConfigBackoff and the configuration error", wait, err)
	}
	if n := p.blockedCount(); n != 0 {
		t.Fatalf("%d stores counted as blocked by a configuration error, want 0", n)
	}

	targets.healed.Store(true)
	for i := 0; ; i++ {
		_, more, err := w.step(ctx)
		if err != nil {
			t.Fatalf("after the fix: %v", err)
		}
		if !more {
			break
		}
		if i == 10 {
			t.Fatal("the worker never finished")
		}
	}
	verifyExactlyOnce(t, h, []inventory.Adjustment{adj, crash}, true)
}

// A kick ends a configuration wait at once: the sync engine kicks the
// pusher when a store is unsuspended or its credentials are fixed, so its
// orders do not wait out ConfigBackoff.
func TestKickEndsAConfigurationWait(t *testing.T) {
	h := newHarness(t, 1)
	key := h.keys[0]
	targets := &switchTargets{h: h}
	o := h.options()
	o.Targets = targets
	// The pusher's clock passes only the first window: the configuration
	// wait can end only by the kick.
	clk := testingclock.NewFakeClock(time.Now())
	o.Clock = clk
	o.ConfigBackoff = time.Hour
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	adj := inventory.Adjustment{Key: key, ID: "order", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}}
	submitAll(t, h.inv, []inventory.Adjustment{adj})
	advance(t, clk, o.Window)
	waitUntil(t, 10*time.Second, "the configuration error to be met", func() error {
		if targets.calls.Load() == 0 {
			return errors.New("no target look-up yet")
		}
		return nil
	})

	targets.healed.Store(true)
	p.Kick(key) // what StoreUpdated does on a retry-worthy change
	waitUntil(t, 30*time.Second, "the adjustment to be applied after the kick", func() error {
		a, ok, err := h.inv.GetAdjustment(context.Background(), key, "order")
		if err != nil || !ok || a.State != inventory.AdjustmentApplied {
			return fmt.Errorf("order = %s, %v, %v", a.State, ok, err)
		}
		return nil
	})
	verifyExactlyOnce(t, h, []inventory.Adjustment{adj}, true)
}
