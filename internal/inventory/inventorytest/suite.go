// Package inventorytest is the conformance suite every inventory.Store
// backend must pass. A backend's test calls Run with a function that makes a
// fresh, empty storage (a new file, a new database) and returns how to open it;
// the suite opens it more than once to check durability across Close.
package inventorytest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
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

func testApplyPull(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	if n := applyPull(t, st, shopA, at(3), row("8000003", 5, 3), row("8000001", 2, 1), row("8000002", 0, 2)); n != 3 {
		t.Fatalf("first pull changed %d, want 3", n)
	}
	if n := applyPull(t, st, shopA, at(3), row("8000003", 5, 3), row("8000001", 2, 1)); n != 0 {
		t.Fatalf("identical pull changed %d, want 0", n)
	}
	// A new updDateTime alone is a change: it is what the next pull filters on.
	if n := applyPull(t, st, shopA, at(4), row("8000001", 2, 4), row("8000002", 7, 2), row("8000004", 1, 4)); n != 3 {
		t.Fatalf("pull changed %d, want 3", n)
	}
	wantRows(t, st, shopA, row("8000001", 2, 4), row("8000002", 7, 2), row("8000003", 5, 3), row("8000004", 1, 4))
	r, ok, err := st.Row(ctx, shopA, "8000002")
	if err != nil || !ok || !r.SameLevel(row("8000002", 7, 2)) || r.ProductID != "8000002" {
		t.Fatalf("Row = %+v, %v, %v", r, ok, err)
	}
	if _, ok, err := st.Row(ctx, shopA, "9999999"); ok || err != nil {
		t.Fatalf("Row of unknown product = %v, %v", ok, err)
	}
	if _, ok, err := st.Row(ctx, shopB, "8000002"); ok || err != nil {
		t.Fatalf("Row of other store = %v, %v", ok, err)
	}
	if got := allRows(t, st, shopB); len(got) != 0 {
		t.Fatalf("other store has rows %v", got)
	}
	s := summary(t, st, shopA)
	if s.SKUs != 4 || !s.Watermark.Equal(at(4)) || s.LastPull.IsZero() {
		t.Fatalf("summary = %+v, want 4 SKUs, watermark %v, a last pull time", s, at(4))
	}
	if s := summary(t, st, shopB); s.SKUs != 0 || !s.Watermark.IsZero() {
		t.Fatalf("unknown store summary = %+v", s)
	}
	// Rows stop at the callback's error and return it.
	stop := errors.New("stop")
	seen := 0
	err = st.Rows(ctx, shopA, func(inventory.Row) error { seen++; return stop })
	if !errors.Is(err, stop) || seen != 1 {
		t.Fatalf("Rows with failing callback: err %v after %d rows", err, seen)
	}
	if _, err := st.ApplyPull(ctx, shopA, []inventory.Row{{StockAmount: 1}}, at(5)); err == nil {
		t.Fatal("ApplyPull accepted a row without product ID")
	}
}

func rowsPage(t *testing.T, st inventory.Store, key inventory.StoreKey, after string, limit int) []string {
	t.Helper()
	rows, err := st.RowsPage(ctxT(t), key, after, limit)
	if err != nil {
		t.Fatalf("RowsPage(%s, %q, %d): %v", key, after, limit, err)
	}
	ids := []string{}
	for _, r := range rows {
		ids = append(ids, r.ProductID)
	}
	return ids
}

