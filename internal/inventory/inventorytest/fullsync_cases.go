package inventorytest

// Full syncs (BeginFullSync, Add, Commit, Abort): drift, news, supersession,
// pulls meanwhile, many pages, and the import into an empty mirror.

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

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

// testImportThenReconcile: a full sync into an empty mirror (an import,
// which bbolt commits by moving the staged bucket into place) leaves the
// same mirror, summary and change log as any other full sync, and the
// mirror it leaves takes pulls and a later reconcile like any other.
func testImportThenReconcile(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	const n = 3000
	listing := make([]inventory.Row, n)
	for i := range listing {
		listing[i] = row(fmt.Sprintf("%08d", 10000000+i), int64(i), 1)
	}
	// Pages in reverse key order, the last one short.
	var pages [][]inventory.Row
	for end := n; end > 0; end -= 1024 {
		pages = append(pages, listing[max(0, end-1024):end])
	}
	d := fullSync(t, st, shopA, at(1), pages...)
	// Every row changed after the empty store's zero watermark: news, not
	// drift.
	if d.Total() != 0 || d.SKUs != n {
		t.Fatalf("import drift %+v, want none and %d SKUs", d, n)
	}
	if got := rowsPage(t, st, shopA, "", n+1); len(got) != n || got[0] != listing[0].ProductID || got[n-1] != listing[n-1].ProductID {
		t.Fatalf("after the import: %d rows, want %d in key order", len(got), n)
	}
	if r, ok, err := st.Row(ctx, shopA, listing[1234].ProductID); err != nil || !ok || !r.SameLevel(listing[1234]) {
		t.Fatalf("row %s after the import = %+v, %v, %v", listing[1234].ProductID, r, ok, err)
	}
	if v, err := st.StoreVersion(ctx, shopA); err != nil || v != n {
		t.Fatalf("version after the import = %d, %v; want %d (one per product)", v, err, n)
	}
	if s := summary(t, st, shopA); s.SKUs != n || !s.Watermark.Equal(at(1)) {
		t.Fatalf("summary after the import = %+v", s)
	}
	// The imported mirror takes a pull...
	if c := applyPull(t, st, shopA, at(2), row(listing[7].ProductID, -5, 2), row("99999999", 1, 2)); c != 2 {
		t.Fatalf("pull after the import changed %d rows, want 2", c)
	}
	// ...and a reconcile: product 0 gone, product 8 drifted (its
	// updDateTime not after the watermark), the pull's rows kept.
	re := append([]inventory.Row{}, listing[1:]...)
	re[7-1] = row(listing[7].ProductID, -5, 2)
	re[8-1] = row(listing[8].ProductID, 1000, 1)
	re = append(re, row("99999999", 1, 2))
	d = fullSync(t, st, shopA, at(2), re)
	if d.Removed != 1 || d.Changed != 1 || d.Added != 0 || d.SKUs != n {
		t.Fatalf("reconcile after the import: drift %+v, want 1 removed, 1 changed, %d SKUs", d, n)
	}
	if _, ok, _ := st.Row(ctx, shopA, listing[0].ProductID); ok {
		t.Fatalf("product %s still mirrored after the reconcile removed it", listing[0].ProductID)
	}
	if r, _, _ := st.Row(ctx, shopA, listing[8].ProductID); r.StockAmount != 1000 {
		t.Fatalf("product %s = %d after the reconcile, want 1000", listing[8].ProductID, r.StockAmount)
	}
	// Another store's import in the same file is its own.
	if d := fullSync(t, st, shopB, at(1), listing[:10]); d.SKUs != 10 {
		t.Fatalf("second store's import: %+v", d)
	}
	if s := summary(t, st, shopA); s.SKUs != n {
		t.Fatalf("first store's SKUs %d after the second's import, want %d", s.SKUs, n)
	}
}
