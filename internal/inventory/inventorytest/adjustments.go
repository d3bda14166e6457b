package inventorytest

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// adjustmentTests are the adjustment and push-attempt conformance tests; Run
// runs them with the rest.
var adjustmentTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"AdjustmentSubmitIdempotentAndConflict", testAdjustmentIdempotency},
	{"AdjustmentConcurrentSameID", testAdjustmentConcurrentSameID},
	{"AdjustmentDurableAcrossReopen", testAdjustmentReopen},
	{"AdjustmentPendingDeltasAndReflection", testPendingDeltas},
	{"AdjustmentSubscribeNotifies", testSubscribeAdjustments},
	{"AdjustmentAttemptLifecycle", testAttemptLifecycle},
	{"AdjustmentAttemptFailures", testAttemptFailures},
	{"AdjustmentDeleteStore", testAdjustmentDeleteStore},
	{"AdjustmentPruneOnlySettled", testPruneAdjustments},
	{"AdjustmentPruneManyInBatches", testPruneAdjustmentsMany},
	{"AdjustmentDiscardPending", testDiscardPending},
}

func adj(key inventory.StoreKey, id string, lines ...inventory.AdjustmentLine) inventory.Adjustment {
	return inventory.Adjustment{Key: key, ID: id, Reason: "order " + id, Lines: lines}
}

func line(p string, q int64) inventory.AdjustmentLine {
	return inventory.AdjustmentLine{ProductID: p, Quantity: q}
}

func submit(t *testing.T, st inventory.Store, a inventory.Adjustment) (inventory.Adjustment, bool) {
	t.Helper()
	got, created, err := st.SubmitAdjustment(ctxT(t), a)
	if err != nil {
		t.Fatalf("SubmitAdjustment(%s): %v", a.ID, err)
	}
	return got, created
}

func getAdj(t *testing.T, st inventory.Store, key inventory.StoreKey, id string) inventory.Adjustment {
	t.Helper()
	a, ok, err := st.GetAdjustment(ctxT(t), key, id)
	if err != nil || !ok {
		t.Fatalf("GetAdjustment(%s, %s) = found %v, %v", key, id, ok, err)
	}
	return a
}

func deltas(t *testing.T, st inventory.Store, key inventory.StoreKey) map[string]int64 {
	t.Helper()
	d, err := st.PendingDeltas(ctxT(t), key)
	if err != nil {
		t.Fatalf("PendingDeltas(%s): %v", key, err)
	}
	return d
}

func wantDeltas(t *testing.T, st inventory.Store, key inventory.StoreKey, want map[string]int64) {
	t.Helper()
	got := deltas(t, st, key)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PendingDeltas(%s) = %v, want %v", key, got, want)
	}
}