func testRowsPage(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	// Byte order, not numeric order: "10" sorts before "2".
	applyPull(t, st, shopA, at(5), row("3", 3, 3), row("20", 20, 5), row("1", 1, 1), row("2", 2, 2), row("10", 10, 4))
	applyPull(t, st, shopB, at(5), row("15", 15, 1), row("4", 4, 1))
	for _, c := range []struct {
		after string
		limit int
		want  []string
	}{
		{"", 2, []string{"1", "10"}},
		{"10", 2, []string{"2", "20"}},
		{"20", 2, []string{"3"}},
		{"3", 2, []string{}},
		{"", 100, []string{"1", "10", "2", "20", "3"}},
		{"15", 100, []string{"2", "20", "3"}}, // not a product of this store: strictly after it
		{"0", 1, []string{"1"}},
		{"99", 5, []string{}},
	} {
		if got := rowsPage(t, st, shopA, c.after, c.limit); !slices.Equal(got, c.want) {
			t.Errorf("RowsPage(after %q, limit %d) = %v, want %v", c.after, c.limit, got, c.want)
		}
	}
	// Paging through the store yields exactly what Rows does, values too.
	var paged []inventory.Row
	for after := ""; ; {
		page, err := st.RowsPage(ctxT(t), shopA, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		paged = append(paged, page...)
		if len(page) < 2 {
			break
		}
		after = page[len(page)-1].ProductID
	}
	all := allRows(t, st, shopA)
	if len(paged) != len(all) {
		t.Fatalf("paged %d rows, Rows gives %d", len(paged), len(all))
	}
	for i := range all {
		if paged[i].ProductID != all[i].ProductID || !paged[i].SameLevel(all[i]) || paged[i].UpdDateTime.Location() != time.UTC {
			t.Fatalf("paged row %d = %+v, Rows gives %+v", i, paged[i], all[i])
		}
	}
	if got := rowsPage(t, st, shopC, "", 10); len(got) != 0 {
		t.Fatalf("store without rows: %v", got)
	}
	if got := rowsPage(t, st, shopB, "", 10); !slices.Equal(got, []string{"15", "4"}) {
		t.Fatalf("other store: %v", got)
	}
	if _, err := st.RowsPage(ctxT(t), shopA, "", 0); err == nil {
		t.Fatal("RowsPage accepted limit 0")
	}
}

func testApplyPullDuplicates(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	// The newest updDateTime wins; on a tie the later row does.
	n := applyPull(t, st, shopA, at(9), row("1", 5, 9), row("1", 4, 8), row("2", 1, 1), row("2", 6, 1))
	if n != 2 {
		t.Fatalf("changed %d, want 2 (one per product)", n)
	}
	wantRows(t, st, shopA, row("1", 5, 9), row("2", 6, 1))
	if s := summary(t, st, shopA); s.SKUs != 2 {
		t.Fatalf("SKUs %d, want 2", s.SKUs)
	}
}

func testWatermark(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	applyPull(t, st, shopA, at(10), row("1", 1, 10))
	applyPull(t, st, shopA, at(5), row("2", 1, 5))
	if w := summary(t, st, shopA).Watermark; !w.Equal(at(10)) {
		t.Fatalf("older pull moved watermark to %v", w)
	}
	applyPull(t, st, shopA, time.Time{})
	if w := summary(t, st, shopA).Watermark; !w.Equal(at(10)) {
		t.Fatalf("zero watermark moved it to %v", w)
	}
	jst := time.FixedZone("JST", 9*3600)
	applyPull(t, st, shopA, at(11).In(jst))
	if w := summary(t, st, shopA).Watermark; !w.Equal(at(11)) {
		t.Fatalf("watermark %v, want %v", w, at(11))
	}
	fs, err := st.BeginFullSync(ctxT(t), shopA)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Add(ctxT(t), []inventory.Row{row("1", 1, 10)}); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Commit(ctxT(t), at(7)); err != nil {
		t.Fatal(err)
	}
	if w := summary(t, st, shopA).Watermark; !w.Equal(at(11)) {
		t.Fatalf("full sync moved watermark back to %v", w)
	}
}

func fullSync(t *testing.T, st inventory.Store, key inventory.StoreKey, wm time.Time, pages ...[]inventory.Row) inventory.Drift {
	t.Helper()
	ctx := ctxT(t)
	fs, err := st.BeginFullSync(ctx, key)
	if err != nil {
		t.Fatalf("BeginFullSync: %v", err)
	}
	defer func() { _ = fs.Abort() }()
	for _, p := range pages {
		if err := fs.Add(ctx, p); err != nil {
			t.Fatalf("Add: %v", err)
		}
	}
	d, err := fs.Commit(ctx, wm)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return d
}

func testFullSyncDrift(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	applyPull(t, st, shopA, at(5), row("1", 1, 1), row("2", 2, 2), row("3", 3, 3), row("4", 4, 4), row("5", 5, 5))
	applyPull(t, st, shopB, at(5), row("1", 9, 1))
	// Every difference is back-dated (updDateTime not after the watermark
	// at(5)): no pull would have brought it, so it is drift.
	d := fullSync(t, st, shopA, at(9),
		[]inventory.Row{row("1", 1, 1), row("2", 20, 4)}, // 1 same, 2 changed
		[]inventory.Row{row("4", 4, 4), row("6", 6, 5)},  // 3 and 5 removed, 6 added
		[]inventory.Row{row("7", 7, 5), row("6", 6, 5)},  // 7 added, 6 repeated across pages
	)
	if d.Changed != 1 || d.Added != 2 || d.Removed != 2 || d.Total() != 5 || d.SKUs != 5 {
		t.Fatalf("drift = %+v, want changed 1, added 2, removed 2, 5 SKUs", d)
	}
	want := []inventory.DriftEntry{
		{ProductID: "2", Kind: inventory.DriftChanged, Before: row("2", 2, 2), After: row("2", 20, 4)},
		{ProductID: "3", Kind: inventory.DriftRemoved, Before: row("3", 3, 3)},
		{ProductID: "5", Kind: inventory.DriftRemoved, Before: row("5", 5, 5)},
		{ProductID: "6", Kind: inventory.DriftAdded, After: row("6", 6, 5)},
		{ProductID: "7", Kind: inventory.DriftAdded, After: row("7", 7, 5)},
	}
	if len(d.Sample) != len(want) {
		t.Fatalf("sample = %+v, want %+v", d.Sample, want)
	}
	for i, w := range want {
		g := d.Sample[i]
		if g.ProductID != w.ProductID || g.Kind != w.Kind || !g.Before.SameLevel(w.Before) || !g.After.SameLevel(w.After) {
			t.Fatalf("sample[%d] = %+v, want %+v", i, g, w)
		}
	}
	wantRows(t, st, shopA, row("1", 1, 1), row("2", 20, 4), row("4", 4, 4), row("6", 6, 5), row("7", 7, 5))
	wantRows(t, st, shopB, row("1", 9, 1))
	s := summary(t, st, shopA)
	if s.SKUs != 5 || s.LastDrift != 5 || s.LastFullSync.IsZero() || !s.Watermark.Equal(at(9)) {
		t.Fatalf("summary after full sync = %+v", s)
	}
	// A second identical sync finds nothing.
	d = fullSync(t, st, shopA, at(9), []inventory.Row{row("7", 7, 5), row("6", 6, 5), row("4", 4, 4), row("2", 20, 4), row("1", 1, 1)})
	if d.Total() != 0 || len(d.Sample) != 0 || d.SKUs != 5 {
		t.Fatalf("repeat sync drift = %+v", d)
	}
	if s := summary(t, st, shopA); s.LastDrift != 0 {
		t.Fatalf("LastDrift = %d after a clean sync", s.LastDrift)
	}
	// An empty listing empties the mirror.
	d = fullSync(t, st, shopA, at(9))
	if d.Removed != 5 || d.SKUs != 0 {
		t.Fatalf("empty sync drift = %+v", d)
	}
	wantRows(t, st, shopA)
}

// testFullSyncNewsIsNotDrift: a listed row updated after the watermark the
// sync began with changed after the last pull (a sale since, or during the
// listing's pages); a pull would have brought it, so it is written but is not
// drift. A back-dated difference (updDateTime not after that watermark) is
// drift, and so is every removed row.
func testFullSyncNewsIsNotDrift(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	applyPull(t, st, shopA, at(5), row("1", 1, 1), row("2", 2, 2), row("3", 3, 3), row("4", 4, 4), row("9", 9, 1))
	fs, err := st.BeginFullSync(ctx, shopA)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fs.Abort() }()
	// A pull during the listing moves the watermark to at(8); what counts is
	// the watermark when the sync began, at(5).
	applyPull(t, st, shopA, at(8), row("5", 5, 8))
	if err := fs.Add(ctx, []inventory.Row{
		row("1", 1, 1),  // unchanged
		row("2", 20, 6), // sold after the last pull: news
		row("3", 30, 7), // sold during the listing: news
		row("4", 40, 4), // changed, back-dated: drift
		row("6", 6, 6),  // created after the last pull: news
		row("7", 7, 2),  // missing from the mirror, back-dated: drift
		row("8", 8, 5),  // at the watermark, not after it: drift
	}); err != nil { // 9 is gone: drift
		t.Fatal(err)
	}
	d, err := fs.Commit(ctx, at(7))
	if err != nil {
		t.Fatal(err)
	}
	if d.Changed != 1 || d.Added != 2 || d.Removed != 1 || d.SKUs != 8 {
		t.Fatalf("drift = %+v, want changed 1 (4), added 2 (7, 8), removed 1 (9), 8 SKUs", d)
	}
	var ids []string
	for _, e := range d.Sample {
		ids = append(ids, e.ProductID+" "+string(e.Kind))
	}
	if want := []string{"4 changed", "7 added", "8 added", "9 removed"}; !slices.Equal(ids, want) {
		t.Fatalf("sample = %v, want %v", ids, want)
	}
	// News is written all the same.
	wantRows(t, st, shopA, row("1", 1, 1), row("2", 20, 6), row("3", 30, 7), row("4", 40, 4),
		row("5", 5, 8), row("6", 6, 6), row("7", 7, 2), row("8", 8, 5))
	if s := summary(t, st, shopA); s.SKUs != 8 || s.LastDrift != 4 || !s.Watermark.Equal(at(8)) {
		t.Fatalf("summary = %+v, want 8 SKUs, last drift 4, watermark %v", s, at(8))
	}
	// Only news: nothing drifted, yet the mirror follows the listing.
	d = fullSync(t, st, shopA, at(9), []inventory.Row{row("1", 1, 1), row("2", 19, 9), row("3", 30, 7),
		row("4", 40, 4), row("5", 5, 8), row("6", 6, 6), row("7", 7, 2), row("8", 8, 5), row("10", 1, 9)})
	if d.Total() != 0 || len(d.Sample) != 0 || d.SKUs != 9 {
		t.Fatalf("drift = %+v, want none and 9 SKUs", d)
	}
	if got, ok, err := st.Row(ctx, shopA, "2"); err != nil || !ok || !got.SameLevel(row("2", 19, 9)) {
		t.Fatalf("row 2 = %+v, %v, %v; the news was not written", got, ok, err)
	}
	if s := summary(t, st, shopA); s.SKUs != 9 || s.LastDrift != 0 {
		t.Fatalf("summary = %+v, want 9 SKUs, no drift", s)
	}
}

