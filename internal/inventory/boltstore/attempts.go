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
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

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
