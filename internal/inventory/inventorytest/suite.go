// Package inventorytest is the conformance suite every inventory.Store
// backend must pass. A backend's test calls Run with a function that makes a
// fresh, empty storage (a new file, a new database) and returns how to open it;
// the suite opens it more than once to check durability across Close.
package inventorytest

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Opener opens a handle on one storage; each call returns a new handle on the
// same data.
type Opener func() (inventory.Store, error)

// NewStorage makes a fresh, empty storage for one test and returns its opener.
// It should register its own cleanup with t.
type NewStorage func(t *testing.T) Opener

// Pruner is implemented by backends whose send retention can be run on demand.
type Pruner interface {
	Prune(now time.Time) (int, error)
}

var (
	shopA = inventory.StoreKey{Namespace: "shops", Name: "shibuya"}
	shopB = inventory.StoreKey{Namespace: "shops", Name: "umeda"}
	shopC = inventory.StoreKey{Namespace: "other", Name: "shibuya"}
	t0    = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
)

func at(min int) time.Time { return t0.Add(time.Duration(min) * time.Minute) }

func row(id string, stock int64, min int) inventory.Row {
	return inventory.Row{ProductID: id, StockAmount: stock, LayawayStockAmount: stock % 3, UpdDateTime: at(min)}
}

// Run runs the whole suite.
func Run(t *testing.T, newStorage NewStorage) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{"ApplyPullCountsChanges", testApplyPull},
		{"ApplyPullDuplicateProductInBatch", testApplyPullDuplicates},
		{"RowsPageByteOrder", testRowsPage},
		{"WatermarkOnlyForward", testWatermark},
		{"FullSyncDrift", testFullSyncDrift},
		{"FullSyncDriftOnlyWhatNoPullBrought", testFullSyncNewsIsNotDrift},
		{"FullSyncAbortKeepsMirror", testFullSyncAbort},
		{"FullSyncSuperseded", testFullSyncSuperseded},
		{"FullSyncKeepsRowsPulledMeanwhile", testFullSyncWithPull},
		{"FullSyncManyPagesBoundedSample", testFullSyncManyPages},
		{"ImportThenReconcile", testImportThenReconcile},
		{"RecordSendDuplicate", testRecordSendDuplicate},
		{"DirtyMarksAndClearRace", testDirty},
		{"SubscribeNotifies", testSubscribe},
		{"SubscribeSlowReaderNeverBlocks", testSubscribeSlow},
		{"ConcurrentRecordSend", testConcurrentRecordSend},
		{"ReopenKeepsData", testReopen},
		{"DeleteStore", testDeleteStore},
		{"RetentionPrunesOldSends", testRetention},
		{"ClosedStoreFails", testClosed},
	}
	tests = append(tests, storesTests...)
	tests = append(tests, versionTests...)
	tests = append(tests, safetyStockTests...)
	tests = append(tests, poolTests...)
	for _, tc := range append(tests, adjustmentTests...) {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStorage(t))
		})
	}
}

