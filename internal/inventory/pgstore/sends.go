package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

type sendReq struct {
	rec  inventory.SendRecord
	done chan sendResult // buffered 1: the writer never waits for the caller
}

type sendResult struct {
	dup bool
	err error
}

// targetJSON is the stored form of a send's targets.
type targetJSON struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// RecordSend implements inventory.Store: the record goes to a group-commit
// writer, which takes it with the calls already waiting (up to
// GroupCommitMax records, and for GroupCommitWindow if one is set) into one
// transaction; the call returns after that transaction committed
// (synchronous_commit, so on disk).
func (s *Store) RecordSend(ctx context.Context, rec inventory.SendRecord) (bool, error) {
	if rec.ID == "" {
		return false, errors.New("pgstore: send record without an ID")
	}
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return false, inventory.ErrClosed
	}
	s.inflight.Add(1)
	s.closeMu.RUnlock()
	defer s.inflight.Done()

	if rec.ReceivedAt.IsZero() {
		rec.ReceivedAt = time.Now()
	}
	rec.ReceivedAt = inventory.NormalizeTime(rec.ReceivedAt)
	req := &sendReq{rec: rec, done: make(chan sendResult, 1)}
	select {
	case s.sendCh <- req:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	// Once handed over, the record may be committed whatever happens to
	// ctx; returning early would only hide the outcome.
	res := <-req.done
	if res.err != nil {
		return false, fmt.Errorf("pgstore: recording send %s: %w", rec.ID, res.err)
	}
	return res.dup, nil
}

func (s *Store) sendWriter() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var batch []*sendReq
		select {
		case r := <-s.sendCh:
			batch = append(batch, r)
		case <-s.stop:
			return
		}
		if s.opts.GroupCommitWindow > 0 {
			batch = s.gatherFor(batch, timer)
		}
		// Take the calls already waiting, without waiting for more.
	drain:
		for len(batch) < s.opts.GroupCommitMax {
			select {
			case r := <-s.sendCh:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.commitSends(batch)
	}
}

// gatherFor adds calls to batch for up to GroupCommitWindow.
func (s *Store) gatherFor(batch []*sendReq, timer *time.Timer) []*sendReq {
	timer.Reset(s.opts.GroupCommitWindow)
gather:
	for len(batch) < s.opts.GroupCommitMax {
		select {
		case r := <-s.sendCh:
			batch = append(batch, r)
		case <-timer.C:
			break gather
		}
	}
	if !timer.Stop() {
		select { // drain a fired timer so the next Reset starts clean
		case <-timer.C:
		default:
		}
	}
	return batch
}

// commitSends writes one group. IDs and store keys are written in sorted
// order so that concurrent groups lock rows in the same order and cannot
// deadlock each other; a deadlock or serialisation failure against other
// writers is retried.
func (s *Store) commitSends(batch []*sendReq) {
	first := map[string]*sendReq{}
	var unique []*sendReq
	for _, r := range batch {
		if _, seen := first[r.rec.ID]; !seen {
			first[r.rec.ID] = r
			unique = append(unique, r)
		}
	}
	sort.Slice(unique, func(i, j int) bool { return unique[i].rec.ID < unique[j].rec.ID })

	var fresh map[string]bool
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		fresh, err = s.insertSends(unique)
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			break
		}
	}
	for _, r := range batch {
		switch {
		case err != nil:
			r.done <- sendResult{err: err}
		case first[r.rec.ID] != r:
			r.done <- sendResult{dup: true} // same ID earlier in this group
		default:
			r.done <- sendResult{dup: !fresh[r.rec.ID]}
		}
	}
}

