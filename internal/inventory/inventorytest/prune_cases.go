package inventorytest

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// submitAt submits an adjustment created at a given time.
func submitAt(t *testing.T, st inventory.Store, key inventory.StoreKey, id string, created time.Time) inventory.Adjustment {
	t.Helper()
	a := adj(key, id, line("8000001", -1))
	a.CreatedAt = created
	s, created2 := submit(t, st, a)
	if !created2 {
		t.Fatalf("%s was not created", id)
	}
	return s
}

// settle runs one attempt over adjs and finishes it: applied at appliedAt,
// or failed when appliedAt is zero.
func settle(t *testing.T, st inventory.Store, key inventory.StoreKey, attemptID string, appliedAt time.Time, adjs ...inventory.Adjustment) {
	t.Helper()
	beginAll(t, st, key, attemptID, appliedAt.Add(-time.Second), adjs...)
	res := inventory.AttemptResult{Applied: true, At: appliedAt}
	if appliedAt.IsZero() {
		res = inventory.AttemptResult{Failed: map[string]string{}}
		for _, a := range adjs {
			res.Failed[a.ID] = "error_code 41"
		}
	}
	if err := st.FinishAttempt(ctxT(t), key, attemptID, res); err != nil {
		t.Fatalf("FinishAttempt(%s): %v", attemptID, err)
	}
}

func prune(t *testing.T, st inventory.Store, key inventory.StoreKey, cutoff time.Time) int {
	t.Helper()
	n, err := st.PruneAdjustments(ctxT(t), key, cutoff)
	if err != nil {
		t.Fatalf("PruneAdjustments(%s, %v): %v", key, cutoff, err)
	}
	return n
}

// wantPresent checks which of ids the store still has.
func wantPresent(t *testing.T, st inventory.Store, key inventory.StoreKey, present bool, ids ...string) {
	t.Helper()
	for _, id := range ids {
		_, ok, err := st.GetAdjustment(ctxT(t), key, id)
		if err != nil {
			t.Fatalf("GetAdjustment(%s): %v", id, err)
		}
		if ok != present {
			t.Fatalf("adjustment %s present = %v, want %v", id, ok, present)
		}
	}
}