func testFullSyncAbort(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	applyPull(t, st, shopA, at(5), row("1", 1, 1), row("2", 2, 2))
	fs, err := st.BeginFullSync(ctx, shopA)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Add(ctx, []inventory.Row{row("1", 100, 9), row("3", 3, 9)}); err != nil {
		t.Fatal(err)
	}
	// Staged rows are invisible before the commit.
	wantRows(t, st, shopA, row("1", 1, 1), row("2", 2, 2))
	if err := fs.Abort(); err != nil {
		t.Fatal(err)
	}
	wantRows(t, st, shopA, row("1", 1, 1), row("2", 2, 2))
	if _, err := fs.Commit(ctx, at(9)); err == nil {
		t.Fatal("Commit after Abort succeeded")
	}
	if err := fs.Add(ctx, []inventory.Row{row("4", 1, 1)}); err == nil {
		t.Fatal("Add after Abort succeeded")
	}
	if err := fs.Abort(); err != nil {
		t.Fatalf("second Abort: %v", err)
	}
	if s := summary(t, st, shopA); s.SKUs != 2 || !s.LastFullSync.IsZero() || !s.Watermark.Equal(at(5)) {
		t.Fatalf("summary after abort = %+v", s)
	}
	// A committed sync ignores a later Abort.
	d := fullSync(t, st, shopA, at(9), []inventory.Row{row("1", 1, 1)})
	if d.Removed != 1 {
		t.Fatalf("drift %+v", d)
	}
	wantRows(t, st, shopA, row("1", 1, 1))
}

