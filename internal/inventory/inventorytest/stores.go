package inventorytest

import (
	"errors"
	"slices"
	"testing"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// storesTests cover Store.Stores, which the sync engine relies on to remove
// the data of SmaregiStores deleted while no operator ran.
var storesTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"StoresListsEveryKindOfData", testStores},
	{"StoresClosed", testStoresClosed},
}

func wantStores(t *testing.T, st inventory.Store, want ...inventory.StoreKey) {
	t.Helper()
	got, err := st.Stores(ctxT(t))
	if err != nil {
		t.Fatalf("Stores: %v", err)
	}
	if want == nil {
		want = []inventory.StoreKey{}
	}
	if got == nil {
		got = []inventory.StoreKey{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Stores = %v, want %v", got, want)
	}
}

func testStores(t *testing.T, open Opener) {
	var (
		rowsOnly    = shopA                                                   // shops/shibuya: rows and summary
		dirtyOnly   = shopB                                                   // shops/umeda: a dirty mark
		adjOnly     = shopC                                                   // other/shibuya: an adjustment
		summaryOnly = inventory.StoreKey{Namespace: "shops", Name: "namba"}   // an empty full sync
		lookalike   = inventory.StoreKey{Namespace: "shop", Name: "sshibuya"} // same bytes as shops/shibuya without the separator
	)
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	wantStores(t, st)

	applyPull(t, st, rowsOnly, at(3), row("1", 1, 1))
	if d := fullSync(t, st, summaryOnly, at(4)); d.SKUs != 0 {
		t.Fatalf("empty full sync left %d SKUs", d.SKUs)
	}
	recordSend(t, st, send("s1", dirtyOnly, lookalike))
	if _, created, err := st.SubmitAdjustment(ctx, inventory.Adjustment{Key: adjOnly, ID: "order-1", Reason: "online order",
		Lines: []inventory.AdjustmentLine{{ProductID: "1", Quantity: -1}}}); err != nil || !created {
		t.Fatalf("SubmitAdjustment = %v, %v", created, err)
	}
	// Byte order: "other" < "shop" < "shops"; "namba" < "shibuya" < "umeda".
	wantStores(t, st, adjOnly, lookalike, summaryOnly, rowsOnly, dirtyOnly)

	// A cleared dirty mark was the lookalike's only data: its send record
	// is not per-store data.
	if cleared, err := st.ClearDirty(ctx, lookalike, dirtyMap(t, st)[lookalike]); err != nil || !cleared {
		t.Fatalf("ClearDirty = %v, %v", cleared, err)
	}
	wantStores(t, st, adjOnly, summaryOnly, rowsOnly, dirtyOnly)

	// The list is durable: it is read from the data, not kept in memory.
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	st = mustOpen(t, open)
	ctx = ctxT(t)
	wantStores(t, st, adjOnly, summaryOnly, rowsOnly, dirtyOnly)

	// DeleteStore removes a store from the list whatever its data was.
	left := []inventory.StoreKey{adjOnly, summaryOnly, rowsOnly, dirtyOnly}
	for _, k := range []inventory.StoreKey{rowsOnly, adjOnly, dirtyOnly, summaryOnly} {
		if err := st.DeleteStore(ctx, k); err != nil {
			t.Fatalf("DeleteStore(%s): %v", k, err)
		}
		left = slices.DeleteFunc(left, func(x inventory.StoreKey) bool { return x == k })
		wantStores(t, st, left...)
	}
}

func testStoresClosed(t *testing.T, open Opener) {
	st, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Stores(ctxT(t)); !errors.Is(err, inventory.ErrClosed) {
		t.Fatalf("Stores after Close: %v, want ErrClosed", err)
	}
}
