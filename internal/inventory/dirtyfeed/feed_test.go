package dirtyfeed

import (
	"context"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

func TestCoalescesForSlowReaderAndRedelivers(t *testing.T) {
	f := New()
	defer f.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := f.Subscribe(ctx)
	a := inventory.StoreKey{Namespace: "n", Name: "a"}
	b := inventory.StoreKey{Namespace: "n", Name: "b"}
	// Nobody reads yet: many publications must neither block nor pile up.
	for i := 0; i < 10000; i++ {
		f.Publish(a, b)
	}
	got := map[inventory.StoreKey]int{}
	timeout := time.After(5 * time.Second)
	for len(got) < 2 {
		select {
		case k := <-ch:
			got[k]++
		case <-timeout:
			t.Fatalf("received %v, want a and b", got)
		}
	}
	// At most one copy of each may still be in flight.
	for done := false; !done; {
		select {
		case k := <-ch:
			got[k]++
		case <-time.After(100 * time.Millisecond):
			done = true
		}
	}
	if got[a] > 2 || got[b] > 2 {
		t.Fatalf("not coalesced: %v", got)
	}
	// A key published after delivery is delivered again.
	f.Publish(a)
	select {
	case k := <-ch:
		if k != a {
			t.Fatalf("got %v, want %v", k, a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("republished key not delivered")
	}
}

func TestCloseAndCancelEndSubscriptions(t *testing.T) {
	f := New()
	ctx, cancel := context.WithCancel(context.Background())
	byCancel := f.Subscribe(ctx)
	byClose := f.Subscribe(context.Background())
	cancel()
	f.Close()
	for _, ch := range []<-chan inventory.StoreKey{byCancel, byClose} {
		select {
		case _, ok := <-ch:
			if ok {
				t.Fatal("value on an ended subscription")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("subscription not closed")
		}
	}
	if _, ok := <-f.Subscribe(context.Background()); ok {
		t.Fatal("subscription on a closed feed delivered")
	}
	f.Publish(inventory.StoreKey{Namespace: "n", Name: "a"}) // must not panic or block
}
