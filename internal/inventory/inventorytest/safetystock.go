package inventorytest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// safetyStockTests check inventory.SafetyStockStore: what is stored, and
// that a change records a version for exactly the products with a row whose
// effective safety stock it changes.
var safetyStockTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"SafetyStockVersionsOnlyChangedProducts", testSafetyStockVersions},
	{"SafetyStockDurableAndDeletedWithStore", testSafetyStockDurable},
}

func setSafety(t *testing.T, st inventory.Store, key inventory.StoreKey, def int64, over map[string]int64) int {
	t.Helper()
	n, err := st.SetSafetyStock(ctxT(t), key, inventory.SafetyStock{Default: def, Overrides: over})
	if err != nil {
		t.Fatalf("SetSafetyStock(%s, %d, %v): %v", key, def, over, err)
	}
	return n
}

func wantSafety(t *testing.T, st inventory.Store, key inventory.StoreKey, ids []string, wantRecorded bool, want string) {
	t.Helper()
	s, recorded, err := st.SafetyStockFor(ctxT(t), key, ids)
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(s.Default)
	for _, id := range ids {
		got += fmt.Sprintf(" %s=%d", id, s.For(id))
	}
	if recorded != wantRecorded || got != want {
		t.Fatalf("SafetyStockFor(%s, %v) = %q recorded %v; want %q recorded %v", key, ids, got, recorded, want, wantRecorded)
	}
}

func testSafetyStockVersions(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	wantSafety(t, st, shopA, []string{"1"}, false, "0 1=0")
	if _, err := st.ApplyPull(ctx, shopA, []inventory.Row{row("1", 5, 0), row("2", 5, 0), row("3", 5, 0)}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	set := func(def int64, over map[string]int64, wantN int) func() {
		return func() {
			if n := setSafety(t, st, shopA, def, over); n != wantN {
				t.Fatalf("SetSafetyStock(%d, %v) reported %d changed products, want %d", def, over, n, wantN)
			}
		}
	}
	// The first record: what was served before is unknown, so every
	// product with a row changes. Overrides of products without a row
	// ("9") record nothing: a channel has no item for them.
	step(t, st, shopA, "the first record", set(1, map[string]int64{"2": 4, "9": 7}, 3), "1", "2", "3")
	wantSafety(t, st, shopA, []string{"1", "2", "9", "8"}, true, "1 1=1 2=4 9=7 8=1")
	step(t, st, shopA, "the same again", set(1, map[string]int64{"2": 4, "9": 7}, 0))
	step(t, st, shopA, "an override changed, one added, one without a row removed", set(1, map[string]int64{"2": 3, "3": 2}, 2), "2", "3")
	step(t, st, shopA, "an override equal to the default", set(1, map[string]int64{"2": 3, "3": 2, "1": 1}, 0))
	step(t, st, shopA, "the default changed", set(2, map[string]int64{"2": 3, "3": 2, "1": 1}, 0))
	step(t, st, shopA, "the default changed again, one override removed", set(3, map[string]int64{"2": 3, "3": 2}, 1), "1")
	// "2" keeps 3 units: its override equalled the new default.
	step(t, st, shopA, "overrides removed", set(3, nil, 1), "3")
	wantSafety(t, st, shopA, []string{"2", "3"}, true, "3 2=3 3=3")
	// Another store is untouched.
	wantVersion(t, st, shopB, 0)
	wantSafety(t, st, shopB, nil, false, "0")

	if _, err := st.SetSafetyStock(ctx, shopA, inventory.SafetyStock{Default: 1, Overrides: map[string]int64{"1": -1}}); err == nil {
		t.Fatal("a negative override was accepted")
	}
	wantSafety(t, st, shopA, []string{"1"}, true, "3 1=3")
	// A store without rows records its safety stock and no change.
	step(t, st, shopB, "a store without rows", func() {
		if n := setSafety(t, st, shopB, 0, map[string]int64{"1": 2}); n != 0 {
			t.Fatalf("a store without rows: %d changed products", n)
		}
	})
	wantSafety(t, st, shopB, []string{"1"}, true, "0 1=2")
}

func testSafetyStockDurable(t *testing.T, open Opener) {
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	big := map[string]int64{}
	for i := range 30_000 {
		big[fmt.Sprintf("%07d", i)] = int64(i % 5)
	}
	setSafety(t, st, shopA, 2, big)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = mustOpen(t, open)
	wantSafety(t, st, shopA, []string{"0000004", "0000005", "x"}, true, "2 0000004=4 0000005=0 x=2")
	keys, err := st.Stores(ctxT(t))
	if err != nil || fmt.Sprint(keys) != fmt.Sprint([]inventory.StoreKey{shopA}) {
		t.Fatalf("Stores() = %v, %v; want the store holding a safety stock", keys, err)
	}
	if err := st.DeleteStore(ctxT(t), shopA); err != nil {
		t.Fatal(err)
	}
	wantSafety(t, st, shopA, []string{"0000004"}, false, "0 0000004=0")
	if _, err := st.ChangesSince(ctxT(t), shopA, 1, 1); !errors.Is(err, inventory.ErrGone) {
		t.Fatalf("ChangesSince after DeleteStore: %v", err)
	}
}