func testFullSyncSuperseded(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	applyPull(t, st, shopA, at(1), row("1", 1, 1))
	first, err := st.BeginFullSync(ctx, shopA)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Add(ctx, []inventory.Row{row("9", 9, 9)}); err != nil {
		t.Fatal(err)
	}
	second, err := st.BeginFullSync(ctx, shopA)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Add(ctx, []inventory.Row{row("8", 8, 8)}); !errors.Is(err, inventory.ErrSuperseded) {
		t.Fatalf("Add on superseded sync: %v, want ErrSuperseded", err)
	}
	if _, err := first.Commit(ctx, at(9)); !errors.Is(err, inventory.ErrSuperseded) {
		t.Fatalf("Commit on superseded sync: %v, want ErrSuperseded", err)
	}
	if err := first.Abort(); err != nil {
		t.Fatalf("Abort of superseded sync: %v", err)
	}
	// The superseded sync's rows must not leak into the new one.
	if err := second.Add(ctx, []inventory.Row{row("1", 1, 1), row("2", 2, 1)}); err != nil {
		t.Fatal(err)
	}
	d, err := second.Commit(ctx, at(2))
	if err != nil {
		t.Fatal(err)
	}
	if d.Added != 1 || d.Total() != 1 {
		t.Fatalf("drift = %+v, want one added", d)
	}
	wantRows(t, st, shopA, row("1", 1, 1), row("2", 2, 1))
}