func testPruneAdjustments(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	cutoff := base.Add(10 * time.Second)

	submitAt(t, st, shopA, "pending-old", base)
	carriedOld := submitAt(t, st, shopA, "carried-old", base)
	unreflectedOld := submitAt(t, st, shopA, "unreflected-old", base)
	reflectedOld := submitAt(t, st, shopA, "reflected-old", base)
	reflectedNew := submitAt(t, st, shopA, "reflected-new", base)
	failedOld := submitAt(t, st, shopA, "failed-old", base)
	failedNew := submitAt(t, st, shopA, "failed-new", cutoff.Add(5*time.Second))
	otherStore := submitAt(t, st, shopB, "reflected-old", base)

	settle(t, st, shopA, "t-old", base.Add(time.Second), reflectedOld)
	// Applied exactly at the cutoff: not before it, so kept.
	settle(t, st, shopA, "t-new", cutoff, reflectedNew)
	settle(t, st, shopB, "t-b", base.Add(time.Second), otherStore)
	if _, err := st.MarkAdjustmentsReflected(ctx, shopA, cutoff.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.MarkAdjustmentsReflected(ctx, shopB, cutoff.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	// Applied long ago, but after the last pull started: not reflected.
	settle(t, st, shopA, "t-unreflected", base.Add(2*time.Second), unreflectedOld)
	settle(t, st, shopA, "t-failed-old", time.Time{}, failedOld)
	settle(t, st, shopA, "t-failed-new", time.Time{}, failedNew)
	beginAll(t, st, shopA, "t-open", base.Add(3*time.Second), carriedOld)

	wantDeltasBefore := deltas(t, st, shopA)
	// The retention index survives a restart.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, open)

	if n := prune(t, st, shopA, cutoff); n != 2 {
		t.Fatalf("PruneAdjustments = %d, want 2 (reflected-old, failed-old)", n)
	}
	wantPresent(t, st, shopA, false, "reflected-old", "failed-old")
	wantPresent(t, st, shopA, true, "pending-old", "carried-old", "unreflected-old", "reflected-new", "failed-new")
	wantPresent(t, st, shopB, true, "reflected-old")
	if n := prune(t, st, shopA, cutoff); n != 0 {
		t.Fatalf("second PruneAdjustments = %d, want 0", n)
	}
	if n := prune(t, st, inventory.StoreKey{Namespace: "shops", Name: "never-seen"}, cutoff); n != 0 {
		t.Fatalf("PruneAdjustments of an unknown store = %d", n)
	}
	// Availability and the outbox are untouched.
	wantDeltas(t, st, shopA, wantDeltasBefore)
	if n, oldest, _ := st.PendingAdjustments(ctx, shopA); n != 2 || !oldest.Equal(base) {
		t.Fatalf("PendingAdjustments after prune = %d, %v; want 2, %v", n, oldest, base)
	}
	if ready, _ := st.ReadyAdjustments(ctx, shopA, 10); !reflect.DeepEqual(adjIDs(ready), []string{"pending-old"}) {
		t.Fatalf("ready after prune = %v", adjIDs(ready))
	}
	if opens, _ := st.OpenAttempts(ctx, shopA); !reflect.DeepEqual(attemptIDs(opens), []string{"t-open"}) {
		t.Fatalf("open attempts after prune = %v", attemptIDs(opens))
	}

	// The retention is the idempotency window: a pruned ID is new again.
	again, created := submit(t, st, adj(shopA, "reflected-old", line("8000001", -1)))
	if !created || again.State != inventory.AdjustmentPending {
		t.Fatalf("resubmit of a pruned ID = %+v, created %v; want a new pending adjustment", again, created)
	}

	// Once settled and reflected, the rest goes too; the new ones stay.
	if err := st.FinishAttempt(ctx, shopA, "t-open", inventory.AttemptResult{Applied: true, At: base.Add(4 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if n := prune(t, st, shopA, cutoff); n != 0 {
		t.Fatalf("PruneAdjustments before the pull = %d, want 0 (nothing reflected)", n)
	}
	if _, err := st.MarkAdjustmentsReflected(ctx, shopA, cutoff.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := prune(t, st, shopA, cutoff); n != 2 {
		t.Fatalf("PruneAdjustments after reflection = %d, want 2 (carried-old, unreflected-old)", n)
	}
	wantPresent(t, st, shopA, false, "carried-old", "unreflected-old")
	wantPresent(t, st, shopA, true, "pending-old", "reflected-old", "reflected-new", "failed-new")
	// A later cutoff takes the newer ones, never the pending ones.
	if n := prune(t, st, shopA, time.Now().Add(time.Hour)); n != 2 {
		t.Fatalf("PruneAdjustments(later cutoff) = %d, want 2 (reflected-new, failed-new)", n)
	}
	wantPresent(t, st, shopA, true, "pending-old", "reflected-old")
}

func testPruneAdjustmentsMany(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	// 3,200 submissions under the race detector on a busy 2-core machine
	// can take longer than ctxT's 30s; the bound only stops a hang.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	// More than one batch of each kind on every backend.
	const applied, failed = 2100, 1100
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	adjs := make([]inventory.Adjustment, applied+failed)
	var wg sync.WaitGroup
	errs := make(chan error, len(adjs))
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(adjs); i += 8 {
				a := adj(shopA, fmt.Sprintf("m%05d", i), line("8000001", -1))
				a.CreatedAt = base.Add(time.Duration(i) * time.Millisecond)
				s, _, err := st.SubmitAdjustment(ctx, a)
				if err != nil {
					errs <- err
					return
				}
				adjs[i] = s
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	settle(t, st, shopA, "t-applied", base.Add(time.Minute), adjs[:applied]...)
	settle(t, st, shopA, "t-failed", time.Time{}, adjs[applied:]...)
	keep := submitAt(t, st, shopA, "still-pending", base)
	if _, err := st.MarkAdjustmentsReflected(ctx, shopA, base.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := prune(t, st, shopA, base.Add(3*time.Minute)); n != applied+failed {
		t.Fatalf("PruneAdjustments = %d, want %d", n, applied+failed)
	}
	wantPresent(t, st, shopA, false, adjs[0].ID, adjs[applied-1].ID, adjs[applied].ID, adjs[len(adjs)-1].ID)
	wantPresent(t, st, shopA, true, keep.ID)
	if n := prune(t, st, shopA, base.Add(3*time.Minute)); n != 0 {
		t.Fatalf("second PruneAdjustments = %d, want 0", n)
	}
}