func testAdjustmentIdempotency(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	a := adj(shopA, "order-1", line("8000001", -2), line("8000002", 1))
	a.Fingerprint = "fp-1"
	first, created := submit(t, st, a)
	if !created || first.State != inventory.AdjustmentPending || first.CreatedAt.IsZero() || first.Fingerprint != "fp-1" {
		t.Fatalf("first submit = %+v created %v", first, created)
	}
	again, created := submit(t, st, a)
	if created || !again.CreatedAt.Equal(first.CreatedAt) || again.State != inventory.AdjustmentPending {
		t.Fatalf("replay = %+v created %v, want the stored one", again, created)
	}
	if !reflect.DeepEqual(again.Lines, a.Lines) || again.Reason != a.Reason {
		t.Fatalf("replay returned %+v, want lines %v reason %q", again, a.Lines, a.Reason)
	}
	other := a
	other.Fingerprint = "fp-2"
	other.Lines = []inventory.AdjustmentLine{line("8000001", -3)}
	if _, _, err := st.SubmitAdjustment(ctx, other); !errors.Is(err, inventory.ErrAdjustmentConflict) {
		t.Fatalf("same ID, other fingerprint: err %v, want ErrAdjustmentConflict", err)
	}
	// The conflict changed nothing.
	if got := getAdj(t, st, shopA, "order-1"); got.Lines[0].Quantity != -2 || got.Fingerprint != "fp-1" {
		t.Fatalf("after conflict stored %+v", got)
	}
	// IDs are per store: the same ID elsewhere is another adjustment.
	if _, created := submit(t, st, adj(shopB, "order-1", line("8000001", -9))); !created {
		t.Fatal("same ID in another store was not created")
	}
	// Without a fingerprint the canonical one is used, so a replay matches
	// and a changed body conflicts.
	b := adj(shopA, "order-2", line("8000003", -1))
	if s, created := submit(t, st, b); !created || s.Fingerprint == "" {
		t.Fatalf("submit without fingerprint = %+v, %v", s, created)
	}
	if _, created := submit(t, st, b); created {
		t.Fatal("replay without fingerprint created a second adjustment")
	}
	b.Lines = []inventory.AdjustmentLine{line("8000003", -2)}
	if _, _, err := st.SubmitAdjustment(ctx, b); !errors.Is(err, inventory.ErrAdjustmentConflict) {
		t.Fatalf("changed body without fingerprint: err %v, want conflict", err)
	}
	if _, ok, err := st.GetAdjustment(ctx, shopA, "nope"); ok || err != nil {
		t.Fatalf("GetAdjustment(missing) = %v, %v", ok, err)
	}
	for _, bad := range []inventory.Adjustment{
		adj(shopA, "", line("1", 1)),
		adj(shopA, "no-lines"),
		adj(shopA, "no-product", line("", 1)),
		adj(inventory.StoreKey{}, "no-key", line("1", 1)),
	} {
		if _, _, err := st.SubmitAdjustment(ctx, bad); err == nil {
			t.Fatalf("invalid adjustment %+v accepted", bad)
		}
	}
	if n, oldest, err := st.PendingAdjustments(ctx, shopA); err != nil || n != 2 || !oldest.Equal(first.CreatedAt) {
		t.Fatalf("PendingAdjustments = %d, %v, %v; want 2, %v", n, oldest, err, first.CreatedAt)
	}
}

