package boltstore

// Adjustments and push attempts. Layout, one bucket per store under the
// top-level "adjustments" bucket:
//
//	adjustments/<ns>\x00<name>/adj/<id>                 = JSON adjRecord
//	adjustments/<ns>\x00<name>/pending/<created µs><id> = "" (pending, oldest first)
//	adjustments/<ns>\x00<name>/unreflected/<id>         = "" (applied, not yet pulled)
//	adjustments/<ns>\x00<name>/attempts/<id>            = JSON attempt
//	adjustments/<ns>\x00<name>/open/<id>                = "" (open attempts)
//	adjustments/<ns>\x00<name>/settled/<since µs><id>   = "" (prunable: failed, since
//	                                                        CreatedAt; applied and
//	                                                        reflected, since AppliedAt)
//
// The indexes keep every hot read proportional to the outbox, not to the
// history of adjustments, and PruneAdjustments proportional to what it
// deletes. A file written before the settled index existed gets it built
// once, by the first write transaction that needs it.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

var (
	bucketAdjustments = []byte("adjustments")
	bucketAdj         = []byte("adj")
	bucketPending     = []byte("pending")
	bucketUnreflected = []byte("unreflected")
	bucketAttempts    = []byte("attempts")
	bucketOpen        = []byte("open")
	bucketSettled     = []byte("settled")
)

// pruneBatch bounds the adjustments PruneAdjustments deletes per write
// transaction, so that a large backlog does not hold the writer long.
const pruneBatch = 1000

var _ inventory.AdjustmentStore = (*Store)(nil)

// adjRecord is an adjustment as stored, with the pusher's bookkeeping.
type adjRecord struct {
	inventory.Adjustment
	// Attempt is the open attempt carrying it, if any.
	Attempt string `json:"attempt,omitempty"`
	// Reflected: applied and seen by a later pull.
	Reflected bool `json:"reflected,omitempty"`
}

func pendingKey(created time.Time, id string) []byte {
	b := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(b, uint64(created.UnixMicro()))
	return append(b, id...)
}

// adjBuckets returns the store's adjustment buckets, creating them when
// create is set; nil when they do not exist and create is not set.
// The settled index is nil in read-only transactions on a file written
// before it existed; writers get it with settledIndex.
type adjBuckets struct {
	root, adj, pending, unreflected, attempts, open, settled *bolt.Bucket
}

func getAdjBuckets(tx *bolt.Tx, key inventory.StoreKey, create bool) (*adjBuckets, error) {
	top := tx.Bucket(bucketAdjustments)
	sk := storeKeyBytes(key)
	var b adjBuckets
	if !create {
		b.root = top.Bucket(sk)
		if b.root == nil {
			return nil, nil
		}
		b.adj, b.pending, b.unreflected = b.root.Bucket(bucketAdj), b.root.Bucket(bucketPending), b.root.Bucket(bucketUnreflected)
		b.attempts, b.open = b.root.Bucket(bucketAttempts), b.root.Bucket(bucketOpen)
		b.settled = b.root.Bucket(bucketSettled)
		return &b, nil
	}
	var err error
	if b.root, err = top.CreateBucketIfNotExists(sk); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		dst  **bolt.Bucket
		name []byte
	}{{&b.adj, bucketAdj}, {&b.pending, bucketPending}, {&b.unreflected, bucketUnreflected}, {&b.attempts, bucketAttempts}, {&b.open, bucketOpen}} {
		if *p.dst, err = b.root.CreateBucketIfNotExists(p.name); err != nil {
			return nil, err
		}
	}
	if err := b.settledIndex(); err != nil {
		return nil, err
	}
	return &b, nil
}

// settledIndex sets b.settled, creating the bucket in a write transaction
// when it is missing and indexing the adjustments settled before it existed
// (a file from an older version: a one-time scan of the store).
func (b *adjBuckets) settledIndex() error {
	if b.settled != nil {
		return nil
	}
	if b.settled = b.root.Bucket(bucketSettled); b.settled != nil {
		return nil
	}
	var err error
	if b.settled, err = b.root.CreateBucket(bucketSettled); err != nil {
		return err
	}
	if b.adj == nil {
		return nil
	}
	return b.adj.ForEach(func(k, v []byte) error {
		var r adjRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decoding adjustment %q: %w", k, err)
		}
		if since, ok := prunableSince(&r); ok {
			return b.settled.Put(pendingKey(since, r.ID), nil)
		}
		return nil
	})
}