func (s *Store) insertSends(recs []*sendReq) (map[string]bool, error) {
	// The callers are waiting on this commit; it must not depend on any
	// one caller's context.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := len(recs)
	ids, nss, procs, targets := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	rowsN, received := make([]int32, n), make([]time.Time, n)
	for i, r := range recs {
		tj := make([]targetJSON, len(r.rec.Targets))
		for j, k := range r.rec.Targets {
			tj[j] = targetJSON{k.Namespace, k.Name}
		}
		b, err := json.Marshal(tj)
		if err != nil {
			return nil, err
		}
		ids[i], nss[i], procs[i], targets[i] = r.rec.ID, r.rec.Namespace, r.rec.ProcName, string(b)
		rowsN[i], received[i] = int32(r.rec.Rows), r.rec.ReceivedAt
	}
	fresh := map[string]bool{}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		clear(fresh)
		res, err := tx.Query(ctx, `
			INSERT INTO inventory_sends (id, namespace, proc_name, targets, rows, received_at)
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::int4[], $6::timestamptz[])
			ON CONFLICT (id) DO NOTHING
			RETURNING id`, ids, nss, procs, targets, rowsN, received)
		if err != nil {
			return err
		}
		for res.Next() {
			var id string
			if err := res.Scan(&id); err != nil {
				res.Close()
				return err
			}
			fresh[id] = true
		}
		if err := res.Err(); err != nil {
			return err
		}
		keys := map[inventory.StoreKey]bool{}
		for _, r := range recs {
			if fresh[r.rec.ID] {
				for _, k := range r.rec.Targets {
					keys[k] = true
				}
			}
		}
		if len(keys) == 0 {
			return nil
		}
		var kns, knames, payloads []string
		for k := range keys {
			kns, knames = append(kns, k.Namespace), append(knames, k.Name)
		}
		sort.Sort(keySorter{kns, knames})
		for i := range kns {
			payloads = append(payloads, kns[i]+"/"+knames[i])
		}
		b := &pgx.Batch{}
		b.Queue(`
			INSERT INTO inventory_dirty (namespace, name, seq)
			SELECT ns, n, nextval('inventory_dirty_seq') FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(ns, n, o)
			ORDER BY o
			ON CONFLICT (namespace, name) DO UPDATE SET seq = EXCLUDED.seq`, kns, knames)
		// NOTIFY is transactional: delivered on commit, never for a
		// rolled-back send.
		b.Queue(`SELECT pg_notify('`+notifyChannel+`', p) FROM unnest($1::text[]) AS p`, payloads)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return nil, err
	}
	return fresh, nil
}

type keySorter struct{ ns, names []string }

func (k keySorter) Len() int { return len(k.ns) }
func (k keySorter) Less(i, j int) bool {
	if k.ns[i] != k.ns[j] {
		return k.ns[i] < k.ns[j]
	}
	return k.names[i] < k.names[j]
}
func (k keySorter) Swap(i, j int) {
	k.ns[i], k.ns[j] = k.ns[j], k.ns[i]
	k.names[i], k.names[j] = k.names[j], k.names[i]
}

// RecentSends implements inventory.Store.
func (s *Store) RecentSends(ctx context.Context, limit int) ([]inventory.SendRecord, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	res, err := s.pool.Query(ctx, `
		SELECT id, namespace, proc_name, targets, rows, received_at
		FROM inventory_sends ORDER BY received_at DESC, id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing recent sends: %w", err)
	}
	out, err := pgx.CollectRows(res, func(r pgx.CollectableRow) (inventory.SendRecord, error) {
		var (
			rec     inventory.SendRecord
			targets []targetJSON
			rows    int32
		)
		if err := r.Scan(&rec.ID, &rec.Namespace, &rec.ProcName, &targets, &rows, &rec.ReceivedAt); err != nil {
			return rec, err
		}
		rec.Rows, rec.ReceivedAt = int(rows), rec.ReceivedAt.UTC()
		for _, t := range targets {
			rec.Targets = append(rec.Targets, inventory.StoreKey{Namespace: t.Namespace, Name: t.Name})
		}
		return rec, nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing recent sends: %w", err)
	}
	return out, nil
}

func (s *Store) janitor() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.PruneEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// A failed prune is retried on the next tick; the trail just
			// stays a little longer.
			_, _ = s.Prune(time.Now())
		}
	}
}

// Prune deletes send records older than the retention before now and the
// oldest beyond MaxSends, returning how many. Every replica's janitor runs it;
// that is harmless.
func (s *Store) Prune(now time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old, err := s.pool.Exec(ctx, `DELETE FROM inventory_sends WHERE received_at < $1`, now.Add(-s.opts.SendRetention))
	if err != nil {
		return 0, fmt.Errorf("pgstore: pruning send records: %w", err)
	}
	over, err := s.pool.Exec(ctx, `
		DELETE FROM inventory_sends WHERE received_at < (
			SELECT received_at FROM inventory_sends ORDER BY received_at DESC OFFSET $1 LIMIT 1)`, s.opts.MaxSends)
	if err != nil {
		return 0, fmt.Errorf("pgstore: pruning send records: %w", err)
	}
	return int(old.RowsAffected() + over.RowsAffected()), nil
}