func mustOpen(t *testing.T, open Opener) inventory.Store {
	t.Helper()
	st, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func allRows(t *testing.T, st inventory.Store, key inventory.StoreKey) []inventory.Row {
	t.Helper()
	var out []inventory.Row
	if err := st.Rows(ctxT(t), key, func(r inventory.Row) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("Rows(%s): %v", key, err)
	}
	return out
}

func wantRows(t *testing.T, st inventory.Store, key inventory.StoreKey, want ...inventory.Row) {
	t.Helper()
	got := allRows(t, st, key)
	want = append([]inventory.Row(nil), want...)
	sort.Slice(want, func(i, j int) bool { return want[i].ProductID < want[j].ProductID })
	if len(got) != len(want) {
		t.Fatalf("%s has %d rows %v, want %d %v", key, len(got), got, len(want), want)
	}
	for i := range want {
		if got[i].ProductID != want[i].ProductID || !got[i].SameLevel(want[i]) {
			t.Fatalf("%s row %d = %+v, want %+v", key, i, got[i], want[i])
		}
	}
}

func summary(t *testing.T, st inventory.Store, key inventory.StoreKey) inventory.Summary {
	t.Helper()
	s, err := st.Summary(ctxT(t), key)
	if err != nil {
		t.Fatalf("Summary(%s): %v", key, err)
	}
	return s
}

func applyPull(t *testing.T, st inventory.Store, key inventory.StoreKey, wm time.Time, rows ...inventory.Row) int {
	t.Helper()
	n, err := st.ApplyPull(ctxT(t), key, rows, wm)
	if err != nil {
		t.Fatalf("ApplyPull: %v", err)
	}
	return n
}

func testReopen(t *testing.T, open Opener) {
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	applyPull(t, st, shopA, at(3), row("1", 1, 1), row("2", 2, 3))
	fs, err := st.BeginFullSync(ctxT(t), shopB)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Add(ctxT(t), []inventory.Row{row("5", 5, 5)}); err != nil {
		t.Fatal(err)
	}
	recordSend(t, st, send("r1", shopB))
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st = mustOpen(t, open)
	wantRows(t, st, shopA, row("1", 1, 1), row("2", 2, 3))
	if s := summary(t, st, shopA); s.SKUs != 2 || !s.Watermark.Equal(at(3)) {
		t.Fatalf("summary after reopen = %+v", s)
	}
	// The uncommitted full sync left nothing behind.
	wantRows(t, st, shopB)
	if !recordSend(t, st, send("r1", shopB)) {
		t.Fatal("send recorded before the reopen is not a duplicate after it")
	}
	if d := dirtyMap(t, st); len(d) != 1 || d[shopB] == 0 {
		t.Fatalf("dirty after reopen = %v", d)
	}
	// A fresh full sync works after the reopen.
	if d := fullSync(t, st, shopA, at(6), []inventory.Row{row("1", 1, 1), row("2", 2, 3), row("6", 6, 2)}); d.Added != 1 || d.Total() != 1 {
		t.Fatalf("drift after reopen = %+v", d)
	}
	wantRows(t, st, shopA, row("1", 1, 1), row("2", 2, 3), row("6", 6, 2))
}

func testDeleteStore(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	applyPull(t, st, shopA, at(3), row("1", 1, 1))
	applyPull(t, st, shopC, at(3), row("1", 7, 1))
	recordSend(t, st, send("d1", shopA, shopC))
	fs, err := st.BeginFullSync(ctx, shopA)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteStore(ctx, shopA); err != nil {
		t.Fatal(err)
	}
	wantRows(t, st, shopA)
	if s := summary(t, st, shopA); s.SKUs != 0 || !s.Watermark.IsZero() {
		t.Fatalf("summary after delete = %+v", s)
	}
	if d := dirtyMap(t, st); len(d) != 1 || d[shopC] == 0 {
		t.Fatalf("dirty after delete = %v", d)
	}
	if _, err := fs.Commit(ctx, at(5)); err == nil {
		t.Fatal("full sync of a deleted store committed")
	}
	wantRows(t, st, shopA)
	wantRows(t, st, shopC, row("1", 7, 1))
	if err := st.DeleteStore(ctx, shopA); err != nil {
		t.Fatalf("deleting twice: %v", err)
	}
	// The store can come back.
	if n := applyPull(t, st, shopA, at(1), row("1", 1, 1)); n != 1 {
		t.Fatalf("changed %d after re-creation", n)
	}
}

func testRetention(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	p, ok := st.(Pruner)
	if !ok {
		t.Skip("backend has no on-demand Prune")
	}
	old := send("old", shopA)
	old.ReceivedAt = time.Now().Add(-60 * 24 * time.Hour)
	recordSend(t, st, old)
	recordSend(t, st, send("new", shopA))
	n, err := p.Prune(time.Now())
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	recent, err := st.RecentSends(ctxT(t), 10)
	if err != nil || len(recent) != 1 || recent[0].ID != "new" {
		t.Fatalf("after prune RecentSends = %+v, %v", recent, err)
	}
	if recordSend(t, st, send("new", shopA)) {
		return
	}
	t.Fatal("kept record no longer detected as duplicate")
}

func testClosed(t *testing.T, open Opener) {
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if _, err := st.ApplyPull(ctx, shopA, nil, at(1)); !errors.Is(err, inventory.ErrClosed) {
		t.Fatalf("ApplyPull after Close: %v", err)
	}
	if _, err := st.RecordSend(ctx, send("x", shopA)); !errors.Is(err, inventory.ErrClosed) {
		t.Fatalf("RecordSend after Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