// prunableSince is the time from which an adjustment's retention runs, and
// whether it is prunable at all: failed ones from their creation, applied
// ones from their application once a pull reflected them; never a pending
// one or one carried by an attempt.
func prunableSince(r *adjRecord) (time.Time, bool) {
	if r.Attempt != "" {
		return time.Time{}, false
	}
	switch {
	case r.State == inventory.AdjustmentFailed:
		return r.CreatedAt, true
	case r.State == inventory.AdjustmentApplied && r.Reflected:
		return r.AppliedAt, true
	}
	return time.Time{}, false
}

// keyTime decodes the time prefix of a pending or settled index key.
func keyTime(k []byte) time.Time {
	return time.UnixMicro(int64(binary.BigEndian.Uint64(k[:8]))).UTC()
}

func getAdj(b *bolt.Bucket, id string) (*adjRecord, error) {
	v := b.Get([]byte(id))
	if v == nil {
		return nil, nil
	}
	var r adjRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return nil, fmt.Errorf("decoding adjustment %q: %w", id, err)
	}
	r.AwaitingConfirmation = r.Attempt != "" && r.State == inventory.AdjustmentPending
	return &r, nil
}

func putAdj(b *bolt.Bucket, r *adjRecord) error {
	v, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return b.Put([]byte(r.ID), v)
}

func getAttempt(b *bolt.Bucket, id []byte) (*inventory.Attempt, error) {
	v := b.Get(id)
	if v == nil {
		return nil, nil
	}
	var a inventory.Attempt
	if err := json.Unmarshal(v, &a); err != nil {
		return nil, fmt.Errorf("decoding attempt %q: %w", id, err)
	}
	return &a, nil
}

func putAttempt(b *bolt.Bucket, a *inventory.Attempt) error {
	v, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return b.Put([]byte(a.ID), v)
}

// SubmitAdjustment implements inventory.AdjustmentStore. Concurrent calls
// share commits (groupCommitter), so a burst of orders costs few fsyncs.
func (s *Store) SubmitAdjustment(ctx context.Context, a inventory.Adjustment) (inventory.Adjustment, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Adjustment{}, false, err
	}
	a, err := inventory.NormalizeAdjustment(a, time.Now())
	if err != nil {
		return inventory.Adjustment{}, false, err
	}
	var (
		stored  inventory.Adjustment
		created bool
	)
	// The group commit may run the function more than once: it sets every
	// result.
	err = s.group.update(func(tx *bolt.Tx) error {
		created = false
		b, err := getAdjBuckets(tx, a.Key, true)
		if err != nil {
			return err
		}
		old, err := getAdj(b.adj, a.ID)
		if err != nil {
			return err
		}
		if old != nil {
			if old.Fingerprint != a.Fingerprint {
				return inventory.ErrAdjustmentConflict
			}
			stored = old.Adjustment
			return nil
		}
		if err := putAdj(b.adj, &adjRecord{Adjustment: a}); err != nil {
			return err
		}
		stored, created = a, true
		if err := s.recordChanges(tx, a.Key, negativeProducts(nil, a.Lines)); err != nil {
			return err
		}
		return b.pending.Put(pendingKey(a.CreatedAt, a.ID), nil)
	})
	if errors.Is(err, inventory.ErrAdjustmentConflict) {
		return inventory.Adjustment{}, false, fmt.Errorf("boltstore: adjustment %s of %s: %w", a.ID, a.Key, err)
	}
	if err != nil {
		return inventory.Adjustment{}, false, fmt.Errorf("boltstore: submitting adjustment %s of %s: %w", a.ID, a.Key, err)
	}
	if created {
		s.adjFeed.Publish(a.Key)
	}
	return stored, created, nil
}

// GetAdjustment implements inventory.AdjustmentStore.
func (s *Store) GetAdjustment(ctx context.Context, key inventory.StoreKey, id string) (inventory.Adjustment, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Adjustment{}, false, err
	}
	var rec *adjRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := getAdjBuckets(tx, key, false)
		if err != nil || b == nil {
			return err
		}
		rec, err = getAdj(b.adj, id)
		return err
	})
	if err != nil {
		return inventory.Adjustment{}, false, fmt.Errorf("boltstore: reading adjustment %s of %s: %w", id, key, err)
	}
	if rec == nil {
		return inventory.Adjustment{}, false, nil
	}
	return rec.Adjustment, true, nil
}

