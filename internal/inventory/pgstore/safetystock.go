package pgstore

// Safety stock (inventory.SafetyStockStore): inventory_stores.safety_stock
// is the default (NULL until SetSafetyStock first runs), and
// inventory_safety_stock the overrides, which go with the store row (ON
// DELETE CASCADE). SetSafetyStock records its changes by calling
// inventory_record_changes (versions.go) itself, in its own transaction,
// since no row of inventory_rows changes.

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

const migrationSafetyStock = `
ALTER TABLE inventory_stores ADD COLUMN safety_stock bigint CHECK (safety_stock >= 0);

CREATE TABLE inventory_safety_stock (
	store_id   bigint NOT NULL REFERENCES inventory_stores (id) ON DELETE CASCADE,
	product_id text COLLATE "C" NOT NULL,
	units      bigint NOT NULL CHECK (units >= 0),
	PRIMARY KEY (store_id, product_id)
);
`

// SetSafetyStock implements inventory.SafetyStockStore. upsertStore locks
// the store's row, as ApplyPull and a full sync's commit do, so no row is
// added between the read of the rows and the record of their changes.
func (s *Store) SetSafetyStock(ctx context.Context, key inventory.StoreKey, next inventory.SafetyStock) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if err := next.Validate(); err != nil {
		return 0, fmt.Errorf("pgstore: safety stock of %s: %w", key, err)
	}
	changed := 0
	err := inRetriedTx(ctx, s.pool, func(tx pgx.Tx) error {
		changed = 0
		id, _, err := upsertStore(ctx, tx, key)
		if err != nil {
			return err
		}
		var def *int64
		if err := tx.QueryRow(ctx, `SELECT safety_stock FROM inventory_stores WHERE id = $1`, id).Scan(&def); err != nil {
			return err
		}
		first := def == nil
		old := inventory.SafetyStock{Overrides: map[string]int64{}}
		if !first {
			old.Default = *def
			res, err := tx.Query(ctx, `SELECT product_id, units FROM inventory_safety_stock WHERE store_id = $1`, id)
			if err != nil {
				return err
			}
			for res.Next() {
				var (
					p string
					n int64
				)
				if err := res.Scan(&p, &n); err != nil {
					res.Close()
					return err
				}
				old.Overrides[p] = n
			}
			if err := res.Err(); err != nil {
				return err
			}
		}
		ids, err := safetyChangedProducts(ctx, tx, id, first, old, next)
		if err != nil {
			return err
		}

		var gone, setIDs []string
		var setUnits []int64
		for p := range old.Overrides {
			if _, keep := next.Overrides[p]; !keep {
				gone = append(gone, p)
			}
		}
		for p, n := range next.Overrides {
			if v, ok := old.Overrides[p]; !ok || v != n {
				setIDs, setUnits = append(setIDs, p), append(setUnits, n)
			}
		}
		if len(gone) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM inventory_safety_stock WHERE store_id = $1 AND product_id = ANY($2::text[])`, id, gone); err != nil {
				return err
			}
		}
		if len(setIDs) > 0 {
			if _, err := tx.Exec(ctx, `
				INSERT INTO inventory_safety_stock (store_id, product_id, units)
				SELECT $1, * FROM unnest($2::text[], $3::int8[])
				ON CONFLICT (store_id, product_id) DO UPDATE SET units = EXCLUDED.units`, id, setIDs, setUnits); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE inventory_stores SET safety_stock = $2 WHERE id = $1`, id, next.Default); err != nil {
			return err
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, `SELECT inventory_record_changes(array_fill($1::bigint, ARRAY[cardinality($2::text[])]), $2::text[])`,
				id, ids); err != nil {
				return err
			}
		}
		changed = len(ids)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: setting the safety stock of %s: %w", key, err)
	}
	return changed, nil
}

// safetyChangedProducts lists the products with a row whose effective
// safety stock differs between old and next; every one with a row the first
// time (nothing was recorded: what was served is unknown).
func safetyChangedProducts(ctx context.Context, tx pgx.Tx, storeID int64, first bool, old, next inventory.SafetyStock) ([]string, error) {
	all, candidates := inventory.SafetyStockChanges(old, next)
	if !first && !all && len(candidates) == 0 {
		return nil, nil
	}
	var (
		res pgx.Rows
		err error
	)
	if first || all {
		res, err = tx.Query(ctx, `SELECT product_id FROM inventory_rows WHERE store_id = $1`, storeID)
	} else {
		res, err = tx.Query(ctx, `SELECT product_id FROM inventory_rows WHERE store_id = $1 AND product_id = ANY($2::text[])`, storeID, candidates)
	}
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(res, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	if first || !all {
		return ids, nil
	}
	return slices.DeleteFunc(ids, func(p string) bool { return old.For(p) == next.For(p) }), nil
}

// SafetyStockFor implements inventory.SafetyStockStore: one statement, so
// the default and the overrides come from one snapshot.
func (s *Store) SafetyStockFor(ctx context.Context, key inventory.StoreKey, productIDs []string) (inventory.SafetyStock, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.SafetyStock{}, false, err
	}
	if productIDs == nil {
		productIDs = []string{}
	}
	res, err := s.pool.Query(ctx, `
		SELECT st.safety_stock, o.product_id, o.units
		FROM inventory_stores st LEFT JOIN inventory_safety_stock o
			ON o.store_id = st.id AND o.product_id = ANY($3::text[])
		WHERE st.namespace = $1 AND st.name = $2`, key.Namespace, key.Name, productIDs)
	if err != nil {
		return inventory.SafetyStock{}, false, fmt.Errorf("pgstore: reading the safety stock of %s: %w", key, err)
	}
	defer res.Close()
	var out inventory.SafetyStock
	recorded := false
	for res.Next() {
		var (
			def   *int64
			p     *string
			units *int64
		)
		if err := res.Scan(&def, &p, &units); err != nil {
			return inventory.SafetyStock{}, false, fmt.Errorf("pgstore: reading the safety stock of %s: %w", key, err)
		}
		if def == nil {
			continue
		}
		recorded, out.Default = true, *def
		if p != nil && units != nil {
			if out.Overrides == nil {
				out.Overrides = map[string]int64{}
			}
			out.Overrides[*p] = *units
		}
	}
	if err := res.Err(); err != nil {
		return inventory.SafetyStock{}, false, fmt.Errorf("pgstore: reading the safety stock of %s: %w", key, err)
	}
	return out, recorded, nil
}
