package boltstore

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

// timeKey orders records by ReceivedAt (sign bit flipped so that times before
// 1970 still sort first) and makes the key unique with the ID.
func timeKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano())^(1<<63))
	return append(k, id...)
}

// RecordSend implements inventory.Store. Concurrent callers share one
// fsync'd transaction (groupCommitter: at once when idle, grouped while a
// commit is under way); each caller returns after that commit.
func (s *Store) RecordSend(ctx context.Context, rec inventory.SendRecord) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if rec.ID == "" {
		return false, errors.New("boltstore: send record without an ID")
	}
	if rec.ReceivedAt.IsZero() {
		rec.ReceivedAt = time.Now()
	}
	rec.ReceivedAt = inventory.NormalizeTime(rec.ReceivedAt)
	val, err := json.Marshal(rec)
	if err != nil {
		return false, fmt.Errorf("boltstore: encoding send %s: %w", rec.ID, err)
	}
	id := []byte(rec.ID)
	dup := false
	// The group commit may run the function more than once (it retries it
	// alone if another function in the group fails), so it sets dup from
	// scratch.
	err = s.group.update(func(tx *bolt.Tx) error {
		dup = false
		sends := tx.Bucket(bucketSends)
		if sends.Get(id) != nil {
			dup = true
			return nil
		}
		if err := sends.Put(id, val); err != nil {
			return err
		}
		byTime := tx.Bucket(bucketSendsByTime)
		if err := byTime.Put(timeKey(rec.ReceivedAt, rec.ID), nil); err != nil {
			return err
		}
		if err := byTime.SetSequence(byTime.Sequence() + 1); err != nil {
			return err
		}
		dirty := tx.Bucket(bucketDirty)
		for _, k := range rec.Targets {
			seq, err := dirty.NextSequence()
			if err != nil {
				return err
			}
			if err := dirty.Put(storeKeyBytes(k), u64(seq)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("boltstore: recording send %s: %w", rec.ID, err)
	}
	if !dup {
		s.feed.Publish(rec.Targets...)
		s.maybePrune()
	}
	return dup, nil
}

// maybePrune starts a background prune if the last one is PruneEvery old,
// so that retention costs nothing on the RecordSend path.
func (s *Store) maybePrune() {
	last := s.lastPrune.Load()
	if time.Since(time.Unix(0, last)) < s.opts.PruneEvery || !s.lastPrune.CompareAndSwap(last, time.Now().UnixNano()) {
		return
	}
	if !s.pruning.CompareAndSwap(false, true) {
		return
	}
	s.pruneWG.Add(1)
	go func() {
		defer s.pruneWG.Done()
		defer s.pruning.Store(false)
		_, _ = s.Prune(time.Now())
	}()
}

// pruneChunk bounds one prune transaction so it never holds the writer long.
const pruneChunk = 5000

// Prune deletes send records older than the retention before now, and the
// oldest beyond MaxSends. It returns how many it deleted. It runs by itself
// from RecordSend; tests call it directly.
func (s *Store) Prune(now time.Time) (int, error) {
	cutoff := now.Add(-s.opts.SendRetention)
	total := 0
	for {
		if s.closed.Load() {
			return total, inventory.ErrClosed
		}
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
			n = 0
			byTime := tx.Bucket(bucketSendsByTime)
			sends := tx.Bucket(bucketSends)
			count := byTime.Sequence()
			var victims [][]byte
			c := byTime.Cursor()
			for k, _ := c.First(); k != nil && len(victims) < pruneChunk; k, _ = c.Next() {
				ts := time.Unix(0, int64(binary.BigEndian.Uint64(k)^(1<<63)))
				if !ts.Before(cutoff) && count-uint64(len(victims)) <= uint64(s.opts.MaxSends) {
					break
				}
				victims = append(victims, append([]byte(nil), k...))
			}
			for _, k := range victims {
				if err := byTime.Delete(k); err != nil {
					return err
				}
				if err := sends.Delete(k[8:]); err != nil {
					return err
				}
			}
			n = len(victims)
			return byTime.SetSequence(count - uint64(n))
		})
		if err != nil {
			return total, fmt.Errorf("boltstore: pruning send records: %w", err)
		}
		total += n
		if n < pruneChunk {
			return total, nil
		}
	}
}

// RecentSends implements inventory.Store.
func (s *Store) RecentSends(ctx context.Context, limit int) ([]inventory.SendRecord, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []inventory.SendRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		sends := tx.Bucket(bucketSends)
		c := tx.Bucket(bucketSendsByTime).Cursor()
		for k, _ := c.Last(); k != nil && len(out) < limit; k, _ = c.Prev() {
			v := sends.Get(k[8:])
			if v == nil {
				continue
			}
			var rec inventory.SendRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decoding send %q: %w", k[8:], err)
			}
			out = append(out, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: listing recent sends: %w", err)
	}
	return out, nil
}
