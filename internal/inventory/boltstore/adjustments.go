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
	"sort"
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

// BeginAttempt implements inventory.AdjustmentStore.
func (s *Store) BeginAttempt(ctx context.Context, at inventory.Attempt) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if at.ID == "" || len(at.AdjustmentIDs) == 0 {
		return fmt.Errorf("boltstore: attempt without an ID or adjustments")
	}
	at.State, at.FinishedAt, at.Claims = inventory.AttemptOpen, time.Time{}, nil
	at.StartedAt = inventory.NormalizeTime(at.StartedAt)
	at.RequestDeadline = inventory.NormalizeTime(at.RequestDeadline)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := getAdjBuckets(tx, at.Key, true)
		if err != nil {
			return err
		}
		if b.attempts.Get([]byte(at.ID)) != nil {
			return fmt.Errorf("attempt ID %s taken: %w", at.ID, inventory.ErrAttemptConflict)
		}
		// The fence is for attempts that send rows (inventory.Attempt).
		if k, _ := b.open.Cursor().First(); k != nil && len(at.Rows) > 0 {
			return fmt.Errorf("attempt %s is open: %w", k, inventory.ErrAttemptOpen)
		}
		for _, id := range at.AdjustmentIDs {
			rec, err := getAdj(b.adj, id)
			if err != nil {
				return err
			}
			if rec == nil || rec.State != inventory.AdjustmentPending || rec.Attempt != "" {
				return fmt.Errorf("adjustment %s is not ready: %w", id, inventory.ErrAttemptConflict)
			}
			rec.Attempt = at.ID
			if err := putAdj(b.adj, rec); err != nil {
				return err
			}
		}
		if err := putAttempt(b.attempts, &at); err != nil {
			return err
		}
		return b.open.Put([]byte(at.ID), nil)
	})
	if err != nil {
		return fmt.Errorf("boltstore: recording attempt %s of %s: %w", at.ID, at.Key, err)
	}
	return nil
}

// OpenAttempts implements inventory.AdjustmentStore.
func (s *Store) OpenAttempts(ctx context.Context, key inventory.StoreKey) ([]inventory.Attempt, error) {
	return s.attemptsWhere(ctx, key, true, func(*inventory.Attempt) bool { return true })
}

// AppliedAttempts implements inventory.AdjustmentStore.
func (s *Store) AppliedAttempts(ctx context.Context, key inventory.StoreKey, since time.Time) ([]inventory.Attempt, error) {
	return s.attemptsWhere(ctx, key, false, func(a *inventory.Attempt) bool {
		return a.State == inventory.AttemptApplied && !a.FinishedAt.Before(since)
	})
}

func (s *Store) attemptsWhere(ctx context.Context, key inventory.StoreKey, openOnly bool, keep func(*inventory.Attempt) bool) ([]inventory.Attempt, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []inventory.Attempt
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := getAdjBuckets(tx, key, false)
		if err != nil || b == nil {
			return err
		}
		visit := func(id []byte) error {
			a, err := getAttempt(b.attempts, id)
			if err != nil {
				return err
			}
			if a != nil && keep(a) {
				out = append(out, *a)
			}
			return nil
		}
		if openOnly {
			return b.open.ForEach(func(k, _ []byte) error { return visit(k) })
		}
		return b.attempts.ForEach(func(k, _ []byte) error { return visit(k) })
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: reading attempts of %s: %w", key, err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartedAt.Before(out[j].StartedAt) })
	return out, nil
}

