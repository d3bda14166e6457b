package boltstore_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
)

// TestPruneAdjustmentsOlderFile: a file written before the retention index
// existed has settled adjustments that no index names. The first write that
// needs the index builds it from the stored adjustments, whether that write
// is PruneAdjustments itself or a settlement.
func TestPruneAdjustmentsOlderFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inventory.db")
	shopA := inventory.StoreKey{Namespace: "shops", Name: "a"}
	shopB := inventory.StoreKey{Namespace: "shops", Name: "b"}
	base := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	cutoff := base.Add(time.Minute)

	st, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []inventory.StoreKey{shopA, shopB} {
		var adjs []inventory.Adjustment
		for _, id := range []string{"applied", "failed", "pending", "later"} {
			a, _, err := st.SubmitAdjustment(ctx, inventory.Adjustment{Key: key, ID: id, CreatedAt: base,
				Lines: []inventory.AdjustmentLine{{ProductID: "8000001", Quantity: -1}}})
			if err != nil {
				t.Fatal(err)
			}
			adjs = append(adjs, a)
		}
		mustAttempt(t, st, key, "t1", adjs[0], inventory.AttemptResult{Applied: true, At: base.Add(time.Second)})
		mustAttempt(t, st, key, "t2", adjs[1], inventory.AttemptResult{Failed: map[string]string{"failed": "error_code 41"}})
		if _, err := st.MarkAdjustmentsReflected(ctx, key, base.Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Make it an older file: no store has the index.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	removed := 0
	err = db.Update(func(tx *bolt.Tx) error {
		top := tx.Bucket([]byte("adjustments"))
		return top.ForEachBucket(func(k []byte) error {
			if err := top.Bucket(k).DeleteBucket([]byte("settled")); err != nil {
				return err
			}
			removed++
			return nil
		})
	})
	if err != nil || removed != 2 {
		t.Fatalf("removing the index: %d buckets, %v", removed, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	st, err = boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Store A: PruneAdjustments builds the index.
	if n, err := st.PruneAdjustments(ctx, shopA, cutoff); err != nil || n != 2 {
		t.Fatalf("PruneAdjustments(A) on an older file = %d, %v; want 2", n, err)
	}
	// Store B: a settlement builds it, with the older entries.
	b, _, _ := st.GetAdjustment(ctx, shopB, "later")
	mustAttempt(t, st, shopB, "t3", b, inventory.AttemptResult{Applied: true, At: base.Add(3 * time.Second)})
	if _, err := st.MarkAdjustmentsReflected(ctx, shopB, base.Add(4*time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := st.PruneAdjustments(ctx, shopB, cutoff); err != nil || n != 3 {
		t.Fatalf("PruneAdjustments(B) on an older file = %d, %v; want 3", n, err)
	}
	for key, left := range map[inventory.StoreKey][]string{shopA: {"pending", "later"}, shopB: {"pending"}} {
		for _, id := range []string{"applied", "failed", "pending", "later"} {
			_, ok, err := st.GetAdjustment(ctx, key, id)
			want := false
			for _, l := range left {
				want = want || l == id
			}
			if err != nil || ok != want {
				t.Fatalf("%s %s present = %v, %v; want %v", key, id, ok, err, want)
			}
		}
	}
}

func mustAttempt(t *testing.T, st inventory.Store, key inventory.StoreKey, id string, a inventory.Adjustment, res inventory.AttemptResult) {
	t.Helper()
	ctx := context.Background()
	at := inventory.Attempt{Key: key, ID: id, AdjustmentIDs: []string{a.ID}, StartedAt: a.CreatedAt,
		Rows: inventory.MergeAttemptRows([]inventory.Adjustment{a})}
	if err := st.BeginAttempt(ctx, at); err != nil {
		t.Fatal(err)
	}
	if err := st.FinishAttempt(ctx, key, id, res); err != nil {
		t.Fatal(err)
	}
}