func testFullSyncWithPull(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	applyPull(t, st, shopA, at(1), row("1", 10, 1), row("2", 20, 1))
	fs, err := st.BeginFullSync(ctx, shopA)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fs.Abort() }()
	if err := fs.Add(ctx, []inventory.Row{row("1", 10, 1), row("2", 20, 1)}); err != nil {
		t.Fatal(err)
	}
	// While the listing streams, a sale lowers product 1 and a new product
	// appears; an incremental pull brings both.
	applyPull(t, st, shopA, at(5), row("1", 9, 5), row("3", 1, 5))
	// The listing's later pages: product 2 sold since the sync began (news
	// the next pull would bring, not drift), and product 4 appears with a
	// back-dated updDateTime (drift: no pull would have brought it).
	if err := fs.Add(ctx, []inventory.Row{row("2", 19, 4), row("4", 4, 1)}); err != nil {
		t.Fatal(err)
	}
	d, err := fs.Commit(ctx, at(4))
	if err != nil {
		t.Fatal(err)
	}
	wantRows(t, st, shopA, row("1", 9, 5), row("2", 19, 4), row("3", 1, 5), row("4", 4, 1))
	if d.Added != 1 || d.Total() != 1 || d.SKUs != 4 || len(d.Sample) != 1 || d.Sample[0].ProductID != "4" {
		t.Fatalf("drift = %+v, want only product 4 added", d)
	}
	if w := summary(t, st, shopA).Watermark; !w.Equal(at(5)) {
		t.Fatalf("watermark %v, want %v", w, at(5))
	}
}

func testFullSyncManyPages(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	const n = 5000
	var base []inventory.Row
	for i := 0; i < n; i++ {
		base = append(base, row(fmt.Sprintf("%08d", 10000000+i), int64(i), 1))
	}
	if c := applyPull(t, st, shopA, at(1), base...); c != n {
		t.Fatalf("changed %d", c)
	}
	fs, err := st.BeginFullSync(ctx, shopA)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fs.Abort() }()
	// Drift (updDateTime not after the watermark at(1)): every 7th row
	// changed, every 11th missing, 30 new ones. News (sold or created since
	// the last pull), written but not drift: every 13th row otherwise
	// untouched and 40 new ones. Pages of 1000 in reverse order.
	wantChanged, wantRemoved := 0, 0
	var listing []inventory.Row
	for i, r := range base {
		switch {
		case i%11 == 0:
			wantRemoved++
			continue
		case i%7 == 0:
			r.StockAmount = -1
			wantChanged++
		case i%13 == 0:
			r.StockAmount, r.UpdDateTime = -2, at(2)
		}
		listing = append(listing, r)
	}
	for i := 0; i < 30; i++ {
		listing = append(listing, row(fmt.Sprintf("%08d", 20000000+i), 1, 1))
	}
	for i := 0; i < 40; i++ {
		listing = append(listing, row(fmt.Sprintf("%08d", 30000000+i), 1, 2))
	}
	for end := len(listing); end > 0; end -= 1000 {
		if err := fs.Add(ctx, listing[max(0, end-1000):end]); err != nil {
			t.Fatal(err)
		}
	}
	d, err := fs.Commit(ctx, at(2))
	if err != nil {
		t.Fatal(err)
	}
	if d.Changed != wantChanged || d.Removed != wantRemoved || d.Added != 30 || d.SKUs != int64(len(listing)) {
		t.Fatalf("drift %d/%d/%d SKUs %d, want changed %d removed %d added 30 SKUs %d",
			d.Changed, d.Removed, d.Added, d.SKUs, wantChanged, wantRemoved, len(listing))
	}
	if len(d.Sample) != inventory.DriftSampleSize {
		t.Fatalf("sample has %d entries, want %d", len(d.Sample), inventory.DriftSampleSize)
	}
	// The sample is the smallest drifted IDs: 0 removed, 7 changed, 11
	// removed, 14 changed, ... (not 13, 26, ...: news)
	var wantIDs []string
	for i := 0; len(wantIDs) < inventory.DriftSampleSize; i++ {
		if i%11 == 0 || i%7 == 0 {
			wantIDs = append(wantIDs, fmt.Sprintf("%08d", 10000000+i))
		}
	}
	for i, e := range d.Sample {
		if e.ProductID != wantIDs[i] {
			t.Fatalf("sample[%d] = %s, want %s", i, e.ProductID, wantIDs[i])
		}
	}
	wantRows(t, st, shopA, listing...)
	if s := summary(t, st, shopA); s.SKUs != int64(len(listing)) || s.LastDrift != int64(wantChanged+wantRemoved+30) {
		t.Fatalf("SKUs %d, last drift %d, want %d and %d", s.SKUs, s.LastDrift, len(listing), wantChanged+wantRemoved+30)
	}
}

