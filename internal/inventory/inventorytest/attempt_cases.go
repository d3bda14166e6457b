package inventorytest

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

func testAttemptLifecycle(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	base := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
	var all []inventory.Adjustment
	for i := 0; i < 5; i++ {
		a := adj(shopA, fmt.Sprintf("o%d", i), line("8000001", -1), line(fmt.Sprintf("800001%d", i), 2))
		a.CreatedAt = base.Add(time.Duration(i) * time.Second)
		s, _ := submit(t, st, a)
		all = append(all, s)
	}
	keys, err := st.StoresWithPendingAdjustments(ctx)
	if err != nil || !reflect.DeepEqual(keys, []inventory.StoreKey{shopA}) {
		t.Fatalf("StoresWithPendingAdjustments = %v, %v", keys, err)
	}
	ready, err := st.ReadyAdjustments(ctx, shopA, 3)
	if err != nil || !reflect.DeepEqual(adjIDs(ready), []string{"o0", "o1", "o2"}) {
		t.Fatalf("ReadyAdjustments(3) = %v, %v; want oldest first", adjIDs(ready), err)
	}
	at := beginAll(t, st, shopA, "t1", base.Add(10*time.Second), ready...)
	if want := []inventory.AttemptRow{arow("8000001", -3), arow("8000010", 2), arow("8000011", 2), arow("8000012", 2)}; !reflect.DeepEqual(at.Rows, want) {
		t.Fatalf("merged rows %v, want %v", at.Rows, want)
	}
	// Carried adjustments are not ready, and cannot join another attempt.
	ready, _ = st.ReadyAdjustments(ctx, shopA, 10)
	if !reflect.DeepEqual(adjIDs(ready), []string{"o3", "o4"}) {
		t.Fatalf("ready while t1 open = %v", adjIDs(ready))
	}
	if err := st.BeginAttempt(ctx, inventory.Attempt{Key: shopA, ID: "t2", AdjustmentIDs: []string{"o2", "o3"}, StartedAt: time.Now()}); !errors.Is(err, inventory.ErrAttemptConflict) {
		t.Fatalf("attempt with a carried adjustment: %v, want ErrAttemptConflict", err)
	}
	if err := st.BeginAttempt(ctx, inventory.Attempt{Key: shopA, ID: "t1", AdjustmentIDs: []string{"o3"}, StartedAt: time.Now()}); !errors.Is(err, inventory.ErrAttemptConflict) {
		t.Fatalf("attempt with a taken ID: %v, want ErrAttemptConflict", err)
	}
	// The refused attempts left nothing behind.
	if ready, _ = st.ReadyAdjustments(ctx, shopA, 10); len(ready) != 2 {
		t.Fatalf("ready after refused attempts = %v", adjIDs(ready))
	}

	// Open attempts survive a restart: that is how a killed pusher finds
	// what to resolve.
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, open)
	opens, err := st.OpenAttempts(ctx, shopA)
	if err != nil || len(opens) != 1 {
		t.Fatalf("OpenAttempts after reopen = %v, %v", attemptIDs(opens), err)
	}
	o := opens[0]
	if o.ID != "t1" || o.State != inventory.AttemptOpen || !o.StartedAt.Equal(at.StartedAt) ||
		!reflect.DeepEqual(o.Rows, at.Rows) || !reflect.DeepEqual(o.AdjustmentIDs, at.AdjustmentIDs) {
		t.Fatalf("open attempt after reopen = %+v, want %+v", o, at)
	}

	// Void: the adjustments are ready again, untouched.
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{At: base.Add(11 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{Applied: true}); !errors.Is(err, inventory.ErrAttemptConflict) {
		t.Fatalf("finishing a settled attempt: %v, want ErrAttemptConflict", err)
	}
	ready, _ = st.ReadyAdjustments(ctx, shopA, 10)
	if !reflect.DeepEqual(adjIDs(ready), []string{"o0", "o1", "o2", "o3", "o4"}) {
		t.Fatalf("ready after void = %v", adjIDs(ready))
	}
	if a := getAdj(t, st, shopA, "o0"); a.State != inventory.AdjustmentPending || !a.AppliedAt.IsZero() {
		t.Fatalf("o0 after void = %+v", a)
	}

	// Applied, with claims; a later resolution adds claims to it.
	beginAll(t, st, shopA, "t2", base.Add(20*time.Second), ready[:2]...)
	done := base.Add(21 * time.Second)
	if err := st.FinishAttempt(ctx, shopA, "t2", inventory.AttemptResult{Applied: true, At: done}); err != nil {
		t.Fatal(err)
	}
	beginAll(t, st, shopA, "t3", base.Add(30*time.Second), ready[2:]...)
	if err := st.FinishAttempt(ctx, shopA, "t3", inventory.AttemptResult{
		Applied: true, At: base.Add(31 * time.Second), Claims: []string{"h9", "h10"},
		EarlierClaims: map[string][]string{"t2": {"h7", "h8"}, "t1": {"h1"}},
	}); err != nil {
		t.Fatal(err)
	}
	applied, err := st.AppliedAttempts(ctx, shopA, done)
	if err != nil || !reflect.DeepEqual(attemptIDs(applied), []string{"t2", "t3"}) {
		t.Fatalf("AppliedAttempts(since t2 done) = %v, %v; want t2, t3 (t1 is void)", attemptIDs(applied), err)
	}
	sort.Strings(applied[0].Claims)
	if !reflect.DeepEqual(applied[0].Claims, []string{"h7", "h8"}) || !reflect.DeepEqual(applied[1].Claims, []string{"h9", "h10"}) {
		t.Fatalf("claims t2 %v t3 %v", applied[0].Claims, applied[1].Claims)
	}
	if applied[1].State != inventory.AttemptApplied || !applied[1].FinishedAt.Equal(base.Add(31*time.Second)) {
		t.Fatalf("t3 = %+v", applied[1])
	}
	if later, _ := st.AppliedAttempts(ctx, shopA, done.Add(time.Second)); !reflect.DeepEqual(attemptIDs(later), []string{"t3"}) {
		t.Fatalf("AppliedAttempts(later) = %v", attemptIDs(later))
	}
	for _, id := range []string{"o0", "o1", "o2", "o3", "o4"} {
		if a := getAdj(t, st, shopA, id); a.State != inventory.AdjustmentApplied {
			t.Fatalf("%s = %s, want applied", id, a.State)
		}
	}
	if keys, _ := st.StoresWithPendingAdjustments(ctx); len(keys) != 0 {
		t.Fatalf("stores with pending work after all applied: %v", keys)
	}
	// Pruning keeps attempts that finished after the cutoff.
	if n, err := st.PruneAttempts(ctx, shopA, base.Add(25*time.Second)); err != nil || n != 2 {
		t.Fatalf("PruneAttempts = %d, %v; want 2 (t1, t2)", n, err)
	}
	if left, _ := st.AppliedAttempts(ctx, shopA, time.Time{}); !reflect.DeepEqual(attemptIDs(left), []string{"t3"}) {
		t.Fatalf("after prune %v", attemptIDs(left))
	}
}