// FinishAttempt implements inventory.AdjustmentStore.
func (s *Store) FinishAttempt(ctx context.Context, key inventory.StoreKey, attemptID string, res inventory.AttemptResult) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	at := inventory.NormalizeTime(res.At)
	if at.IsZero() {
		at = inventory.NormalizeTime(time.Now())
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := getAdjBuckets(tx, key, false)
		if err != nil {
			return err
		}
		if b == nil {
			return fmt.Errorf("no attempts for the store: %w", inventory.ErrAttemptConflict)
		}
		a, err := getAttempt(b.attempts, []byte(attemptID))
		if err != nil {
			return err
		}
		if a == nil || a.State != inventory.AttemptOpen {
			return fmt.Errorf("attempt %s is not open: %w", attemptID, inventory.ErrAttemptConflict)
		}
		if err := b.settledIndex(); err != nil {
			return err
		}
		mine := make(map[string]bool, len(a.AdjustmentIDs))
		for _, id := range a.AdjustmentIDs {
			mine[id] = true
		}
		var uncounted []string // products whose pending sum drops a failed adjustment
		for id := range res.Failed {
			if !mine[id] || res.Applied {
				return fmt.Errorf("cannot fail adjustment %s with attempt %s: %w", id, attemptID, inventory.ErrAttemptConflict)
			}
		}
		for _, id := range a.AdjustmentIDs {
			rec, err := getAdj(b.adj, id)
			if err != nil {
				return err
			}
			if rec == nil {
				continue // the adjustment was deleted with its store
			}
			rec.Attempt = ""
			reason, failed := res.Failed[id]
			switch {
			case res.Applied:
				rec.State, rec.AppliedAt = inventory.AdjustmentApplied, at
				if err := b.unreflected.Put([]byte(id), nil); err != nil {
					return err
				}
			case failed:
				rec.State, rec.FailureReason = inventory.AdjustmentFailed, reason
				uncounted = negativeProducts(uncounted, rec.Lines)
			}
			if rec.State != inventory.AdjustmentPending {
				if err := b.pending.Delete(pendingKey(rec.CreatedAt, id)); err != nil {
					return err
				}
			}
			if err := putAdj(b.adj, rec); err != nil {
				return err
			}
			if since, ok := prunableSince(rec); ok {
				if err := b.settled.Put(pendingKey(since, id), nil); err != nil {
					return err
				}
			}
		}
		a.State, a.FinishedAt = inventory.AttemptVoid, at
		if res.Applied {
			a.State = inventory.AttemptApplied
			a.Claims = append(a.Claims, res.Claims...)
		}
		if err := putAttempt(b.attempts, a); err != nil {
			return err
		}
		if err := b.open.Delete([]byte(attemptID)); err != nil {
			return err
		}
		if err := s.recordChanges(tx, key, uncounted); err != nil {
			return err
		}
		for id, claims := range res.EarlierClaims {
			e, err := getAttempt(b.attempts, []byte(id))
			if err != nil {
				return err
			}
			if e == nil || e.State != inventory.AttemptApplied {
				continue
			}
			e.Claims = appendNew(e.Claims, claims)
			if err := putAttempt(b.attempts, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: finishing attempt %s of %s: %w", attemptID, key, err)
	}
	return nil
}

func nonEmpty(b *bolt.Bucket) bool {
	if b == nil {
		return false
	}
	k, _ := b.Cursor().First()
	return k != nil
}

func appendNew(have, add []string) []string {
	seen := make(map[string]bool, len(have))
	for _, h := range have {
		seen[h] = true
	}
	for _, a := range add {
		if !seen[a] {
			seen[a] = true
			have = append(have, a)
		}
	}
	return have
}

// PruneAttempts implements inventory.AdjustmentStore.
func (s *Store) PruneAttempts(ctx context.Context, key inventory.StoreKey, cutoff time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.Update(func(tx *bolt.Tx) error {
		n = 0
		b, err := getAdjBuckets(tx, key, false)
		if err != nil || b == nil {
			return err
		}
		var del [][]byte
		err = b.attempts.ForEach(func(k, _ []byte) error {
			a, err := getAttempt(b.attempts, k)
			if err != nil {
				return err
			}
			if a.State != inventory.AttemptOpen && a.FinishedAt.Before(cutoff) {
				del = append(del, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range del {
			if err := b.attempts.Delete(k); err != nil {
				return err
			}
		}
		n = len(del)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: pruning attempts of %s: %w", key, err)
	}
	return n, nil
}

// PruneAdjustments implements inventory.AdjustmentStore. It walks the
// settled index oldest first and stops at cutoff; when nothing is due it
// commits no write transaction (no fsync).
func (s *Store) PruneAdjustments(ctx context.Context, key inventory.StoreKey, cutoff time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	cutoff = inventory.NormalizeTime(cutoff)
	due := func(k []byte) bool { return k != nil && keyTime(k).Before(cutoff) }
	total := 0
	for {
		var work bool
		err := s.db.View(func(tx *bolt.Tx) error {
			b, err := getAdjBuckets(tx, key, false)
			if err != nil || b == nil {
				return err
			}
			if b.settled == nil {
				work = true // an older file: the index is built below
				return nil
			}
			k, _ := b.settled.Cursor().First()
			work = due(k)
			return nil
		})
		if err != nil || !work {
			if err != nil {
				err = fmt.Errorf("boltstore: pruning adjustments of %s: %w", key, err)
			}
			return total, err
		}
		n, full := 0, false
		err = s.db.Update(func(tx *bolt.Tx) error {
			n, full = 0, false
			b, err := getAdjBuckets(tx, key, false)
			if err != nil || b == nil {
				return err
			}
			if err := b.settledIndex(); err != nil {
				return err
			}
			var drop [][]byte
			c := b.settled.Cursor()
			for k, _ := c.First(); due(k); k, _ = c.Next() {
				if len(drop) == pruneBatch {
					full = true
					break
				}
				drop = append(drop, append([]byte(nil), k...))
			}
			for _, k := range drop {
				id := k[8:]
				rec, err := getAdj(b.adj, string(id))
				if err != nil {
					return err
				}
				// The index entry is stale if the record is gone (or, which
				// should never happen, is no longer prunable): drop only it.
				if rec != nil {
					if since, ok := prunableSince(rec); ok && since.Before(cutoff) {
						if err := b.adj.Delete(id); err != nil {
							return err
						}
						n++
					}
				}
				if err := b.settled.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("boltstore: pruning adjustments of %s: %w", key, err)
		}
		total += n
		if !full {
			return total, nil
		}
	}
}
