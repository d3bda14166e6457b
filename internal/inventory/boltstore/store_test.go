package boltstore_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/inventory/inventorytest"
)

func TestConformance(t *testing.T) {
	inventorytest.Run(t, func(t *testing.T) inventorytest.Opener {
		path := filepath.Join(t.TempDir(), "inventory.db")
		return func() (inventory.Store, error) { return boltstore.Open(path) }
	})
}

func TestOpenURL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inv.db")
	st, err := inventory.Open(context.Background(), "bolt://"+path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := st.(*boltstore.Store); !ok {
		t.Fatalf("Open returned %T", st)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := inventory.Open(context.Background(), "bolt://"); err == nil {
		t.Fatal("bolt:// without a path opened")
	}
	if _, err := inventory.Open(context.Background(), "mysql://u:secret@h/db"); err == nil {
		t.Fatal("unknown scheme opened")
	} else if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func BenchmarkRecordSend(b *testing.B) {
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	inventorytest.BenchmarkRecordSend(b, st, 64)
}

func BenchmarkFullSync100k(b *testing.B) {
	st, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	inventorytest.BenchmarkFullSync(b, st, 100_000)
}

// The operator's default path lives in a directory that may not exist yet
// (an empty volume, a developer's machine): Open creates it.
func TestOpenCreatesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "var", "lib", "smaregi-operator", "inventory.db")
	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	defer func() { _ = st.Close() }()
	key := inventory.StoreKey{Namespace: "ns", Name: "shop"}
	if _, err := st.ApplyPull(context.Background(), key, []inventory.Row{{ProductID: "8000001", StockAmount: 3}}, time.Time{}); err != nil {
		t.Fatalf("ApplyPull on the new file: %v", err)
	}
}

// TestOpenWaitsForTheFile: a replacement Pod opens the file once the old
// one lets go, instead of failing while it drains; a holder that never lets
// go is named in the error.
func TestOpenWaitsForTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inv.db")
	first, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := boltstore.OpenWithOptions(path, boltstore.Options{LockTimeout: 100 * time.Millisecond}); err == nil ||
		!strings.Contains(err.Error(), "one replica only on bolt") {
		t.Fatalf("second open while the file is held: err = %v, want a timeout that says why", err)
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(200 * time.Millisecond) // the old Pod draining
		first.Close()
		close(released)
	}()
	second, err := boltstore.OpenWithOptions(path, boltstore.Options{LockTimeout: time.Minute})
	if err != nil {
		t.Fatalf("open after the holder let go: %v", err)
	}
	select {
	case <-released:
	default:
		t.Fatal("the second open succeeded while the first still held the file")
	}
	second.Close()
}