func testAttemptFailures(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	a, _ := submit(t, st, adj(shopA, "good", line("8000001", -1)))
	b, _ := submit(t, st, adj(shopA, "bad", line("9999999", -1)))
	beginAll(t, st, shopA, "t1", time.Now(), a, b)
	// Only the attempt's own adjustments can be failed, and not when applied.
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{Failed: map[string]string{"other": "x"}}); !errors.Is(err, inventory.ErrAttemptConflict) {
		t.Fatalf("failing a foreign adjustment: %v", err)
	}
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{Applied: true, Failed: map[string]string{"bad": "x"}}); !errors.Is(err, inventory.ErrAttemptConflict) {
		t.Fatalf("failing in an applied attempt: %v", err)
	}
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{Failed: map[string]string{"bad": "smaregi error_code 41 (invalid input data)"}}); err != nil {
		t.Fatal(err)
	}
	got := getAdj(t, st, shopA, "bad")
	if got.State != inventory.AdjustmentFailed || got.FailureReason != "smaregi error_code 41 (invalid input data)" || !got.AppliedAt.IsZero() {
		t.Fatalf("bad = %+v", got)
	}
	if g := getAdj(t, st, shopA, "good"); g.State != inventory.AdjustmentPending {
		t.Fatalf("good = %+v, want pending", g)
	}
	ready, _ := st.ReadyAdjustments(ctx, shopA, 10)
	if !reflect.DeepEqual(adjIDs(ready), []string{"good"}) {
		t.Fatalf("ready = %v, want only good", adjIDs(ready))
	}
	// A failed adjustment stays failed on replay.
	if s, created := submit(t, st, adj(shopA, "bad", line("9999999", -1))); created || s.State != inventory.AdjustmentFailed {
		t.Fatalf("replay of failed = %+v, %v", s, created)
	}
	if err := st.FinishAttempt(ctx, shopB, "t1", inventory.AttemptResult{}); !errors.Is(err, inventory.ErrAttemptConflict) {
		t.Fatalf("finishing in another store: %v", err)
	}
}

func testAdjustmentDeleteStore(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	a, _ := submit(t, st, adj(shopA, "x", line("8000001", -1)))
	submit(t, st, adj(shopB, "y", line("8000001", -1)))
	beginAll(t, st, shopA, "t1", time.Now(), a)
	if err := st.DeleteStore(ctx, shopA); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := st.GetAdjustment(ctx, shopA, "x"); ok || err != nil {
		t.Fatalf("adjustment survived DeleteStore: %v, %v", ok, err)
	}
	if opens, err := st.OpenAttempts(ctx, shopA); err != nil || len(opens) != 0 {
		t.Fatalf("attempts survived DeleteStore: %v, %v", attemptIDs(opens), err)
	}
	wantDeltas(t, st, shopA, nil)
	wantDeltas(t, st, shopB, map[string]int64{"8000001": -1})
	keys, _ := st.StoresWithPendingAdjustments(ctx)
	if !reflect.DeepEqual(keys, []inventory.StoreKey{shopB}) {
		t.Fatalf("stores with pending work = %v, want only %v", keys, shopB)
	}
	// The ID is free again after the store is gone.
	if _, created := submit(t, st, adj(shopA, "x", line("8000002", -5))); !created {
		t.Fatal("resubmit after DeleteStore not created")
	}
}
