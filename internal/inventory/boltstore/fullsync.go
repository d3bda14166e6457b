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
// transaction; an import (an empty mirror) moves the staged bucket into
// place instead of copying it row by row.
//
// Layout: staging/<8-byte sync ID>/rows holds the staged rows, under the
// name the mirror's bucket has (bucketRows), because bbolt moves a bucket
// under its own key: the import's commit is then MoveBucket, whose memory
// does not grow with the rows.
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
		parent, err := staging.CreateBucket(u64(id))
		if err != nil {
			return err
		}
		if _, err := parent.CreateBucket(bucketRows); err != nil {
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

// stagedRows is the bucket of rows staged by the full sync with ID id, or
// nil.
func stagedRows(tx *bolt.Tx, id uint64) *bolt.Bucket {
	parent := tx.Bucket(bucketStaging).Bucket(u64(id))
	if parent == nil {
		return nil
	}
	return parent.Bucket(bucketRows)
}

// staging returns this sync's staging bucket and the store bucket, or
// ErrSuperseded if a later BeginFullSync (or DeleteStore) replaced it.
func (f *fullSync) staging(tx *bolt.Tx) (*bolt.Bucket, *bolt.Bucket, meta, error) {
	sb := tx.Bucket(bucketStores).Bucket(storeKeyBytes(f.key))
	m, err := readMeta(sb)
	if err != nil {
		return nil, nil, m, err
	}
	stg := stagedRows(tx, f.id)
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
		added := 0              // drifted or not
		var changedIDs []string // for the change log (versions.go)
		stg, sb, m, err := f.staging(tx)
		if err != nil {
			return err
		}
		rb := sb.Bucket(bucketRows)
		if k, _ := rb.Cursor().First(); k == nil {
			// An import: every staged row is new, so the staged bucket is
			// the mirror. Moving it costs what reading it does; copying
			// it made the one commit hold every row as bbolt's in-memory
			// nodes, keys and values cloned (the 1,000,000-SKU import's
			// peak heap).
			added, err := f.importDrift(stg, &drift, &changedIDs)
			if err != nil {
				return err
			}
			if err := sb.DeleteBucket(bucketRows); err != nil {
				return err
			}
			if err := tx.Bucket(bucketStaging).Bucket(u64(f.id)).MoveBucket(bucketRows, sb); err != nil {
				return err
			}
			return f.finish(tx, sb, m, added, changedIDs, watermark, &drift)
		}
		// Pass 1: mirror rows missing from the listing. Deleting under a
		// live cursor can skip keys in bbolt, so collect first.
		var removed [][]byte
		c := rb.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if stg.Get(k) != nil {
				continue
			}
			before, err := decodeRow(k, v)
			if err != nil {
				return err
			}
			drift.Count(inventory.DriftEntry{ProductID: before.ProductID, Kind: inventory.DriftRemoved, Before: before}, f.since)
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
			drift.Count(e, f.since)
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
		return f.finish(tx, sb, m, added, changedIDs, watermark, &drift)
	})
	if err != nil {
		return inventory.Drift{}, fmt.Errorf("boltstore: committing full sync of %s: %w", f.key, err)
	}
	f.done = true
	return drift, nil
}

// importDrift walks the staged rows of an import: each is added, and
// counted as drift as pass 2 of Commit counts it (Drift.Count).
func (f *fullSync) importDrift(stg *bolt.Bucket, drift *inventory.Drift, changedIDs *[]string) (added int, err error) {
	c := stg.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		after, err := decodeRow(k, v)
		if err != nil {
			return 0, err
		}
		added++
		drift.Count(inventory.DriftEntry{ProductID: after.ProductID, Kind: inventory.DriftAdded, After: after}, f.since)
		*changedIDs = append(*changedIDs, after.ProductID)
	}
	return added, nil
}

// finish records the changes, drops the staging bucket and writes the
// store's summary: the end of both of Commit's paths.
func (f *fullSync) finish(tx *bolt.Tx, sb *bolt.Bucket, m meta, added int, changedIDs []string, watermark time.Time, drift *inventory.Drift) error {
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
