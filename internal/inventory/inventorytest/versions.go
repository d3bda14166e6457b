package inventorytest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// versionTests check the change log channels watch (inventory.VersionStore).
var versionTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"VersionsCountEveryVisibleChange", testVersionsVisibleChanges},
	{"VersionsPagingAndBounds", testVersionsPaging},
	{"VersionsDurableAcrossReopen", testVersionsReopen},
	{"VersionsLogIsBounded", testVersionsBounded},
	{"VersionsConcurrentWritersNoGapNoDuplicate", testVersionsConcurrent},
	{"VersionsDeleteStoreStartsOver", testVersionsDelete},
	{"VersionsSubscribeNotifies", testVersionsSubscribe},
	{"RowsByID", testRowsByID},
}

// changesAfter reads every change after since and checks they number
// since+1, since+2, … with no gap.
func changesAfter(t *testing.T, st inventory.Store, key inventory.StoreKey, since uint64) []inventory.Change {
	t.Helper()
	var out []inventory.Change
	for {
		page, err := st.ChangesSince(ctxT(t), key, since, 7)
		if err != nil {
			t.Fatalf("ChangesSince(%s, %d): %v", key, since, err)
		}
		for _, c := range page {
			if c.Version != since+1 {
				t.Fatalf("change %+v after version %d: versions must grow by one", c, since)
			}
			since = c.Version
		}
		out = append(out, page...)
		if len(page) < 7 {
			return out
		}
	}
}

func products(cs []inventory.Change) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.ProductID
	}
	return out
}

func wantVersion(t *testing.T, st inventory.Store, key inventory.StoreKey, want uint64) {
	t.Helper()
	v, err := st.StoreVersion(ctxT(t), key)
	if err != nil || v != want {
		t.Fatalf("StoreVersion(%s) = %d, %v; want %d", key, v, err, want)
	}
}

// step applies fn and checks it recorded exactly the products want after
// the version before it. The order of products within one call is not part
// of the contract (a full sync's commit may record removals first).
func step(t *testing.T, st inventory.Store, key inventory.StoreKey, what string, fn func(), want ...string) {
	t.Helper()
	before, err := st.StoreVersion(ctxT(t), key)
	if err != nil {
		t.Fatal(err)
	}
	fn()
	got := products(changesAfter(t, st, key, before))
	slices.Sort(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s recorded changes %v, want %v", what, got, want)
	}
	wantVersion(t, st, key, before+uint64(len(want)))
}

