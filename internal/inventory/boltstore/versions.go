package boltstore

// Resource versions and the change log (inventory.VersionStore). Layout:
//
//	versions/<ns>\x00<name>  key "v"          = 16 bytes: version, prunedThrough
//	versions/<ns>\x00<name>/log/<8-byte version> = product ID
//
// bbolt has one writer at a time, so versions are assigned in commit order
// without any further locking. The bucket is created by the first write
// that records a change; readers treat a missing one as version 0.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

var (
	bucketVersions = []byte("versions")
	bucketLog      = []byte("log")
	keyVersion     = []byte("v")
)

// readVersion returns a store's version and the newest version pruned from
// its log (0, 0 without a bucket).
func readVersion(vb *bolt.Bucket) (version, pruned uint64, err error) {
	if vb == nil {
		return 0, 0, nil
	}
	v := vb.Get(keyVersion)
	if v == nil {
		return 0, 0, nil
	}
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("corrupt version record: %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v[0:]), binary.BigEndian.Uint64(v[8:]), nil
}

func versionBucket(tx *bolt.Tx, key inventory.StoreKey) *bolt.Bucket {
	top := tx.Bucket(bucketVersions)
	if top == nil {
		return nil
	}
	return top.Bucket(storeKeyBytes(key))
}

// recordChanges gives each product (deduplicated, in byte order) the next
// version of the store and appends it to the log, pruning the log to
// inventory.ChangeLogSize, inside the caller's write transaction. Watchers
// are told once the transaction commits. The cost is one small read-modify-
// write plus one put per changed product.
func (s *Store) recordChanges(tx *bolt.Tx, key inventory.StoreKey, productIDs []string) error {
	if len(productIDs) == 0 {
		return nil
	}
	ids := slices.Clone(productIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	top, err := tx.CreateBucketIfNotExists(bucketVersions)
	if err != nil {
		return err
	}
	vb, err := top.CreateBucketIfNotExists(storeKeyBytes(key))
	if err != nil {
		return err
	}
	lb, err := vb.CreateBucketIfNotExists(bucketLog)
	if err != nil {
		return err
	}
	version, pruned, err := readVersion(vb)
	if err != nil {
		return err
	}
	newVersion := version + uint64(len(ids))
	newPruned := pruned
	if newVersion-pruned > inventory.ChangeLogSize {
		newPruned = newVersion - inventory.ChangeLogSize
	}
	switch {
	case newPruned >= version && version > pruned:
		// Every kept entry goes (a large full sync): drop the bucket
		// rather than delete key by key.
		if err := vb.DeleteBucket(bucketLog); err != nil {
			return err
		}
		if lb, err = vb.CreateBucket(bucketLog); err != nil {
			return err
		}
	case newPruned > pruned:
		// Deleting under a live cursor can skip keys in bbolt: reposition
		// after each delete (First is a short descent). In the steady state
		// this is one key per change.
		c := lb.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= newPruned; k, _ = c.First() {
			if err := lb.Delete(k); err != nil {
				return err
			}
		}
	}
	// Keys only ever grow: fill pages fully.
	lb.FillPercent = 1.0
	for i, id := range ids {
		v := version + 1 + uint64(i)
		if v <= newPruned {
			continue // would be pruned at once
		}
		if err := lb.Put(u64(v), []byte(id)); err != nil {
			return err
		}
	}
	version, pruned = newVersion, newPruned
	v := make([]byte, 16)
	binary.BigEndian.PutUint64(v[0:], version)
	binary.BigEndian.PutUint64(v[8:], pruned)
	if err := vb.Put(keyVersion, v); err != nil {
		return err
	}
	tx.OnCommit(func() { s.verFeed.Publish(key) })
	return nil
}

// deleteVersions drops a store's version and log (DeleteStore).
func deleteVersions(tx *bolt.Tx, key inventory.StoreKey) error {
	top := tx.Bucket(bucketVersions)
	if top == nil {
		return nil
	}
	if err := top.DeleteBucket(storeKeyBytes(key)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return err
	}
	return nil
}

// negativeProducts lists the products whose pending sum an adjustment counts
// in (its negative lines: inventory.NegativeDeltas).
func negativeProducts(dst []string, lines []inventory.AdjustmentLine) []string {
	for _, l := range lines {
		if l.Quantity < 0 {
			dst = append(dst, l.ProductID)
		}
	}
	return dst
}

// StoreVersion implements inventory.VersionStore.
func (s *Store) StoreVersion(ctx context.Context, key inventory.StoreKey) (uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var version uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		version, _, err = readVersion(versionBucket(tx, key))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: reading the version of %s: %w", key, err)
	}
	return version, nil
}

// ChangesSince implements inventory.VersionStore.
func (s *Store) ChangesSince(ctx context.Context, key inventory.StoreKey, since uint64, limit int) ([]inventory.Change, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("boltstore: reading changes of %s: limit %d is not positive", key, limit)
	}
	var out []inventory.Change
	err := s.db.View(func(tx *bolt.Tx) error {
		vb := versionBucket(tx, key)
		version, pruned, err := readVersion(vb)
		if err != nil {
			return err
		}
		if since > version || since < pruned {
			return inventory.ErrGone
		}
		if since == version {
			return nil
		}
		c := vb.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(u64(since + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			out = append(out, inventory.Change{Version: binary.BigEndian.Uint64(k), ProductID: string(v)})
		}
		return nil
	})
	if errors.Is(err, inventory.ErrGone) {
		return nil, fmt.Errorf("boltstore: changes of %s after version %d: %w", key, since, err)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: reading changes of %s: %w", key, err)
	}
	return out, nil
}

// RowsByID implements inventory.VersionStore.
func (s *Store) RowsByID(ctx context.Context, key inventory.StoreKey, productIDs []string) (map[string]inventory.Row, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]inventory.Row, len(productIDs))
	err := s.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketStores).Bucket(storeKeyBytes(key))
		if sb == nil || sb.Bucket(bucketRows) == nil {
			return nil
		}
		rb := sb.Bucket(bucketRows)
		for _, id := range productIDs {
			v := rb.Get([]byte(id))
			if v == nil {
				continue
			}
			r, err := decodeRow([]byte(id), v)
			if err != nil {
				return err
			}
			out[id] = r
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: reading rows of %s: %w", key, err)
	}
	return out, nil
}

// SubscribeVersions implements inventory.VersionStore. Only this process
// writes the file, so the in-process feed sees every commit.
func (s *Store) SubscribeVersions(ctx context.Context) <-chan inventory.StoreKey {
	return s.verFeed.Subscribe(ctx)
}
