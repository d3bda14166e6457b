package boltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// fullSync stages pages in a bucket of the same file, one short transaction
// per page, so memory stays at one page and RecordSend is never held behind a
// long write transaction. Commit then merges staging into the mirror in one
// transaction.
type fullSync struct {
	s   *Store
	key inventory.StoreKey
	id  uint64
	// since is the store's watermark when the sync began: a listed row
	// newer than that is news a pull would have brought, not drift.
	since time.Time

	mu   sync.Mutex
	done bool
}

// BeginFullSync implements inventory.Store.
func (s *Store) BeginFullSync(ctx context.Context, key inventory.StoreKey) (inventory.FullSync, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var (
		id    uint64
		since time.Time
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		sb, _, err := storeBucket(tx, key)
		if err != nil {
			return err
		}
		m, err := readMeta(sb)
		if err != nil {
			return err
		}
		since = m.Watermark
		staging := tx.Bucket(bucketStaging)
		if m.FullSyncID != 0 { // supersede the previous one
			if err := staging.DeleteBucket(u64(m.FullSyncID)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		if id, err = staging.NextSequence(); err != nil {
			return err
		}
		if _, err := staging.CreateBucket(u64(id)); err != nil {
			return err
		}
		m.FullSyncID = id
		return writeMeta(sb, m)
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: beginning full sync of %s: %w", key, err)
	}
	return &fullSync{s: s, key: key, id: id, since: since}, nil
}

// staging returns this sync's staging bucket and the store bucket, or
// ErrSuperseded if a later BeginFullSync (or DeleteStore) replaced it.
func (f *fullSync) staging(tx *bolt.Tx) (*bolt.Bucket, *bolt.Bucket, meta, error) {
	sb := tx.Bucket(bucketStores).Bucket(storeKeyBytes(f.key))
	m, err := readMeta(sb)
	if err != nil {
		return nil, nil, m, err
	}
	stg := tx.Bucket(bucketStaging).Bucket(u64(f.id))
	if sb == nil || m.FullSyncID != f.id || stg == nil {
		return nil, nil, m, inventory.ErrSuperseded
	}
	return stg, sb, m, nil
}

func (f *fullSync) Add(ctx context.Context, rows []inventory.Row) error {
	if err := f.s.check(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return errors.New("boltstore: Add on a finished full sync")
	}
	rows, err := inventory.LatestPerProduct(rows)
	if err != nil {
		return err
	}
	err = f.s.db.Update(func(tx *bolt.Tx) error {
		stg, _, _, err := f.staging(tx)
		if err != nil {
			return err
		}
		return stageRows(stg, rows)
	})
	if err != nil {
		return fmt.Errorf("boltstore: staging full sync rows of %s: %w", f.key, err)
	}
	return nil
}

func (f *fullSync) Commit(ctx context.Context, watermark time.Time) (inventory.Drift, error) {
	if err := f.s.check(ctx); err != nil {
		return inventory.Drift{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return inventory.Drift{}, errors.New("boltstore: Commit on a finished full sync")
	}
	var drift inventory.Drift
	err := f.s.db.Update(func(tx *bolt.Tx) error {
		drift = inventory.Drift{}
		added := 0 // drifted or not
		stg, sb, m, err := f.staging(tx)
		if err != nil {
			return err
		}
		rb := sb.Bucket(bucketRows)
		if m.SKUs == 0 {
			// An import: pass 2 puts every row, in key order, into an
			// empty bucket. bbolt's default split (half-full pages) would
			// leave the file twice the size it needs; later writes split
			// the pages they touch as usual.
			rb.FillPercent = 1.0
		}
		// Pass 1: mirror rows missing from the listing. Deleting under a
		// live cursor can skip keys in bbolt, so collect first.
		var removed [][]byte
		var changedIDs []string // for the change log (versions.go)
		c := rb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if stg.Get(k) != nil {
				continue
			}
			before, err := decodeRow(k, v)
			if err != nil {
				return err
			}
			drift.Removed++
			drift.AddSample(inventory.DriftEntry{ProductID: before.ProductID, Kind: inventory.DriftRemoved, Before: before})
			removed = append(removed, bytes.Clone(k))
		}
		// Pass 2: staged rows new to or different from the mirror, all
		// written; those updated after the watermark the sync began with
		// are news (sales since the last pull), not drift. Keys and values
		// are copied: bbolt wants them valid until commit, and the staging
		// bucket is deleted before that.
		sc := stg.Cursor()
		for k, v := sc.First(); k != nil; k, v = sc.Next() {
			old := rb.Get(k)
			// The encoding is canonical (normalized rows), so equal bytes
			// are the same level: the common case of a reconcile costs a
			// lookup and a compare, no decoding and no allocation.
			if old != nil && bytes.Equal(old, v) {
				continue
			}
			after, err := decodeRow(k, v)
			if err != nil {
				return err
			}
			e := inventory.DriftEntry{ProductID: after.ProductID, Kind: inventory.DriftAdded, After: after}
			if old != nil {
				before, err := decodeRow(k, old)
				if err != nil {
					return err
				}
				if before.SameLevel(after) {
					continue
				}
				e.Kind, e.Before = inventory.DriftChanged, before
			} else {
				added++
			}
			if !after.UpdDateTime.After(f.since) {
				if e.Kind == inventory.DriftChanged {
					drift.Changed++
				} else {
					drift.Added++
				}
				drift.AddSample(e)
			}
			if err := rb.Put(bytes.Clone(k), bytes.Clone(v)); err != nil {
				return err
			}
			changedIDs = append(changedIDs, after.ProductID)
		}
		for _, k := range removed {
			if err := rb.Delete(k); err != nil {
				return err
			}
			changedIDs = append(changedIDs, string(k))
		}
		if err := f.s.recordChanges(tx, f.key, changedIDs); err != nil {
			return err
		}
		if err := tx.Bucket(bucketStaging).DeleteBucket(u64(f.id)); err != nil {
			return err
		}
		m.SKUs += int64(added - drift.Removed)
		drift.SKUs = m.SKUs
		m.FullSyncID = 0
		m.LastFullSync = time.Now().UTC()
		m.LastDrift = int64(drift.Total())
		if w := inventory.NormalizeTime(watermark); w.After(m.Watermark) {
			m.Watermark = w
		}
		return writeMeta(sb, m)
	})
	if err != nil {
		return inventory.Drift{}, fmt.Errorf("boltstore: committing full sync of %s: %w", f.key, err)
	}
	f.done = true
	return drift, nil
}

func (f *fullSync) Abort() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done || f.s.closed.Load() {
		return nil
	}
	f.done = true
	err := f.s.db.Update(func(tx *bolt.Tx) error {
		_, sb, m, err := f.staging(tx)
		if errors.Is(err, inventory.ErrSuperseded) {
			return nil // someone else owns the store's sync now
		}
		if err != nil {
			return err
		}
		m.FullSyncID = 0
		if err := writeMeta(sb, m); err != nil {
			return err
		}
		return tx.Bucket(bucketStaging).DeleteBucket(u64(f.id))
	})
	if err != nil {
		return fmt.Errorf("boltstore: aborting full sync of %s: %w", f.key, err)
	}
	return nil
}