func testVersionsVisibleChanges(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	wantVersion(t, st, shopA, 0)
	if cs, err := st.ChangesSince(ctx, shopA, 0, 10); err != nil || len(cs) != 0 {
		t.Fatalf("ChangesSince on an unknown store = %v, %v; want none", cs, err)
	}
	pull := func(rows ...inventory.Row) func() {
		return func() {
			if _, err := st.ApplyPull(ctx, shopA, rows, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	step(t, st, shopA, "a first pull", pull(row("3", 1, 0), row("1", 5, 0), row("2", 7, 0)), "1", "2", "3")
	step(t, st, shopA, "a pull of unchanged rows", pull(row("1", 5, 0), row("2", 7, 0)))
	step(t, st, shopA, "a pull changing one row", pull(row("1", 5, 0), row("2", 6, 1)), "2")
	// Another store's changes do not count here.
	if _, err := st.ApplyPull(ctx, shopB, []inventory.Row{row("9", 1, 0)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, st, shopB, 1)

	// Adjustments: only negative lines change a product's pending sum.
	a1 := adj(shopA, "a1", line("1", -2), line("4", 3))
	step(t, st, shopA, "an adjustment", func() { submit(t, st, a1) }, "1")
	step(t, st, shopA, "its replay", func() { submit(t, st, a1) })
	step(t, st, shopA, "an adjustment only adding", func() { submit(t, st, adj(shopA, "a2", line("2", 5))) })
	a3 := adj(shopA, "a3", line("3", -1), line("2", -1))
	step(t, st, shopA, "an adjustment of two products", func() { submit(t, st, a3) }, "2", "3")

	// Carried by an attempt and applied: still counted until reflected.
	step(t, st, shopA, "an attempt applied", func() {
		beginAll(t, st, shopA, "t1", time.Now(), getAdj(t, st, shopA, "a1"))
		if err := st.FinishAttempt(ctx, shopA, "t1", inventory.AttemptResult{Applied: true, At: time.Now().Add(-time.Minute)}); err != nil {
			t.Fatal(err)
		}
	})
	step(t, st, shopA, "reflecting it", func() {
		if _, err := st.MarkAdjustmentsReflected(ctx, shopA, time.Now()); err != nil {
			t.Fatal(err)
		}
	}, "1")
	step(t, st, shopA, "an attempt failing an adjustment", func() {
		beginAll(t, st, shopA, "t2", time.Now(), getAdj(t, st, shopA, "a3"))
		if err := st.FinishAttempt(ctx, shopA, "t2", inventory.AttemptResult{Failed: map[string]string{"a3": "no"}}); err != nil {
			t.Fatal(err)
		}
	}, "2", "3")

	// A full sync: one row changed, one removed, one added.
	step(t, st, shopA, "a full sync", func() {
		fs, err := st.BeginFullSync(ctx, shopA)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = fs.Abort() }()
		if err := fs.Add(ctx, []inventory.Row{row("1", 5, 0), row("2", 9, 2), row("5", 1, 0)}); err != nil {
			t.Fatal(err)
		}
		if _, err := fs.Commit(ctx, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}, "2", "3", "5")
}

func testVersionsPaging(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	var rows []inventory.Row
	for i := 0; i < 20; i++ {
		rows = append(rows, row(fmt.Sprintf("80%02d", i), int64(i), 0))
	}
	if _, err := st.ApplyPull(ctx, shopA, rows, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got := changesAfter(t, st, shopA, 0); len(got) != 20 || got[0].ProductID != "8000" || got[19].ProductID != "8019" {
		t.Fatalf("changes %v", got)
	}
	if got := changesAfter(t, st, shopA, 15); len(got) != 5 || got[0].Version != 16 {
		t.Fatalf("changes after 15: %v", got)
	}
	if got, err := st.ChangesSince(ctx, shopA, 20, 10); err != nil || len(got) != 0 {
		t.Fatalf("changes after the newest: %v, %v", got, err)
	}
	if _, err := st.ChangesSince(ctx, shopA, 21, 10); !errors.Is(err, inventory.ErrGone) {
		t.Fatalf("changes after a version the store never had: %v, want ErrGone", err)
	}
	if _, err := st.ChangesSince(ctx, shopA, 0, 0); err == nil {
		t.Fatal("limit 0 accepted")
	}
}

func testVersionsReopen(t *testing.T, open Opener) {
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ApplyPull(ctxT(t), shopA, []inventory.Row{row("1", 1, 0), row("2", 2, 0)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, open)
	wantVersion(t, st, shopA, 2)
	step(t, st, shopA, "a pull after reopening", func() {
		if _, err := st.ApplyPull(ctxT(t), shopA, []inventory.Row{row("1", 3, 1)}, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}, "1")
	if got := changesAfter(t, st, shopA, 0); fmt.Sprint(products(got)) != "[1 2 1]" {
		t.Fatalf("log after reopen: %v", got)
	}
}

func testVersionsBounded(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	n := inventory.ChangeLogSize + 10
	rows := make([]inventory.Row, n)
	for i := range rows {
		rows[i] = row(fmt.Sprintf("%07d", i), 1, 0)
	}
	if _, err := st.ApplyPull(ctx, shopA, rows, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// One more statement after the big one, so both backends have pruned.
	if _, err := st.ApplyPull(ctx, shopA, []inventory.Row{row("0000000", 2, 1)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	version := uint64(n + 1)
	wantVersion(t, st, shopA, version)
	oldest := version - inventory.ChangeLogSize
	if _, err := st.ChangesSince(ctx, shopA, 0, 10); !errors.Is(err, inventory.ErrGone) {
		t.Fatalf("changes after 0: %v, want ErrGone", err)
	}
	if _, err := st.ChangesSince(ctx, shopA, oldest-1, 10); !errors.Is(err, inventory.ErrGone) {
		t.Fatalf("changes after %d: %v, want ErrGone", oldest-1, err)
	}
	got, err := st.ChangesSince(ctx, shopA, oldest, 10)
	if err != nil || len(got) != 10 || got[0].Version != oldest+1 {
		t.Fatalf("changes after the oldest kept (%d): %v, %v", oldest, got, err)
	}
}

func testVersionsConcurrent(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	const workers, each = 8, 10
	var wg sync.WaitGroup
	errs := make(chan error, workers*each*2)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				p := fmt.Sprintf("%d%03d", w+1, i)
				if _, _, err := st.SubmitAdjustment(ctx, adj(shopA, "c-"+p, line(p, -1))); err != nil {
					errs <- err
				}
				if _, err := st.ApplyPull(ctx, shopA, []inventory.Row{row(p, 5, 0)}, time.Time{}); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := changesAfter(t, st, shopA, 0) // checks there is no gap
	if len(got) != workers*each*2 {
		t.Fatalf("%d changes, want %d", len(got), workers*each*2)
	}
	seen := map[string]int{}
	for _, c := range got {
		seen[c.ProductID]++
	}
	for p, n := range seen {
		if n != 2 {
			t.Fatalf("product %s changed %d times, want 2", p, n)
		}
	}
}

func testVersionsDelete(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	if _, err := st.ApplyPull(ctx, shopA, []inventory.Row{row("1", 1, 0), row("2", 1, 0)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteStore(ctx, shopA); err != nil {
		t.Fatal(err)
	}
	wantVersion(t, st, shopA, 0)
	if _, err := st.ChangesSince(ctx, shopA, 2, 10); !errors.Is(err, inventory.ErrGone) {
		t.Fatalf("a watcher of the deleted store: %v, want ErrGone (list again)", err)
	}
}

func testVersionsSubscribe(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	ch := st.SubscribeVersions(ctx)
	// PostgreSQL's LISTEN starts asynchronously: keep changing until the
	// first notification shows the subscription is live.
	live := false
	for i := 0; i < 100 && !live; i++ {
		if _, err := st.ApplyPull(ctx, shopC, []inventory.Row{row("1", int64(i), 0)}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
			live = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !live {
		t.Fatal("no notification within 10s")
	}
	drain(ch)
	submit(t, st, adj(shopA, "n1", line("1", -1)))
	receive(t, ch, shopA)
	// No notification without a change.
	submit(t, st, adj(shopB, "n2", line("1", 1)))
	if _, err := st.ApplyPull(ctx, shopA, []inventory.Row{row("7", 1, 0)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	receive(t, ch, shopA)
}

func testRowsByID(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	if _, err := st.ApplyPull(ctx, shopA, []inventory.Row{row("1", 1, 0), row("2", 2, 0), row("3", 3, 0)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	got, err := st.RowsByID(ctx, shopA, []string{"3", "1", "9"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["1"] != row("1", 1, 0).Normalize() || got["3"] != row("3", 3, 0).Normalize() {
		t.Fatalf("RowsByID = %v", got)
	}
	if got, err := st.RowsByID(ctx, shopB, []string{"1"}); err != nil || len(got) != 0 {
		t.Fatalf("RowsByID of an empty store = %v, %v", got, err)
	}
}