func send(id string, targets ...inventory.StoreKey) inventory.SendRecord {
	return inventory.SendRecord{ID: id, Namespace: "shops", ProcName: "transaction_send", Targets: targets, Rows: 2, ReceivedAt: time.Now()}
}

func recordSend(t *testing.T, st inventory.Store, rec inventory.SendRecord) bool {
	t.Helper()
	dup, err := st.RecordSend(ctxT(t), rec)
	if err != nil {
		t.Fatalf("RecordSend(%s): %v", rec.ID, err)
	}
	return dup
}

func testRecordSendDuplicate(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	for i := 0; i < 5; i++ {
		rec := send(fmt.Sprintf("h%d", i), shopA, shopB)
		rec.ReceivedAt = base.Add(time.Duration(i) * time.Second)
		if recordSend(t, st, rec) {
			t.Fatalf("first send %s reported duplicate", rec.ID)
		}
	}
	again := send("h2", shopA)
	if !recordSend(t, st, again) {
		t.Fatal("resend not reported as duplicate")
	}
	recent, err := st.RecentSends(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(recent) != 3 || recent[0].ID != "h4" || recent[1].ID != "h3" || recent[2].ID != "h2" {
		t.Fatalf("RecentSends(3) = %+v", recent)
	}
	r := recent[0]
	if r.Namespace != "shops" || r.ProcName != "transaction_send" || r.Rows != 2 || !r.ReceivedAt.Equal(base.Add(4*time.Second)) ||
		len(r.Targets) != 2 || r.Targets[0] != shopA || r.Targets[1] != shopB {
		t.Fatalf("record read back as %+v", r)
	}
	all, err := st.RecentSends(ctx, 100)
	if err != nil || len(all) != 5 {
		t.Fatalf("RecentSends(100) = %d records, %v; want 5", len(all), err)
	}
	if _, err := st.RecordSend(ctx, inventory.SendRecord{Targets: []inventory.StoreKey{shopA}}); err == nil {
		t.Fatal("RecordSend accepted a record without ID")
	}
}

func dirtyMap(t *testing.T, st inventory.Store) map[inventory.StoreKey]uint64 {
	t.Helper()
	marks, err := st.Dirty(ctxT(t))
	if err != nil {
		t.Fatalf("Dirty: %v", err)
	}
	m := map[inventory.StoreKey]uint64{}
	for _, d := range marks {
		m[d.Key] = d.Seq
	}
	return m
}

func testDirty(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	if d := dirtyMap(t, st); len(d) != 0 {
		t.Fatalf("fresh store dirty: %v", d)
	}
	recordSend(t, st, send("s1", shopA, shopB))
	seen := dirtyMap(t, st)
	if len(seen) != 2 || seen[shopA] == 0 || seen[shopB] == 0 {
		t.Fatalf("dirty after send = %v", seen)
	}
	// The puller saw both marks; a send for B arrives during its pull.
	recordSend(t, st, send("s2", shopB))
	if ok, err := st.ClearDirty(ctx, shopA, seen[shopA]); err != nil || !ok {
		t.Fatalf("ClearDirty(A) = %v, %v", ok, err)
	}
	if ok, err := st.ClearDirty(ctx, shopB, seen[shopB]); err != nil || ok {
		t.Fatalf("ClearDirty(B) with a stale seq = %v, %v; the newer mark must survive", ok, err)
	}
	now := dirtyMap(t, st)
	if len(now) != 1 || now[shopB] <= seen[shopB] {
		t.Fatalf("dirty = %v, want only B with a newer seq than %d", now, seen[shopB])
	}
	// A duplicate send marks nothing.
	recordSend(t, st, send("s1", shopA))
	if d := dirtyMap(t, st); len(d) != 1 {
		t.Fatalf("duplicate send marked stores: %v", d)
	}
	if ok, err := st.ClearDirty(ctx, shopB, now[shopB]); err != nil || !ok {
		t.Fatalf("ClearDirty(B) = %v, %v", ok, err)
	}
	if ok, err := st.ClearDirty(ctx, shopC, 1<<62); err != nil || ok {
		t.Fatalf("ClearDirty of an unmarked store = %v, %v", ok, err)
	}
	if d := dirtyMap(t, st); len(d) != 0 {
		t.Fatalf("dirty after clearing = %v", d)
	}
	// Seqs only grow, also across stores.
	recordSend(t, st, send("s3", shopC))
	if d := dirtyMap(t, st); d[shopC] <= now[shopB] {
		t.Fatalf("seq %d not above earlier %d", d[shopC], now[shopB])
	}
}

func receive(t *testing.T, ch <-chan inventory.StoreKey, want ...inventory.StoreKey) {
	t.Helper()
	pending := map[inventory.StoreKey]bool{}
	for _, k := range want {
		pending[k] = true
	}
	deadline := time.After(10 * time.Second)
	for len(pending) > 0 {
		select {
		case k, ok := <-ch:
			if !ok {
				t.Fatalf("subscription closed while waiting for %v", pending)
			}
			delete(pending, k)
		case <-deadline:
			t.Fatalf("no notification for %v", pending)
		}
	}
}

func testSubscribe(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx, cancel := context.WithCancel(ctxT(t))
	ch := st.Subscribe(ctx)
	ch2 := st.Subscribe(ctx)
	// PostgreSQL's LISTEN starts asynchronously; keep sending until the
	// first notification shows the subscription is live.
	live := false
	for i := 0; i < 100 && !live; i++ {
		recordSend(t, st, send(fmt.Sprintf("warm%d", i), shopC))
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
	start := time.Now()
	recordSend(t, st, send("n1", shopA, shopB))
	receive(t, ch, shopA, shopB)
	t.Logf("notified %v after the send returned", time.Since(start))
	receive(t, ch2, shopA, shopB)
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("channel not closed after the context ended")
		}
	}
}

