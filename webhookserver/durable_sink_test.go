package webhookserver_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

// The durable sink records a send once, marks each of its stores dirty and
// tells the engine of each; a resent duplicate is accepted but marks and
// tells nothing, since no pull will follow it.
func TestDurableSinkRecordsOnceAndNotesNewSends(t *testing.T) {
	inv, err := boltstore.Open(filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	ctx := context.Background()
	type note struct {
		key inventory.StoreKey
		at  time.Time
	}
	var notes []note
	sink := webhookserver.NewDurableSink(inv, func(k inventory.StoreKey, at time.Time) { notes = append(notes, note{k, at}) })
	a := inventory.StoreKey{Namespace: "shop", Name: "store-a"}
	b := inventory.StoreKey{Namespace: "shop", Name: "store-b"}
	received := time.Date(2026, 11, 26, 1, 2, 3, 0, time.UTC)
	send := webhookserver.Send{ID: "send-durable-1", Namespace: "shop", ProcName: webhookserver.ProcTransactionSend,
		Targets: []types.NamespacedName{{Namespace: a.Namespace, Name: a.Name}, {Namespace: b.Namespace, Name: b.Name}},
		Rows:    3, ReceivedAt: received}

	if err := sink.Accept(ctx, send); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	want := []note{{a, received}, {b, received}}
	if !slices.Equal(notes, want) {
		t.Fatalf("noted %v, want %v", notes, want)
	}
	marks, err := inv.Dirty(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var marked []inventory.StoreKey
	for _, m := range marks {
		marked = append(marked, m.Key)
	}
	if len(marked) != 2 || !slices.Contains(marked, a) || !slices.Contains(marked, b) {
		t.Fatalf("dirty marks %v, want %v and %v", marked, a, b)
	}
	for _, m := range marks {
		if _, err := inv.ClearDirty(ctx, m.Key, m.Seq); err != nil {
			t.Fatal(err)
		}
	}

	if err := sink.Accept(ctx, send); err != nil {
		t.Fatalf("a duplicate must be accepted: %v", err)
	}
	if len(notes) != 2 {
		t.Errorf("a duplicate was noted: %v", notes[2:])
	}
	if marks, err := inv.Dirty(ctx); err != nil || len(marks) != 0 {
		t.Errorf("a duplicate marked %v dirty (%v)", marks, err)
	}
	recs, err := inv.RecentSends(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ID != send.ID || recs[0].Rows != 3 || !recs[0].ReceivedAt.Equal(received) {
		t.Fatalf("recorded sends %+v, want the one send", recs)
	}

	// Without onRecorded (a receiver with no engine in the process) it
	// records all the same; a failed write is an error, so the receiver
	// answers Smaregi with a failure it can resend.
	other := send
	other.ID = "send-durable-2"
	if err := webhookserver.NewDurableSink(inv, nil).Accept(ctx, other); err != nil {
		t.Fatalf("Accept without onRecorded: %v", err)
	}
	_ = inv.Close()
	other.ID = "send-durable-3"
	if err := sink.Accept(ctx, other); err == nil || !strings.Contains(err.Error(), "recording") {
		t.Fatalf("Accept on a closed inventory: %v, want a recording error", err)
	}
}