func testAdjustmentConcurrentSameID(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created int
		errs    []error
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, c, err := st.SubmitAdjustment(ctxT(t), adj(shopA, "race", line("8000001", -1)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if c {
				created++
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 || created != 1 {
		t.Fatalf("%d concurrent submits: created %d, errors %v; want exactly one created", n, created, errs)
	}
	wantDeltas(t, st, shopA, map[string]int64{"8000001": -1})
}

func testAdjustmentReopen(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	first, _ := submit(t, st, adj(shopA, "durable", line("8000001", -4)))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, open)
	got := getAdj(t, st, shopA, "durable")
	if got.State != inventory.AdjustmentPending || !got.CreatedAt.Equal(first.CreatedAt) || got.Lines[0] != line("8000001", -4) {
		t.Fatalf("after reopen %+v, want %+v", got, first)
	}
	if _, created := submit(t, st, adj(shopA, "durable", line("8000001", -4))); created {
		t.Fatal("replay after reopen created a second adjustment")
	}
	wantDeltas(t, st, shopA, map[string]int64{"8000001": -4})
}

// beginAll starts one attempt carrying the given adjustments.
func beginAll(t *testing.T, st inventory.Store, key inventory.StoreKey, id string, started time.Time, adjs ...inventory.Adjustment) inventory.Attempt {
	t.Helper()
	at := inventory.Attempt{Key: key, ID: id, Rows: inventory.MergeAttemptRows(adjs), StartedAt: started}
	for _, a := range adjs {
		at.AdjustmentIDs = append(at.AdjustmentIDs, a.ID)
	}
	if err := st.BeginAttempt(ctxT(t), at); err != nil {
		t.Fatalf("BeginAttempt(%s): %v", id, err)
	}
	return at
}

func testPendingDeltas(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	a1, _ := submit(t, st, adj(shopA, "a1", line("8000001", -2), line("8000002", 5)))
	a2, _ := submit(t, st, adj(shopA, "a2", line("8000001", -1), line("8000003", -7)))
	submit(t, st, adj(shopB, "b1", line("8000001", -100)))
	// Positive quantities never count: availability is never overstated.
	wantDeltas(t, st, shopA, map[string]int64{"8000001": -3, "8000003": -7})

	// In flight still counts.
	start := time.Now().Add(-time.Second)
	beginAll(t, st, shopA, "t1", start, a1)
	wantDeltas(t, st, shopA, map[string]int64{"8000001": -3, "8000003": -7})

	appliedAt := time.Now().UTC().Truncate(time.Millisecond)
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{Applied: true, At: appliedAt, Claims: []string{"h1"}}); err != nil {
		t.Fatal(err)
	}
	got := getAdj(t, st, shopA, "a1")
	if got.State != inventory.AdjustmentApplied || !got.AppliedAt.Equal(appliedAt) {
		t.Fatalf("a1 after apply = %+v, want applied at %v", got, appliedAt)
	}
	// Applied but no pull since: the mirror does not show it yet.
	wantDeltas(t, st, shopA, map[string]int64{"8000001": -3, "8000003": -7})
	if n, _, _ := st.PendingAdjustments(ctx, shopA); n != 1 {
		t.Fatalf("pending count after apply = %d, want 1", n)
	}

	// A pull that started before AppliedAt may have read the old stock.
	if n, err := st.MarkAdjustmentsReflected(ctx, shopA, appliedAt); err != nil || n != 0 {
		t.Fatalf("reflect with a pull started at AppliedAt = %d, %v; want 0", n, err)
	}
	wantDeltas(t, st, shopA, map[string]int64{"8000001": -3, "8000003": -7})
	if n, err := st.MarkAdjustmentsReflected(ctx, shopA, appliedAt.Add(time.Millisecond)); err != nil || n != 1 {
		t.Fatalf("reflect with a later pull = %d, %v; want 1", n, err)
	}
	wantDeltas(t, st, shopA, map[string]int64{"8000001": -1, "8000003": -7})
	// Reflection is per store and idempotent.
	if n, _ := st.MarkAdjustmentsReflected(ctx, shopA, appliedAt.Add(time.Hour)); n != 0 {
		t.Fatalf("second reflect marked %d", n)
	}
	wantDeltas(t, st, shopB, map[string]int64{"8000001": -100})

	// A failed adjustment no longer holds stock back.
	beginAll(t, st, shopA, "t2", time.Now(), a2)
	if err := st.FinishAttempt(ctx, shopA, "t2", inventory.AttemptResult{Failed: map[string]string{"a2": "error_code 41"}}); err != nil {
		t.Fatal(err)
	}
	wantDeltas(t, st, shopA, nil)
	if n, oldest, _ := st.PendingAdjustments(ctx, shopA); n != 0 || !oldest.IsZero() {
		t.Fatalf("pending after all settled = %d, %v", n, oldest)
	}
}

func testSubscribeAdjustments(t *testing.T, open Opener) {
	writer := mustOpen(t, open)
	// A second handle stands for another replica on backends that allow
	// one; bbolt locks its file, so there the writer's own feed is used.
	reader := writer
	if other, err := open(); err == nil {
		t.Cleanup(func() { _ = other.Close() })
		reader = other
	}
	ch := reader.SubscribeAdjustments(ctxT(t))
	dirty := reader.Subscribe(ctxT(t))
	submit(t, writer, adj(shopA, "n1", line("8000001", -1)))
	receive(t, ch, shopA)
	submit(t, writer, adj(shopB, "n2", line("8000001", -1)))
	receive(t, ch, shopB)
	// A replay is not new work.
	submit(t, writer, adj(shopA, "n1", line("8000001", -1)))
	select {
	case k := <-ch:
		t.Fatalf("replay notified %v", k)
	case <-time.After(200 * time.Millisecond):
	}
	// The channels are separate: adjustments do not mark stores dirty and a
	// send does not wake the pusher.
	select {
	case k := <-dirty:
		t.Fatalf("adjustment delivered on the dirty feed: %v", k)
	default:
	}
	recordSend(t, writer, send("s-adj", shopC))
	receive(t, dirty, shopC)
	select {
	case k := <-ch:
		t.Fatalf("send delivered on the adjustment feed: %v", k)
	case <-time.After(200 * time.Millisecond):
	}
}

func arow(p string, n int64) inventory.AttemptRow {
	return inventory.AttemptRow{ProductID: p, Amount: n}
}

func attemptIDs(ats []inventory.Attempt) []string {
	out := make([]string, len(ats))
	for i, a := range ats {
		out[i] = a.ID
	}
	return out
}

func adjIDs(adjs []inventory.Adjustment) []string {
	out := make([]string, len(adjs))
	for i, a := range adjs {
		out[i] = a.ID
	}
	return out
}

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
	ctx := ctxT(t)
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

// testDiscardPending: inventory.DiscardPending fails every pending adjustment
// no open attempt carries, names the ones an open attempt carries, and
// leaves other stores and settled adjustments alone.
func testDiscardPending(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	key := inventory.StoreKey{Namespace: "ns", Name: "deleting"}
	other := inventory.StoreKey{Namespace: "ns", Name: "other"}
	for _, id := range []string{"o-1", "o-2", "o-3"} {
		submit(t, st, adj(key, id, line("p1", -1)))
	}
	submit(t, st, adj(other, "o-1", line("p1", -1)))
	// o-1 is in flight: an attempt carries it whose outcome is unknown.
	if err := st.BeginAttempt(ctx, inventory.Attempt{Key: key, ID: "a1", AdjustmentIDs: []string{"o-1"},
		Rows: []inventory.AttemptRow{{ProductID: "p1", Amount: -1}}, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}

	got, err := inventory.DiscardPending(ctx, st, key, "discarded on deletion", time.Now())
	if err != nil {
		t.Fatalf("DiscardPending: %v", err)
	}
	want := inventory.DiscardedOutbox{Discarded: []string{"o-2", "o-3"}, InFlight: []string{"o-1"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("DiscardPending = %+v, want %+v", got, want)
	}
	for _, id := range []string{"o-2", "o-3"} {
		if a := getAdj(t, st, key, id); a.State != inventory.AdjustmentFailed || a.FailureReason != "discarded on deletion" {
			t.Errorf("%s after discard: state %s, reason %q; want failed, discarded on deletion", id, a.State, a.FailureReason)
		}
	}
	if a := getAdj(t, st, key, "o-1"); a.State != inventory.AdjustmentPending {
		t.Errorf("in-flight o-1 after discard: state %s, want pending", a.State)
	}
	if a := getAdj(t, st, other, "o-1"); a.State != inventory.AdjustmentPending {
		t.Errorf("other store's o-1 after discard: state %s, want pending", a.State)
	}
	if n, _, err := st.PendingAdjustments(ctx, key); err != nil || n != 1 {
		t.Errorf("PendingAdjustments after discard = %d, %v; want 1 (the in-flight one)", n, err)
	}
	if ready, err := st.ReadyAdjustments(ctx, key, 10); err != nil || len(ready) != 0 {
		t.Errorf("ReadyAdjustments after discard = %d, %v; want none", len(ready), err)
	}
	// Nothing left: discarding again is a no-op.
	if again, err := inventory.DiscardPending(ctx, st, key, "x", time.Now()); err != nil || len(again.Discarded) != 0 {
		t.Errorf("second DiscardPending = %+v, %v; want nothing discarded", again, err)
	}
}