func drain(ch <-chan inventory.StoreKey) {
	for {
		select {
		case <-ch:
		case <-time.After(200 * time.Millisecond):
			return
		}
	}
}

func testSubscribeSlow(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	ch := st.Subscribe(ctx) // never read until the sends are done
	for i := 0; i < 100; i++ {
		recordSend(t, st, send(fmt.Sprintf("slow%d", i), shopA, shopB))
	}
	// The sends above returned, so the reader did not block them; it still
	// learns about both stores.
	receive(t, ch, shopA, shopB)
}

func testConcurrentRecordSend(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	const n = 200
	// Every ID is sent twice, by different goroutines: exactly one of each
	// pair must win.
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := map[string]int{}
	errs := make(chan error, 2*n)
	for i := 0; i < 2*n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("c%03d", i%n)
			targets := []inventory.StoreKey{{Namespace: "load", Name: fmt.Sprintf("s%d", i%10)}, shopA}
			dup, err := st.RecordSend(ctx, send(id, targets...))
			if err != nil {
				errs <- err
				return
			}
			if !dup {
				mu.Lock()
				fresh[id]++
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent RecordSend: %v", err)
	}
	if len(fresh) != n {
		t.Fatalf("%d IDs recorded as new, want %d", len(fresh), n)
	}
	for id, c := range fresh {
		if c != 1 {
			t.Fatalf("ID %s recorded as new %d times", id, c)
		}
	}
	recent, err := st.RecentSends(ctx, 10*n)
	if err != nil || len(recent) != n {
		t.Fatalf("RecentSends = %d, %v; want %d", len(recent), err, n)
	}
	if d := dirtyMap(t, st); len(d) != 11 {
		t.Fatalf("%d stores dirty, want 11", len(d))
	}
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
