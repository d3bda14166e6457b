package inventorytest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

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
