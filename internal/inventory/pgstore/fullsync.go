package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// fullSync stages pages with COPY into the unlogged inventory_staging table,
// one short transaction per page (no connection is held between pages), and
// Commit diffs and applies them set-based in one transaction.
type fullSync struct {
	s       *Store
	key     inventory.StoreKey
	storeID int64
	id      int64
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
	f := &fullSync{s: s, key: key}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		storeID, previous, err := upsertStore(ctx, tx, key)
		if err != nil {
			return err
		}
		f.storeID = storeID
		if previous != nil { // superseded, or left by a crashed process
			if _, err := tx.Exec(ctx, `DELETE FROM inventory_staging WHERE sync_id = $1`, *previous); err != nil {
				return err
			}
		}
		var since *time.Time
		if err := tx.QueryRow(ctx, `
			UPDATE inventory_stores SET full_sync_id = nextval('inventory_full_sync_seq')
			WHERE id = $1 RETURNING full_sync_id, watermark`, storeID).Scan(&f.id, &since); err != nil {
			return err
		}
		f.since = fromNull(since)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: beginning full sync of %s: %w", key, err)
	}
	return f, nil
}

// own locks the store row (shared for Add, exclusive for Commit) and checks
// that this sync is still the store's open one.
func (f *fullSync) own(ctx context.Context, tx pgx.Tx, lock string) error {
	var current *int64
	err := tx.QueryRow(ctx, `SELECT full_sync_id FROM inventory_stores WHERE id = $1 FOR `+lock, f.storeID).Scan(&current)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && (current == nil || *current != f.id)) {
		return inventory.ErrSuperseded
	}
	return err
}

func (f *fullSync) Add(ctx context.Context, rows []inventory.Row) error {
	if err := f.s.check(ctx); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return errors.New("pgstore: Add on a finished full sync")
	}
	rows, err := inventory.LatestPerProduct(rows)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, f.s.pool, func(tx pgx.Tx) error {
		// FOR SHARE: a concurrent BeginFullSync (which updates the row)
		// waits, so a superseded sync can never leave rows behind.
		if err := f.own(ctx, tx, "SHARE"); err != nil {
			return err
		}
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"inventory_staging"},
			[]string{"sync_id", "product_id", "stock_amount", "layaway_stock_amount", "upd_date_time"},
			pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
				r := rows[i]
				return []any{f.id, r.ProductID, r.StockAmount, r.LayawayStockAmount, r.UpdDateTime}, nil
			}))
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: staging full sync rows of %s: %w", f.key, err)
	}
	return nil
}

// stagedRows is the staging of one sync reduced to one row per product: the
// newest updDateTime, the latest staged on a tie. $1 is the sync ID.
const stagedRows = `
	SELECT DISTINCT ON (product_id) product_id, stock_amount, layaway_stock_amount, upd_date_time
	FROM inventory_staging WHERE sync_id = $1
	ORDER BY product_id, upd_date_time DESC, ord DESC`

