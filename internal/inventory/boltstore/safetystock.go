package boltstore

// Safety stock (inventory.SafetyStockStore). Layout, inside the store's
// bucket so that DeleteStore and Stores cover it:
//
//	stores/<ns>\x00<name>/safety  key "d"               = 8-byte default
//	stores/<ns>\x00<name>/safety/o/<productID>          = 8-byte units
//
// The safety bucket exists once SetSafetyStock has run for the store.

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

var (
	bucketSafety    = []byte("safety")
	bucketOverrides = []byte("o")
	keyDefault      = []byte("d")
)

func readUnits(v []byte) (int64, error) {
	if len(v) != 8 {
		return 0, fmt.Errorf("corrupt safety stock record: %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

func unitsBytes(n int64) []byte { return u64(uint64(n)) }

// readSafety reads the default and every override of a safety bucket.
func readSafety(sb *bolt.Bucket) (inventory.SafetyStock, error) {
	var s inventory.SafetyStock
	d, err := readUnits(sb.Get(keyDefault))
	if err != nil {
		return s, err
	}
	s.Default = d
	s.Overrides = map[string]int64{}
	if ob := sb.Bucket(bucketOverrides); ob != nil {
		err = ob.ForEach(func(k, v []byte) error {
			n, err := readUnits(v)
			s.Overrides[string(k)] = n
			return err
		})
	}
	return s, err
}

// SetSafetyStock implements inventory.SafetyStockStore. The store's rows,
// the safety stock and the change log are written in one transaction, and
// bbolt has one writer, so no pull can add a row between the read of the
// rows and the record of their changes.
func (s *Store) SetSafetyStock(ctx context.Context, key inventory.StoreKey, next inventory.SafetyStock) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if err := next.Validate(); err != nil {
		return 0, fmt.Errorf("boltstore: safety stock of %s: %w", key, err)
	}
	changed := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		stb, rb, err := storeBucket(tx, key)
		if err != nil {
			return err
		}
		sb := stb.Bucket(bucketSafety)
		first := sb == nil
		var old inventory.SafetyStock
		if first {
			if sb, err = stb.CreateBucket(bucketSafety); err != nil {
				return err
			}
			if _, err = sb.CreateBucket(bucketOverrides); err != nil {
				return err
			}
		} else if old, err = readSafety(sb); err != nil {
			return err
		}
		ids, err := safetyChangedProducts(rb, first, old, next)
		if err != nil {
			return err
		}
		// Rewrite only what differs: a ConfigMap of tens of thousands of
		// entries usually changes a few.
		ob := sb.Bucket(bucketOverrides)
		for id := range old.Overrides {
			if _, keep := next.Overrides[id]; !keep {
				if err := ob.Delete([]byte(id)); err != nil {
					return err
				}
			}
		}
		for id, n := range next.Overrides {
			if v, ok := old.Overrides[id]; ok && v == n {
				continue
			}
			if err := ob.Put([]byte(id), unitsBytes(n)); err != nil {
				return err
			}
		}
		if err := sb.Put(keyDefault, unitsBytes(next.Default)); err != nil {
			return err
		}
		changed = len(ids)
		return s.recordChanges(tx, key, ids)
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: setting the safety stock of %s: %w", key, err)
	}
	return changed, nil
}

// safetyChangedProducts lists the products with a row (in rb) whose
// effective safety stock differs between old and next; every one with a row
// the first time (nothing was recorded: what was served is unknown).
func safetyChangedProducts(rb *bolt.Bucket, first bool, old, next inventory.SafetyStock) ([]string, error) {
	all, candidates := inventory.SafetyStockChanges(old, next)
	if !first && !all {
		var ids []string
		for _, id := range candidates {
			if rb.Get([]byte(id)) != nil {
				ids = append(ids, id)
			}
		}
		return ids, nil
	}
	var ids []string
	err := rb.ForEach(func(k, _ []byte) error {
		if first || old.For(string(k)) != next.For(string(k)) {
			ids = append(ids, string(k))
		}
		return nil
	})
	return ids, err
}

// SafetyStockFor implements inventory.SafetyStockStore.
func (s *Store) SafetyStockFor(ctx context.Context, key inventory.StoreKey, productIDs []string) (inventory.SafetyStock, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.SafetyStock{}, false, err
	}
	var (
		out      inventory.SafetyStock
		recorded bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		stb := tx.Bucket(bucketStores).Bucket(storeKeyBytes(key))
		if stb == nil || stb.Bucket(bucketSafety) == nil {
			return nil
		}
		sb := stb.Bucket(bucketSafety)
		recorded = true
		d, err := readUnits(sb.Get(keyDefault))
		if err != nil {
			return err
		}
		out.Default = d
		ob := sb.Bucket(bucketOverrides)
		for _, id := range productIDs {
			v := ob.Get([]byte(id))
			if v == nil {
				continue
			}
			n, err := readUnits(v)
			if err != nil {
				return err
			}
			if out.Overrides == nil {
				out.Overrides = map[string]int64{}
			}
			out.Overrides[id] = n
		}
		return nil
	})
	if err != nil {
		return inventory.SafetyStock{}, false, fmt.Errorf("boltstore: reading the safety stock of %s: %w", key, err)
	}
	return out, recorded, nil
}
