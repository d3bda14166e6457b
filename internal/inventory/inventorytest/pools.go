package inventorytest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// poolTests are the StockPool order conformance tests; Run runs them with
// the rest.
var poolTests = []struct {
	name string
	fn   func(t *testing.T, open Opener)
}{
	{"PoolOrderIdempotentDurableAndSubmitted", testPoolOrder},
	{"PoolOrderRefusesAnAllocationThatDoesNotAddUp", testPoolOrderSum},
	{"LockPoolExcludes", testLockPool},
}

var poolA = inventory.StoreKey{Namespace: "shops", Name: "tokyo"}

func poolOrder(id string) inventory.PoolOrder {
	return inventory.PoolOrder{
		Pool: poolA, ID: id, Reason: "web", Fingerprint: "fp-" + id,
		Lines: []inventory.AdjustmentLine{{ProductID: "1", Quantity: -5}},
		Allocations: []inventory.PoolAllocation{
			{Store: "shibuya", AdjustmentID: "spool:tokyo:" + id, Lines: []inventory.AdjustmentLine{{ProductID: "1", Quantity: -3}}},
			{Store: "umeda", AdjustmentID: "spool:tokyo:" + id, Lines: []inventory.AdjustmentLine{{ProductID: "1", Quantity: -2}}},
		},
		CreatedAt: at(1),
	}
}

func testPoolOrder(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	o := poolOrder("o1")
	stored, created, err := st.RecordPoolOrder(ctx, o)
	if err != nil || !created || stored.Submitted || len(stored.Allocations) != 2 {
		t.Fatalf("RecordPoolOrder = %+v, %v, %v; want created, not submitted", stored, created, err)
	}
	// A replay returns the first allocation, whatever the new one says.
	again := o
	again.Allocations = []inventory.PoolAllocation{{Store: "umeda", AdjustmentID: "x", Lines: o.Lines}}
	stored, created, err = st.RecordPoolOrder(ctx, again)
	if err != nil || created || len(stored.Allocations) != 2 || stored.Allocations[0].Store != "shibuya" {
		t.Fatalf("replay = %+v, %v, %v; want the stored allocation", stored, created, err)
	}
	other := o
	other.Fingerprint = "fp-other"
	if _, _, err := st.RecordPoolOrder(ctx, other); !errors.Is(err, inventory.ErrAdjustmentConflict) {
		t.Fatalf("RecordPoolOrder with another fingerprint: %v, want ErrAdjustmentConflict", err)
	}
	o2 := poolOrder("o2")
	o2.CreatedAt = at(2)
	if _, _, err := st.RecordPoolOrder(ctx, o2); err != nil {
		t.Fatal(err)
	}
	un, err := st.UnsubmittedPoolOrders(ctx, poolA)
	if err != nil || len(un) != 2 || un[0].ID != "o1" || un[1].ID != "o2" {
		t.Fatalf("UnsubmittedPoolOrders = %+v, %v; want o1, o2", un, err)
	}
	if err := st.MarkPoolOrderSubmitted(ctx, poolA, "o1"); err != nil {
		t.Fatal(err)
	}
	if err := st.MarkPoolOrderSubmitted(ctx, poolA, "o1"); err != nil {
		t.Fatalf("marking twice: %v", err)
	}
	_ = st.Close()

	st = mustOpen(t, open)
	got, found, err := st.GetPoolOrder(ctx, poolA, "o1")
	if err != nil || !found || !got.Submitted || got.Allocations[1].Lines[0].Quantity != -2 || !got.CreatedAt.Equal(at(1)) {
		t.Fatalf("GetPoolOrder after reopen = %+v, %v, %v", got, found, err)
	}
	un, err = st.UnsubmittedPoolOrders(ctx, poolA)
	if err != nil || len(un) != 1 || un[0].ID != "o2" {
		t.Fatalf("UnsubmittedPoolOrders after marking o1 = %+v, %v; want o2", un, err)
	}
	if _, found, err := st.GetPoolOrder(ctx, inventory.StoreKey{Namespace: "shops", Name: "osaka"}, "o1"); err != nil || found {
		t.Fatalf("another pool's order: found %v, %v", found, err)
	}
}

func testPoolOrderSum(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	o := poolOrder("bad")
	o.Allocations[1].Lines[0].Quantity = -1
	if _, _, err := st.RecordPoolOrder(ctxT(t), o); err == nil {
		t.Fatal("an allocation of 4 for an order of 5 was recorded")
	}
	if _, found, _ := st.GetPoolOrder(ctxT(t), poolA, "bad"); found {
		t.Fatal("a refused order was stored")
	}
}

func testLockPool(t *testing.T, open Opener) {
	st := mustOpen(t, open)
	ctx := ctxT(t)
	unlock, err := st.LockPool(ctx, poolA)
	if err != nil {
		t.Fatal(err)
	}
	// Another pool is not held back.
	unlockB, err := st.LockPool(ctx, inventory.StoreKey{Namespace: "shops", Name: "osaka"})
	if err != nil {
		t.Fatal(err)
	}
	unlockB()
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if u, err := st.LockPool(short, poolA); err == nil {
		u()
		t.Fatal("LockPool succeeded while the pool was locked")
	}
	unlock()
	unlock2, err := st.LockPool(ctx, poolA)
	if err != nil {
		t.Fatalf("LockPool after unlock: %v", err)
	}
	unlock2()

	// More waiters than a backend has connections, each doing the work a
	// pool order does under the lock: nobody starves the holder.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			unlock, err := st.LockPool(ctx, poolA)
			if err != nil {
				errs <- err
				return
			}
			defer unlock()
			if _, _, err := st.GetPoolOrder(ctx, poolA, "none"); err != nil {
				errs <- err
			}
			if _, err := st.PendingDeltas(ctx, shopA); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("a lock holder could not work: %v", err)
	}
}