func (f *fullSync) Commit(ctx context.Context, watermark time.Time) (inventory.Drift, error) {
	if err := f.s.check(ctx); err != nil {
		return inventory.Drift{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return inventory.Drift{}, errors.New("pgstore: Commit on a finished full sync")
	}
	// The planner's idea of the staging table is usually "empty" (it is,
	// between syncs); fresh statistics keep the joins below hashed. Run
	// outside the transaction: ANALYZE's lock conflicts with itself and would
	// otherwise serialise the commits of different stores.
	if _, err := f.s.pool.Exec(ctx, `ANALYZE inventory_staging`); err != nil {
		return inventory.Drift{}, fmt.Errorf("pgstore: analysing staging for %s: %w", f.key, err)
	}
	var drift inventory.Drift
	err := pgx.BeginFunc(ctx, f.s.pool, func(tx pgx.Tx) error {
		drift = inventory.Drift{}
		if err := f.own(ctx, tx, "UPDATE"); err != nil {
			return err
		}
		differences, err := f.diff(ctx, tx, &drift)
		if err != nil {
			return err
		}
		if differences > 0 {
			if _, err := tx.Exec(ctx, `
				DELETE FROM inventory_rows m WHERE m.store_id = $1 AND NOT EXISTS (
					SELECT 1 FROM inventory_staging s WHERE s.sync_id = $2 AND s.product_id = m.product_id)`,
				f.storeID, f.id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `
				INSERT INTO inventory_rows AS m (store_id, product_id, stock_amount, layaway_stock_amount, upd_date_time)
				SELECT $2, s.* FROM (`+stagedRows+`) s
				ON CONFLICT (store_id, product_id) DO UPDATE SET
					stock_amount = EXCLUDED.stock_amount,
					layaway_stock_amount = EXCLUDED.layaway_stock_amount,
					upd_date_time = EXCLUDED.upd_date_time
				WHERE (m.stock_amount, m.layaway_stock_amount, m.upd_date_time)
					IS DISTINCT FROM (EXCLUDED.stock_amount, EXCLUDED.layaway_stock_amount, EXCLUDED.upd_date_time)`,
				f.id, f.storeID); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM inventory_staging WHERE sync_id = $1`, f.id); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `
			UPDATE inventory_stores SET
				skus = (SELECT count(*) FROM inventory_rows WHERE store_id = $1),
				full_sync_id = NULL, last_full_sync = now(), last_drift = $2,
				watermark = GREATEST(watermark, $3)
			WHERE id = $1 RETURNING skus`, f.storeID, drift.Total(), nullTime(watermark)).Scan(&drift.SKUs)
	})
	if err != nil {
		return inventory.Drift{}, fmt.Errorf("pgstore: committing full sync of %s: %w", f.key, err)
	}
	f.done = true
	return drift, nil
}

// diff counts the drift between the staged listing and the mirror
// (inventory.Drift.Count: a listed row updated after the watermark the sync
// began with is news, not drift; removed rows always drift) and returns
// every difference, news included, which the commit writes.
func (f *fullSync) diff(ctx context.Context, tx pgx.Tx, drift *inventory.Drift) (differences int, err error) {
	res, err := tx.Query(ctx, `
		WITH s AS (`+stagedRows+`),
		m AS (SELECT product_id, stock_amount, layaway_stock_amount, upd_date_time
		      FROM inventory_rows WHERE store_id = $2)
		SELECT coalesce(s.product_id, m.product_id) AS pid,
		       m.product_id IS NOT NULL, m.stock_amount, m.layaway_stock_amount, m.upd_date_time,
		       s.product_id IS NOT NULL, s.stock_amount, s.layaway_stock_amount, s.upd_date_time
		FROM s FULL JOIN m ON s.product_id = m.product_id
		WHERE s.product_id IS NULL OR m.product_id IS NULL
		   OR (s.stock_amount, s.layaway_stock_amount, s.upd_date_time)
		      IS DISTINCT FROM (m.stock_amount, m.layaway_stock_amount, m.upd_date_time)
		ORDER BY pid`, f.id, f.storeID)
	if err != nil {
		return 0, err
	}
	defer res.Close()
	for res.Next() {
		var (
			id                string
			hasBefore, hasAft bool
			bStock, bLay      *int64
			aStock, aLay      *int64
			bUpd, aUpd        *time.Time
		)
		if err := res.Scan(&id, &hasBefore, &bStock, &bLay, &bUpd, &hasAft, &aStock, &aLay, &aUpd); err != nil {
			return 0, err
		}
		differences++
		e := inventory.DriftEntry{ProductID: id}
		if hasBefore {
			e.Before = inventory.Row{ProductID: id, StockAmount: *bStock, LayawayStockAmount: *bLay, UpdDateTime: fromNull(bUpd)}
		}
		if hasAft {
			e.After = inventory.Row{ProductID: id, StockAmount: *aStock, LayawayStockAmount: *aLay, UpdDateTime: fromNull(aUpd)}
		}
		switch {
		case hasBefore && hasAft:
			e.Kind = inventory.DriftChanged
		case hasAft:
			e.Kind = inventory.DriftAdded
		default:
			e.Kind = inventory.DriftRemoved
		}
		drift.Count(e, f.since)
	}
	return differences, res.Err()
}

func (f *fullSync) Abort() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done || f.s.closed.Load() {
		return nil
	}
	f.done = true
	// Abort is used from defer, without the caller's context.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := pgx.BeginFunc(ctx, f.s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM inventory_staging WHERE sync_id = $1`, f.id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE inventory_stores SET full_sync_id = NULL WHERE id = $1 AND full_sync_id = $2`, f.storeID, f.id)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: aborting full sync of %s: %w", f.key, err)
	}
	return nil
}
