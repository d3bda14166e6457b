package pgstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Stores implements inventory.Store. Every table of per-store data but
// inventory_dirty hangs off inventory_stores (rows, adjustments and attempts
// reference it), so its rows and the dirty marks are the whole set. The
// result is sorted here, in byte order, rather than by the database's
// collation.
func (s *Store) Stores(ctx context.Context) ([]inventory.StoreKey, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	res, err := s.pool.Query(ctx, `
		SELECT namespace, name FROM inventory_stores
		UNION
		SELECT namespace, name FROM inventory_dirty`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing stores: %w", err)
	}
	keys, err := pgx.CollectRows(res, func(r pgx.CollectableRow) (inventory.StoreKey, error) {
		var k inventory.StoreKey
		err := r.Scan(&k.Namespace, &k.Name)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing stores: %w", err)
	}
	slices.SortFunc(keys, inventory.CompareStoreKeys)
	return keys, nil
}