// PendingDeltas implements inventory.AdjustmentStore.
func (s *Store) PendingDeltas(ctx context.Context, key inventory.StoreKey) (map[string]int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	sum := map[string]int64{}
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := getAdjBuckets(tx, key, false)
		if err != nil || b == nil {
			return err
		}
		add := func(id []byte) error {
			rec, err := getAdj(b.adj, string(id))
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("index names missing adjustment %q", id)
			}
			inventory.NegativeDeltas(sum, rec.Lines)
			return nil
		}
		if err := b.pending.ForEach(func(k, _ []byte) error { return add(k[8:]) }); err != nil {
			return err
		}
		return b.unreflected.ForEach(func(k, _ []byte) error { return add(k) })
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: summing pending adjustments of %s: %w", key, err)
	}
	for p, n := range sum {
		if n == 0 {
			delete(sum, p)
		}
	}
	return sum, nil
}

// PendingAdjustments implements inventory.AdjustmentStore.
func (s *Store) PendingAdjustments(ctx context.Context, key inventory.StoreKey) (int64, time.Time, error) {
	if err := s.check(ctx); err != nil {
		return 0, time.Time{}, err
	}
	var (
		n      int64
		oldest time.Time
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := getAdjBuckets(tx, key, false)
		if err != nil || b == nil {
			return err
		}
		n = int64(b.pending.Stats().KeyN)
		if k, _ := b.pending.Cursor().First(); k != nil {
			oldest = keyTime(k)
		}
		return nil
	})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("boltstore: counting pending adjustments of %s: %w", key, err)
	}
	return n, oldest, nil
}

// MarkAdjustmentsReflected implements inventory.AdjustmentStore.
func (s *Store) MarkAdjustmentsReflected(ctx context.Context, key inventory.StoreKey, pullStartedAt time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	marked := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		marked = 0
		b, err := getAdjBuckets(tx, key, false)
		if err != nil || b == nil {
			return err
		}
		if err := b.settledIndex(); err != nil {
			return err
		}
		var done [][]byte
		var reflected []string // products whose pending sum changes
		err = b.unreflected.ForEach(func(k, _ []byte) error {
			rec, err := getAdj(b.adj, string(k))
			if err != nil {
				return err
			}
			if rec != nil && !rec.AppliedAt.Before(pullStartedAt) {
				return nil
			}
			if rec != nil {
				reflected = negativeProducts(reflected, rec.Lines)
				rec.Reflected = true
				if err := putAdj(b.adj, rec); err != nil {
					return err
				}
				if since, ok := prunableSince(rec); ok {
					if err := b.settled.Put(pendingKey(since, rec.ID), nil); err != nil {
						return err
					}
				}
			}
			done = append(done, append([]byte(nil), k...))
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range done {
			if err := b.unreflected.Delete(k); err != nil {
				return err
			}
		}
		if err := s.recordChanges(tx, key, reflected); err != nil {
			return err
		}
		marked = len(done)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: marking adjustments of %s reflected: %w", key, err)
	}
	return marked, nil
}

// SubscribeAdjustments implements inventory.AdjustmentStore; one process
// owns the file, so an in-process feed sees every submission.
func (s *Store) SubscribeAdjustments(ctx context.Context) <-chan inventory.StoreKey {
	return s.adjFeed.Subscribe(ctx)
}

// StoresWithPendingAdjustments implements inventory.AdjustmentStore.
func (s *Store) StoresWithPendingAdjustments(ctx context.Context) ([]inventory.StoreKey, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var keys []inventory.StoreKey
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAdjustments).ForEachBucket(func(k []byte) error {
			root := tx.Bucket(bucketAdjustments).Bucket(k)
			p, o := root.Bucket(bucketPending), root.Bucket(bucketOpen)
			if nonEmpty(p) || nonEmpty(o) {
				keys = append(keys, parseStoreKeyBytes(k))
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: listing stores with pending adjustments: %w", err)
	}
	return keys, nil
}

// ReadyAdjustments implements inventory.AdjustmentStore.
func (s *Store) ReadyAdjustments(ctx context.Context, key inventory.StoreKey, limit int) ([]inventory.Adjustment, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []inventory.Adjustment
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := getAdjBuckets(tx, key, false)
		if err != nil || b == nil {
			return err
		}
		c := b.pending.Cursor()
		for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
			rec, err := getAdj(b.adj, string(k[8:]))
			if err != nil {
				return err
			}
			if rec == nil {
				return fmt.Errorf("index names missing adjustment %q", k[8:])
			}
			if rec.Attempt == "" {
				out = append(out, rec.Adjustment)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: reading ready adjustments of %s: %w", key, err)
	}
	return out, nil
}
