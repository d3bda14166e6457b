package boltstore

import (
	"context"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Stores implements inventory.Store: the union of the per-store buckets under
// stores/ and adjustments/ and the keys of dirty/, read in one transaction.
func (s *Store) Stores(ctx context.Context) ([]inventory.StoreKey, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	seen := map[inventory.StoreKey]struct{}{}
	err := s.db.View(func(tx *bolt.Tx) error {
		add := func(k []byte) error {
			seen[parseStoreKeyBytes(k)] = struct{}{}
			return nil
		}
		if err := tx.Bucket(bucketStores).ForEachBucket(add); err != nil {
			return err
		}
		if err := tx.Bucket(bucketAdjustments).ForEachBucket(add); err != nil {
			return err
		}
		return tx.Bucket(bucketDirty).ForEach(func(k, _ []byte) error { return add(k) })
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: listing stores: %w", err)
	}
	keys := make([]inventory.StoreKey, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, inventory.CompareStoreKeys)
	return keys, nil
}
