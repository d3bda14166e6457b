package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// adjustmentsChannel carries "<namespace>/<name>" of each store that got a
// new adjustment, so that the leader's pusher wakes whichever replica
// accepted the request.
const adjustmentsChannel = "smaregi_inventory_adjustments"

var _ inventory.AdjustmentStore = (*Store)(nil)

// lineJSON is the stored form of an adjustment line or an attempt row.
type lineJSON struct {
	ProductID string `json:"p"`
	Quantity  int64  `json:"q"`
}

func encodeLines(lines []inventory.AdjustmentLine) ([]byte, error) {
	out := make([]lineJSON, len(lines))
	for i, l := range lines {
		out[i] = lineJSON{l.ProductID, l.Quantity}
	}
	return json.Marshal(out)
}

func decodeLines(b []byte) ([]inventory.AdjustmentLine, error) {
	var in []lineJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, err
	}
	out := make([]inventory.AdjustmentLine, len(in))
	for i, l := range in {
		out[i] = inventory.AdjustmentLine{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	return out, nil
}

const adjColumns = `a.id, a.reason, a.lines, a.fingerprint, a.state, a.created_at, a.applied_at, a.failure_reason,
	(a.state = 'pending' AND a.attempt_id IS NOT NULL)`

func scanAdjustment(row pgx.Row, key inventory.StoreKey) (inventory.Adjustment, error) {
	a := inventory.Adjustment{Key: key}
	var (
		lines   []byte
		state   string
		applied *time.Time
	)
	if err := row.Scan(&a.ID, &a.Reason, &lines, &a.Fingerprint, &state, &a.CreatedAt, &applied, &a.FailureReason, &a.AwaitingConfirmation); err != nil {
		return a, err
	}
	var err error
	if a.Lines, err = decodeLines(lines); err != nil {
		return a, fmt.Errorf("decoding lines of adjustment %q: %w", a.ID, err)
	}
	a.State = inventory.AdjustmentState(state)
	a.CreatedAt = a.CreatedAt.UTC()
	a.AppliedAt = fromNull(applied)
	return a, nil
}

// SubmitAdjustment implements inventory.AdjustmentStore. The NOTIFY goes out
// with the commit, so every replica's SubscribeAdjustments hears of it only
// once it is durable.
func (s *Store) SubmitAdjustment(ctx context.Context, a inventory.Adjustment) (inventory.Adjustment, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Adjustment{}, false, err
	}
	a, err := inventory.NormalizeAdjustment(a, time.Now())
	if err != nil {
		return inventory.Adjustment{}, false, err
	}
	lines, err := encodeLines(a.Lines)
	if err != nil {
		return inventory.Adjustment{}, false, fmt.Errorf("pgstore: encoding adjustment %s: %w", a.ID, err)
	}
	var (
		stored  inventory.Adjustment
		created bool
	)
	err = inRetriedTx(ctx, s.pool, func(tx pgx.Tx) error {
		created = false
		storeID, err := storeIDFor(ctx, tx, a.Key)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO inventory_adjustments (store_id, id, reason, lines, fingerprint, state, created_at)
			VALUES ($1, $2, $3, $4, $5, 'pending', $6)
			ON CONFLICT (store_id, id) DO NOTHING`,
			storeID, a.ID, a.Reason, lines, a.Fingerprint, a.CreatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			stored, created = a, true
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, $2)`, adjustmentsChannel, a.Key.String())
			return err
		}
		// ON CONFLICT waited for a concurrent insert of the same ID to
		// commit, so the row is visible now.
		stored, err = scanAdjustment(tx.QueryRow(ctx, `SELECT `+adjColumns+`
			FROM inventory_adjustments a WHERE a.store_id = $1 AND a.id = $2`, storeID, a.ID), a.Key)
		if err != nil {
			return err
		}
		if stored.Fingerprint != a.Fingerprint {
			return inventory.ErrAdjustmentConflict
		}
		return nil
	})
	if errors.Is(err, inventory.ErrAdjustmentConflict) {
		return inventory.Adjustment{}, false, fmt.Errorf("pgstore: adjustment %s of %s: %w", a.ID, a.Key, err)
	}
	if err != nil {
		return inventory.Adjustment{}, false, fmt.Errorf("pgstore: submitting adjustment %s of %s: %w", a.ID, a.Key, err)
	}
	return stored, created, nil
}

