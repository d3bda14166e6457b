package mirror

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// TestOrphanSweepAgainstKubeAPIServer starts the engine in a manager over an
// inventory holding data of SmaregiStores deleted while no operator ran:
// their data is removed at start, that of the store that exists is kept, and
// so is that of a deleted store whose outbox is not empty.
func TestOrphanSweepAgainstKubeAPIServer(t *testing.T) {
	cfg := kubeControlPlane(t)
	h := newHarness(t, nil)
	ctx := context.Background()

	var (
		exists    = testKey                                                    // shop/store-1, suspended: no pull re-creates its rows
		otherNS   = inventory.StoreKey{Namespace: "other", Name: testKey.Name} // same name, other namespace
		gone      = inventory.StoreKey{Namespace: testKey.Namespace, Name: "closed"}
		dirtyOnly = inventory.StoreKey{Namespace: "gone", Name: "ghost"} // a send marked it; nobody declared it
		orders    = inventory.StoreKey{Namespace: testKey.Namespace, Name: "has-orders"}
	)
	// "sentinel" is no product of the simulator: only the mirror as it was
	// before start has it, so a sweep that deleted it cannot be hidden by a
	// pull that re-imported the shop.
	seedRows(t, h.inv, exists, "8000001", "sentinel")
	seedRows(t, h.inv, otherNS)
	seedRows(t, h.inv, gone)
	seedDirty(t, h.inv, "s1", gone, exists)
	seedDirty(t, h.inv, "s2", dirtyOnly)
	seedRows(t, h.inv, orders)
	seedPending(t, h.inv, orders, "order-1")

	// The SmaregiStore exists before the manager starts, as after a restart.
	live := liveClient(t, cfg)
	for _, ns := range []string{exists.Namespace, otherNS.Namespace} {
		if err := live.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	obj := smaregiStore(exists)
	obj.Spec.Endpoint = h.endpoint
	obj.Spec.Suspend = true
	if err := live.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}

	e, err := New(Options{Inventory: h.inv, Readers: h.readers(), Tick: 20 * time.Millisecond, StatusInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	type sweep struct {
		res OrphanSweep
		err error
	}
	swept := make(chan sweep, 1)
	e.onSweep = func(res OrphanSweep, err error) { swept <- sweep{res, err} }
	stopped := startInManager(t, cfg, e)

	var s sweep
	select {
	case s = <-swept:
	case <-stopped:
		t.Fatal("the manager stopped before the sweep")
	case <-time.After(60 * time.Second):
		t.Fatal("no orphan sweep within 60s of starting the manager")
	}
	if s.err != nil {
		t.Fatalf("sweep: %v", s.err)
	}
	if want := []inventory.StoreKey{dirtyOnly, otherNS, gone}; !slices.Equal(s.res.Removed, want) {
		t.Errorf("removed %v, want %v", s.res.Removed, want)
	}
	if want := []inventory.StoreKey{orders}; !slices.Equal(s.res.KeptPending, want) {
		t.Errorf("kept for pending adjustments %v, want %v", s.res.KeptPending, want)
	}
	wantInventoryStores(t, h.inv, exists, orders)
	if rows := mirrorRows(t, h.inv, exists); len(rows) != 2 || rows["sentinel"].StockAmount != 5 {
		t.Errorf("rows of %s after the sweep: %v, want its 2 rows from before the start", exists, rows)
	}
	for _, k := range []inventory.StoreKey{otherNS, gone, dirtyOnly} {
		if rows := mirrorRows(t, h.inv, k); len(rows) != 0 {
			t.Errorf("%s still has %d rows", k, len(rows))
		}
		if sum, err := h.inv.Summary(ctx, k); err != nil || sum != (inventory.Summary{}) {
			t.Errorf("%s still has a summary %+v (%v)", k, sum, err)
		}
	}
	marks, err := h.inv.Dirty(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 || marks[0].Key != exists {
		t.Errorf("dirty marks after the sweep %v, want only %s's", marks, exists)
	}
	if n, _, err := h.inv.PendingAdjustments(ctx, orders); err != nil || n != 1 {
		t.Errorf("pending adjustments of %s = %d, %v; want 1", orders, n, err)
	}
}
