package inventorytest

import (
	"errors"
	"reflect"
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
	{"AdjustmentAwaitingConfirmation", testAwaitingConfirmation},
	{"AdjustmentOneOpenAttemptPerStore", testOneOpenAttempt},
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

// An attempt keeps its request deadline across a restart (a new leader
// honours the same settle deadline), and the adjustments it carries read as
// awaiting confirmation until it is settled.
func testAwaitingConfirmation(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	a, _ := submit(t, st, adj(shopA, "a", line("8000001", -2)))
	if a.AwaitingConfirmation || getAdj(t, st, shopA, "a").AwaitingConfirmation {
		t.Fatal("a new adjustment reads as awaiting confirmation")
	}
	started := time.Now().UTC().Truncate(time.Millisecond)
	at := inventory.Attempt{Key: shopA, ID: "t1", AdjustmentIDs: []string{"a"}, Rows: inventory.MergeAttemptRows([]inventory.Adjustment{a}),
		StartedAt: started, RequestDeadline: started.Add(time.Minute)}
	if err := st.BeginAttempt(ctx, at); err != nil {
		t.Fatal(err)
	}
	if got := getAdj(t, st, shopA, "a"); got.State != inventory.AdjustmentPending || !got.AwaitingConfirmation {
		t.Fatalf("carried by an open attempt: %+v, want pending and awaiting confirmation", got)
	}
	if again, created := submit(t, st, adj(shopA, "a", line("8000001", -2))); created || !again.AwaitingConfirmation {
		t.Fatalf("replay while carried: created %v, %+v", created, again)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, open)
	opens, err := st.OpenAttempts(ctx, shopA)
	if err != nil || len(opens) != 1 || !opens[0].RequestDeadline.Equal(at.RequestDeadline) {
		t.Fatalf("OpenAttempts after reopen = %+v, %v; want the request deadline %s kept", opens, err, at.RequestDeadline)
	}
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{}); err != nil {
		t.Fatal(err)
	}
	if got := getAdj(t, st, shopA, "a"); got.State != inventory.AdjustmentPending || got.AwaitingConfirmation {
		t.Fatalf("after a void attempt: %+v, want pending, not awaiting", got)
	}
	beginAll(t, st, shopA, "t2", time.Now(), a)
	if err := st.FinishAttempt(ctx, shopA, "t2", inventory.AttemptResult{Applied: true}); err != nil {
		t.Fatal(err)
	}
	if got := getAdj(t, st, shopA, "a"); got.State != inventory.AdjustmentApplied || got.AwaitingConfirmation {
		t.Fatalf("after applied: %+v", got)
	}
}

// A store refuses a second open attempt (two pushers are fenced by the
// database), another store is not affected, and each attempt keeps the
// leader that made it.
func testOneOpenAttempt(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	a, _ := submit(t, st, adj(shopA, "a", line("8000001", -1)))
	b, _ := submit(t, st, adj(shopA, "b", line("8000002", -1)))
	c, _ := submit(t, st, adj(shopB, "c", line("8000001", -1)))
	begin := func(key inventory.StoreKey, id, leader string, x inventory.Adjustment) error {
		return st.BeginAttempt(ctx, inventory.Attempt{Key: key, ID: id, AdjustmentIDs: []string{x.ID},
			Rows: inventory.MergeAttemptRows([]inventory.Adjustment{x}), StartedAt: time.Now(), Leader: leader})
	}
	if err := begin(shopA, "t1", "replica-1_abc", a); err != nil {
		t.Fatal(err)
	}
	err := begin(shopA, "t2", "replica-2_def", b)
	if !errors.Is(err, inventory.ErrAttemptOpen) || !errors.Is(err, inventory.ErrAttemptConflict) {
		t.Fatalf("second open attempt: %v, want ErrAttemptOpen (an ErrAttemptConflict)", err)
	}
	if got := getAdj(t, st, shopA, "b"); got.AwaitingConfirmation {
		t.Fatal("the refused attempt left its adjustment carried")
	}
	if err := begin(shopB, "t3", "replica-2_def", c); err != nil {
		t.Fatalf("an open attempt in another store: %v", err)
	}
	opens, err := st.OpenAttempts(ctx, shopA)
	if err != nil || len(opens) != 1 || opens[0].Leader != "replica-1_abc" {
		t.Fatalf("open attempts of A = %+v, %v; want t1 by replica-1_abc", opens, err)
	}
	if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{Applied: true}); err != nil {
		t.Fatal(err)
	}
	if err := begin(shopA, "t2", "replica-2_def", b); err != nil {
		t.Fatalf("a new attempt once the open one is settled: %v", err)
	}
	applied, _ := st.AppliedAttempts(ctx, shopA, time.Time{})
	if len(applied) != 1 || applied[0].Leader != "replica-1_abc" {
		t.Fatalf("applied attempts %+v; want t1 keeping its leader", applied)
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
