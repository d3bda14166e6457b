package inventorytest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

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