// storeIDFor returns the store's row ID, creating the row. Unlike
// upsertStore it does not lock the row when it exists, so submissions do not
// queue behind a long pull of the same store.
func storeIDFor(ctx context.Context, tx pgx.Tx, key inventory.StoreKey) (int64, error) {
	var id int64
	err := tx.QueryRow(ctx, `SELECT id FROM inventory_stores WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return 0, err
	}
	id, _, err = upsertStore(ctx, tx, key)
	return id, err
}

const storeMatch = `store_id = (SELECT id FROM inventory_stores WHERE namespace = $1 AND name = $2)`

// GetAdjustment implements inventory.AdjustmentStore.
func (s *Store) GetAdjustment(ctx context.Context, key inventory.StoreKey, id string) (inventory.Adjustment, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Adjustment{}, false, err
	}
	a, err := scanAdjustment(s.pool.QueryRow(ctx, `SELECT `+adjColumns+`
		FROM inventory_adjustments a WHERE a.`+storeMatch+` AND a.id = $3`, key.Namespace, key.Name, id), key)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Adjustment{}, false, nil
	}
	if err != nil {
		return inventory.Adjustment{}, false, fmt.Errorf("pgstore: reading adjustment %s of %s: %w", id, key, err)
	}
	return a, true, nil
}

// PendingDeltas implements inventory.AdjustmentStore.
func (s *Store) PendingDeltas(ctx context.Context, key inventory.StoreKey) (map[string]int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	res, err := s.pool.Query(ctx, `
		SELECT l->>'p', sum((l->>'q')::bigint)
		FROM inventory_adjustments a, jsonb_array_elements(a.lines) l
		WHERE a.`+storeMatch+`
		  AND (a.state = 'pending' OR (a.state = 'applied' AND NOT a.reflected))
		  AND (l->>'q')::bigint < 0
		GROUP BY 1`, key.Namespace, key.Name)
	if err != nil {
		return nil, fmt.Errorf("pgstore: summing pending adjustments of %s: %w", key, err)
	}
	defer res.Close()
	sum := map[string]int64{}
	for res.Next() {
		var (
			p string
			n int64
		)
		if err := res.Scan(&p, &n); err != nil {
			return nil, fmt.Errorf("pgstore: summing pending adjustments of %s: %w", key, err)
		}
		sum[p] = n
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: summing pending adjustments of %s: %w", key, err)
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
		oldest *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM inventory_adjustments
		WHERE `+storeMatch+` AND state = 'pending'`, key.Namespace, key.Name).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("pgstore: counting pending adjustments of %s: %w", key, err)
	}
	return n, fromNull(oldest), nil
}

// MarkAdjustmentsReflected implements inventory.AdjustmentStore.
func (s *Store) MarkAdjustmentsReflected(ctx context.Context, key inventory.StoreKey, pullStartedAt time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `UPDATE inventory_adjustments SET reflected = true
		WHERE `+storeMatch+` AND state = 'applied' AND NOT reflected AND applied_at < $3`,
		key.Namespace, key.Name, inventory.NormalizeTime(pullStartedAt))
	if err != nil {
		return 0, fmt.Errorf("pgstore: marking adjustments of %s reflected: %w", key, err)
	}
	return int(tag.RowsAffected()), nil
}

// SubscribeAdjustments implements inventory.AdjustmentStore; the same LISTEN
// connection as Subscribe serves it.
func (s *Store) SubscribeAdjustments(ctx context.Context) <-chan inventory.StoreKey {
	ch := s.adjFeed.Subscribe(ctx)
	s.startListening(ctx)
	return ch
}

