package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// migrationPoolOrders (8) adds the StockPool orders. The allocation is kept
// as JSON: it is written once and read whole.
const migrationPoolOrders = `
CREATE TABLE inventory_pool_orders (
	namespace   text NOT NULL,
	pool        text NOT NULL,
	id          text COLLATE "C" NOT NULL,
	fingerprint text NOT NULL,
	body        jsonb NOT NULL,
	submitted   boolean NOT NULL DEFAULT false,
	created_at  timestamptz NOT NULL,
	PRIMARY KEY (namespace, pool, id)
);
CREATE INDEX inventory_pool_orders_unsubmitted ON inventory_pool_orders (namespace, pool, created_at)
	WHERE NOT submitted;
`

var _ inventory.PoolOrderStore = (*Store)(nil)

func scanPoolOrder(row pgx.Row) (inventory.PoolOrder, error) {
	var (
		body      []byte
		submitted bool
		o         inventory.PoolOrder
	)
	if err := row.Scan(&body, &submitted); err != nil {
		return o, err
	}
	if err := json.Unmarshal(body, &o); err != nil {
		return o, fmt.Errorf("decoding a pool order: %w", err)
	}
	o.Submitted = submitted
	o.CreatedAt = o.CreatedAt.UTC()
	return o, nil
}

// RecordPoolOrder implements inventory.PoolOrderStore.
func (s *Store) RecordPoolOrder(ctx context.Context, o inventory.PoolOrder) (inventory.PoolOrder, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.PoolOrder{}, false, err
	}
	o, err := inventory.NormalizePoolOrder(o, time.Now())
	if err != nil {
		return inventory.PoolOrder{}, false, err
	}
	body, err := json.Marshal(o)
	if err != nil {
		return inventory.PoolOrder{}, false, fmt.Errorf("pgstore: encoding pool order %s: %w", o.ID, err)
	}
	var (
		stored  inventory.PoolOrder
		created bool
	)
	err = inRetriedTx(ctx, s.pool, func(tx pgx.Tx) error {
		created = false
		tag, err := tx.Exec(ctx, `
			INSERT INTO inventory_pool_orders (namespace, pool, id, fingerprint, body, created_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (namespace, pool, id) DO NOTHING`,
			o.Pool.Namespace, o.Pool.Name, o.ID, o.Fingerprint, body, o.CreatedAt)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 1 {
			stored, created = o, true
			return nil
		}
		stored, err = scanPoolOrder(tx.QueryRow(ctx, `SELECT body, submitted FROM inventory_pool_orders
			WHERE namespace = $1 AND pool = $2 AND id = $3`, o.Pool.Namespace, o.Pool.Name, o.ID))
		if err != nil {
			return err
		}
		if stored.Fingerprint != o.Fingerprint {
			return inventory.ErrAdjustmentConflict
		}
		return nil
	})
	if err != nil {
		return inventory.PoolOrder{}, false, fmt.Errorf("pgstore: recording pool order %s of %s: %w", o.ID, o.Pool, err)
	}
	return stored, created, nil
}

// GetPoolOrder implements inventory.PoolOrderStore.
func (s *Store) GetPoolOrder(ctx context.Context, pool inventory.StoreKey, id string) (inventory.PoolOrder, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.PoolOrder{}, false, err
	}
	o, err := scanPoolOrder(s.pool.QueryRow(ctx, `SELECT body, submitted FROM inventory_pool_orders
		WHERE namespace = $1 AND pool = $2 AND id = $3`, pool.Namespace, pool.Name, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.PoolOrder{}, false, nil
	}
	if err != nil {
		return inventory.PoolOrder{}, false, fmt.Errorf("pgstore: reading pool order %s of %s: %w", id, pool, err)
	}
	return o, true, nil
}

// UnsubmittedPoolOrders implements inventory.PoolOrderStore.
func (s *Store) UnsubmittedPoolOrders(ctx context.Context, pool inventory.StoreKey) ([]inventory.PoolOrder, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT body, submitted FROM inventory_pool_orders
		WHERE namespace = $1 AND pool = $2 AND NOT submitted ORDER BY created_at, id`, pool.Namespace, pool.Name)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing unsubmitted pool orders of %s: %w", pool, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (inventory.PoolOrder, error) { return scanPoolOrder(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing unsubmitted pool orders of %s: %w", pool, err)
	}
	return out, nil
}

// MarkPoolOrderSubmitted implements inventory.PoolOrderStore.
func (s *Store) MarkPoolOrderSubmitted(ctx context.Context, pool inventory.StoreKey, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, `UPDATE inventory_pool_orders SET submitted = true
		WHERE namespace = $1 AND pool = $2 AND id = $3 AND NOT submitted`, pool.Namespace, pool.Name, id); err != nil {
		return fmt.Errorf("pgstore: marking pool order %s of %s submitted: %w", id, pool, err)
	}
	return nil
}

// poolLockKey is the advisory lock of one pool: a 64-bit hash of its key
// under a prefix of its own. A collision only makes two pools wait for each
// other.
func poolLockKey(pool inventory.StoreKey) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("smaregi-operator stockpool\x00" + pool.Namespace + "\x00" + pool.Name))
	return int64(h.Sum64())
}

// lockConns bounds the connections that hold or wait for pool locks: one
// per pool being allocated on this replica at a time (more pools wait for a
// connection, holding nothing).
const lockConns = 4

// LockPool implements inventory.PoolOrderStore with a session advisory lock
// on a connection held until unlock: every replica allocating for the pool
// waits for it, and PostgreSQL releases it if this process dies. This
// replica's own waiters queue in memory first, so at most one of its
// connections waits per pool, and those connections come from a pool of
// their own: waiters never take the connections the holder needs.
func (s *Store) LockPool(ctx context.Context, pool inventory.StoreKey) (func(), error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	local, err := s.poolLocks.Lock(ctx, pool)
	if err != nil {
		return nil, fmt.Errorf("pgstore: locking pool %s: %w", pool, err)
	}
	conn, err := s.locks.Acquire(ctx)
	if err != nil {
		local()
		return nil, fmt.Errorf("pgstore: locking pool %s: %w", pool, err)
	}
	key := poolLockKey(pool)
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		// A cancelled wait may leave the session in any state: do not
		// return it to the pool.
		_ = conn.Conn().Close(context.Background())
		conn.Release()
		local()
		return nil, fmt.Errorf("pgstore: locking pool %s: %w", pool, err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var unlocked bool
			if err := conn.QueryRow(ctx, `SELECT pg_advisory_unlock($1)`, key).Scan(&unlocked); err != nil || !unlocked {
				// Closing the session is the one sure way to drop the lock.
				_ = conn.Conn().Close(context.Background())
			}
			conn.Release()
			local()
		})
	}, nil
}
