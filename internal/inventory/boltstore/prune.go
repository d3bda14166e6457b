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
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

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