// StoresWithPendingAdjustments implements inventory.AdjustmentStore.
func (s *Store) StoresWithPendingAdjustments(ctx context.Context) ([]inventory.StoreKey, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	res, err := s.pool.Query(ctx, `
		SELECT s.namespace, s.name FROM inventory_stores s
		WHERE EXISTS (SELECT 1 FROM inventory_adjustments a WHERE a.store_id = s.id AND a.state = 'pending')
		   OR EXISTS (SELECT 1 FROM inventory_attempts t WHERE t.store_id = s.id AND t.state = 'open')
		ORDER BY 1, 2`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing stores with pending adjustments: %w", err)
	}
	keys, err := pgx.CollectRows(res, func(r pgx.CollectableRow) (inventory.StoreKey, error) {
		var k inventory.StoreKey
		return k, r.Scan(&k.Namespace, &k.Name)
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing stores with pending adjustments: %w", err)
	}
	return keys, nil
}

// ReadyAdjustments implements inventory.AdjustmentStore.
func (s *Store) ReadyAdjustments(ctx context.Context, key inventory.StoreKey, limit int) ([]inventory.Adjustment, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	res, err := s.pool.Query(ctx, `SELECT `+adjColumns+` FROM inventory_adjustments a
		WHERE a.`+storeMatch+` AND a.state = 'pending' AND a.attempt_id IS NULL
		ORDER BY a.created_at, a.id LIMIT $3`, key.Namespace, key.Name, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading ready adjustments of %s: %w", key, err)
	}
	out, err := pgx.CollectRows(res, func(r pgx.CollectableRow) (inventory.Adjustment, error) { return scanAdjustment(r, key) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading ready adjustments of %s: %w", key, err)
	}
	return out, nil
}

func encodeRows(rows []inventory.AttemptRow) ([]byte, error) {
	out := make([]lineJSON, len(rows))
	for i, r := range rows {
		out[i] = lineJSON{r.ProductID, r.Amount}
	}
	return json.Marshal(out)
}

// BeginAttempt implements inventory.AdjustmentStore.
func (s *Store) BeginAttempt(ctx context.Context, at inventory.Attempt) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if at.ID == "" || len(at.AdjustmentIDs) == 0 {
		return errors.New("pgstore: attempt without an ID or adjustments")
	}
	rows, err := encodeRows(at.Rows)
	if err != nil {
		return fmt.Errorf("pgstore: encoding attempt %s: %w", at.ID, err)
	}
	err = inRetriedTx(ctx, s.pool, func(tx pgx.Tx) error {
		storeID, err := storeIDFor(ctx, tx, at.Key)
		if err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `
			INSERT INTO inventory_attempts (store_id, id, adjustment_ids, rows, started_at, state, request_deadline, leader)
			VALUES ($1, $2, $3, $4, $5, 'open', $6, $7) ON CONFLICT (store_id, id) DO NOTHING`,
			storeID, at.ID, at.AdjustmentIDs, rows, inventory.NormalizeTime(at.StartedAt), nullTime(at.RequestDeadline), at.Leader)
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "inventory_attempts_one_open" {
			return fmt.Errorf("attempt %s: %w", at.ID, inventory.ErrAttemptOpen)
		}
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("attempt ID %s taken: %w", at.ID, inventory.ErrAttemptConflict)
		}
		tag, err = tx.Exec(ctx, `UPDATE inventory_adjustments SET attempt_id = $2
			WHERE store_id = $1 AND id = ANY($3) AND state = 'pending' AND attempt_id IS NULL`,
			storeID, at.ID, at.AdjustmentIDs)
		if err != nil {
			return err
		}
		if int(tag.RowsAffected()) != len(at.AdjustmentIDs) {
			return fmt.Errorf("some of the attempt's %d adjustments are not ready: %w", len(at.AdjustmentIDs), inventory.ErrAttemptConflict)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: recording attempt %s of %s: %w", at.ID, at.Key, err)
	}
	return nil
}

const attemptColumns = `id, adjustment_ids, rows, started_at, finished_at, state, claims, request_deadline, leader`

func scanAttempt(r pgx.CollectableRow, key inventory.StoreKey) (inventory.Attempt, error) {
	a := inventory.Attempt{Key: key}
	var (
		rows     []byte
		finished *time.Time
		state    string
		deadline *time.Time
	)
	if err := r.Scan(&a.ID, &a.AdjustmentIDs, &rows, &a.StartedAt, &finished, &state, &a.Claims, &deadline, &a.Leader); err != nil {
		return a, err
	}
	var in []lineJSON
	if err := json.Unmarshal(rows, &in); err != nil {
		return a, fmt.Errorf("decoding rows of attempt %q: %w", a.ID, err)
	}
	a.Rows = make([]inventory.AttemptRow, len(in))
	for i, l := range in {
		a.Rows[i] = inventory.AttemptRow{ProductID: l.ProductID, Amount: l.Quantity}
	}
	a.StartedAt, a.FinishedAt, a.State = a.StartedAt.UTC(), fromNull(finished), inventory.AttemptState(state)
	a.RequestDeadline = fromNull(deadline)
	if len(a.Claims) == 0 {
		a.Claims = nil
	}
	return a, nil
}

func (s *Store) queryAttempts(ctx context.Context, key inventory.StoreKey, where string, args ...any) ([]inventory.Attempt, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	res, err := s.pool.Query(ctx, `SELECT `+attemptColumns+` FROM inventory_attempts
		WHERE `+storeMatch+` AND `+where+` ORDER BY started_at, id`, append([]any{key.Namespace, key.Name}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading attempts of %s: %w", key, err)
	}
	out, err := pgx.CollectRows(res, func(r pgx.CollectableRow) (inventory.Attempt, error) { return scanAttempt(r, key) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading attempts of %s: %w", key, err)
	}
	return out, nil
}

// OpenAttempts implements inventory.AdjustmentStore.
func (s *Store) OpenAttempts(ctx context.Context, key inventory.StoreKey) ([]inventory.Attempt, error) {
	return s.queryAttempts(ctx, key, `state = 'open'`)
}

// AppliedAttempts implements inventory.AdjustmentStore.
func (s *Store) AppliedAttempts(ctx context.Context, key inventory.StoreKey, since time.Time) ([]inventory.Attempt, error) {
	return s.queryAttempts(ctx, key, `state = 'applied' AND finished_at >= $3`, inventory.NormalizeTime(since))
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
	err := inRetriedTx(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			storeID int64
			adjIDs  []string
		)
		err := tx.QueryRow(ctx, `SELECT store_id, adjustment_ids FROM inventory_attempts
			WHERE `+storeMatch+` AND id = $3 AND state = 'open' FOR UPDATE`,
			key.Namespace, key.Name, attemptID).Scan(&storeID, &adjIDs)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("attempt %s is not open: %w", attemptID, inventory.ErrAttemptConflict)
		}
		if err != nil {
			return err
		}
		mine := make(map[string]bool, len(adjIDs))
		for _, id := range adjIDs {
			mine[id] = true
		}
		failIDs := make([]string, 0, len(res.Failed))
		reasons := make([]string, 0, len(res.Failed))
		for id, why := range res.Failed {
			if !mine[id] || res.Applied {
				return fmt.Errorf("cannot fail adjustment %s with attempt %s: %w", id, attemptID, inventory.ErrAttemptConflict)
			}
			failIDs, reasons = append(failIDs, id), append(reasons, why)
		}
		state := inventory.AttemptVoid
		if res.Applied {
			state = inventory.AttemptApplied
			if _, err := tx.Exec(ctx, `UPDATE inventory_adjustments SET state = 'applied', applied_at = $3, attempt_id = NULL
				WHERE store_id = $1 AND attempt_id = $2`, storeID, attemptID, at); err != nil {
				return err
			}
		} else {
			if len(failIDs) > 0 {
				if _, err := tx.Exec(ctx, `UPDATE inventory_adjustments a SET state = 'failed', failure_reason = f.why, attempt_id = NULL
					FROM unnest($3::text[], $4::text[]) AS f(id, why)
					WHERE a.store_id = $1 AND a.attempt_id = $2 AND a.id = f.id`, storeID, attemptID, failIDs, reasons); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE inventory_adjustments SET attempt_id = NULL
				WHERE store_id = $1 AND attempt_id = $2`, storeID, attemptID); err != nil {
				return err
			}
		}
		claims := res.Claims
		if !res.Applied || claims == nil {
			claims = []string{}
		}
		if _, err := tx.Exec(ctx, `UPDATE inventory_attempts SET state = $3, finished_at = $4, claims = claims || $5
			WHERE store_id = $1 AND id = $2`, storeID, attemptID, string(state), at, claims); err != nil {
			return err
		}
		for id, more := range res.EarlierClaims {
			if _, err := tx.Exec(ctx, `UPDATE inventory_attempts
				SET claims = claims || ARRAY(SELECT unnest($3::text[]) EXCEPT SELECT unnest(claims))
				WHERE store_id = $1 AND id = $2 AND state = 'applied'`, storeID, id, more); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: finishing attempt %s of %s: %w", attemptID, key, err)
	}
	return nil
}

// PruneAttempts implements inventory.AdjustmentStore.
func (s *Store) PruneAttempts(ctx context.Context, key inventory.StoreKey, cutoff time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM inventory_attempts WHERE `+storeMatch+` AND state <> 'open' AND finished_at < $3`,
		key.Namespace, key.Name, inventory.NormalizeTime(cutoff))
	if err != nil {
		return 0, fmt.Errorf("pgstore: pruning attempts of %s: %w", key, err)
	}
	return int(tag.RowsAffected()), nil
}

// pruneBatch bounds the rows one PruneAdjustments statement deletes per
// kind, so that a large backlog is deleted in short transactions.
const pruneBatch = 1000

// pruneAdjustmentsSQL deletes up to $3 of each kind of prunable adjustment
// of store $1 older than $2, oldest first. Each kind is found through its
// partial index (migration 3) and the rows are deleted by primary key, so
// the statement reads only what it deletes. The outer conditions repeat the
// inner ones so that a row changed meanwhile is never deleted.
const pruneAdjustmentsSQL = `
	DELETE FROM inventory_adjustments
	WHERE store_id = $1 AND id = ANY (ARRAY(
		(SELECT id FROM inventory_adjustments
		 WHERE store_id = $1 AND state = 'applied' AND reflected AND applied_at < $2
		 ORDER BY applied_at LIMIT $3)
		UNION ALL
		(SELECT id FROM inventory_adjustments
		 WHERE store_id = $1 AND state = 'failed' AND created_at < $2
		 ORDER BY created_at LIMIT $3)))
	  AND attempt_id IS NULL
	  AND ((state = 'applied' AND reflected AND applied_at < $2)
	       OR (state = 'failed' AND created_at < $2))`

// PruneAdjustments implements inventory.AdjustmentStore.
func (s *Store) PruneAdjustments(ctx context.Context, key inventory.StoreKey, cutoff time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var storeID int64
	err := s.pool.QueryRow(ctx, `SELECT id FROM inventory_stores WHERE namespace = $1 AND name = $2`,
		key.Namespace, key.Name).Scan(&storeID)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pgstore: pruning adjustments of %s: %w", key, err)
	}
	cutoff = inventory.NormalizeTime(cutoff)
	total := 0
	for {
		tag, err := s.pool.Exec(ctx, pruneAdjustmentsSQL, storeID, cutoff, pruneBatch)
		if err != nil {
			return total, fmt.Errorf("pgstore: pruning adjustments of %s: %w", key, err)
		}
		n := int(tag.RowsAffected())
		total += n
		// Fewer than a batch: both kinds are exhausted.
		if n < pruneBatch {
			return total, nil
		}
	}
}
