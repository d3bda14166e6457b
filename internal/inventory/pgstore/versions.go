package pgstore

// Resource versions and the change log (inventory.VersionStore).
//
// Triggers record the changes, so no write path needs to know about them:
// statement-level AFTER triggers with transition tables on inventory_rows
// (every insert, update and delete: ApplyPull, a full sync's commit) and on
// inventory_adjustments (a row entering or leaving the set PendingDeltas
// sums, for its negative lines) call inventory_record_changes once per
// statement. It bumps inventory_stores.resource_version by the number of
// distinct changed products, numbers the changes in product order, prunes
// the log to inventory.ChangeLogSize and notifies versionsChannel, all in
// the writer's transaction.
//
// The bump is an UPDATE of the store's row, which holds its row lock until
// the transaction ends: two transactions recording changes for one store
// are serialised, so versions are assigned in commit order and a reader
// never sees version v+1 committed while v is not (no gap a watcher could
// skip). The cost falls on concurrent writers of one store only; ApplyPull
// and a full sync's commit hold that lock already, and SubmitAdjustment
// takes it only for an adjustment with a negative line.

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// versionsChannel carries "<namespace>/<name>" of each store whose version
// grew, sent in the recording commit, so every replica's watchers wake.
const versionsChannel = "smaregi_inventory_versions"

var migrationVersions = `
ALTER TABLE inventory_stores
	ADD COLUMN resource_version bigint NOT NULL DEFAULT 0,
	ADD COLUMN changes_pruned_through bigint NOT NULL DEFAULT 0;

CREATE TABLE inventory_changes (
	store_id   bigint NOT NULL REFERENCES inventory_stores (id) ON DELETE CASCADE,
	version    bigint NOT NULL,
	product_id text COLLATE "C" NOT NULL,
	PRIMARY KEY (store_id, version)
);

CREATE FUNCTION inventory_record_changes(stores bigint[], products text[]) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
	notified bigint;
BEGIN
	IF stores IS NULL OR cardinality(stores) = 0 THEN
		RETURN;
	END IF;
	-- A store deleted in this statement (ON DELETE CASCADE) has no row to
	-- bump, so it records nothing. Rows the DELETE below cannot see yet
	-- (inserted by this same statement) go with the next one; ChangesSince
	-- never returns them, since it reads only after pruned_through.
	WITH c AS (
		SELECT DISTINCT u.s AS store_id, u.p AS product_id FROM unnest(stores, products) AS u(s, p)
	), n AS (
		SELECT store_id, count(*) AS k FROM c GROUP BY store_id
	), b AS (
		UPDATE inventory_stores st SET
			resource_version = st.resource_version + n.k,
			changes_pruned_through = GREATEST(st.changes_pruned_through, st.resource_version + n.k - ` + strconv.Itoa(inventory.ChangeLogSize) + `)
		FROM n WHERE st.id = n.store_id
		RETURNING st.id, st.resource_version - n.k AS base, st.changes_pruned_through AS pruned, st.namespace, st.name
	), ins AS (
		INSERT INTO inventory_changes (store_id, version, product_id)
		SELECT c.store_id, b.base + row_number() OVER (PARTITION BY c.store_id ORDER BY c.product_id), c.product_id
		FROM c JOIN b ON b.id = c.store_id
	), del AS (
		DELETE FROM inventory_changes ch USING b WHERE ch.store_id = b.id AND ch.version <= b.pruned
	)
	SELECT count(pg_notify('` + versionsChannel + `', b.namespace || '/' || b.name)) INTO notified FROM b;
END
$fn$;

CREATE FUNCTION inventory_rows_changed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM inventory_record_changes(array_agg(store_id), array_agg(product_id)) FROM changed;
	RETURN NULL;
END
$fn$;
CREATE TRIGGER inventory_rows_inserted AFTER INSERT ON inventory_rows
	REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION inventory_rows_changed();
CREATE TRIGGER inventory_rows_updated AFTER UPDATE ON inventory_rows
	REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION inventory_rows_changed();
CREATE TRIGGER inventory_rows_deleted AFTER DELETE ON inventory_rows
	REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION inventory_rows_changed();

-- counted: the adjustment is in the set PendingDeltas sums.
CREATE FUNCTION inventory_adjustments_added_or_removed() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM inventory_record_changes(array_agg(a.store_id), array_agg(l->>'p'))
	FROM changed a, jsonb_array_elements(a.lines) l
	WHERE (a.state = 'pending' OR (a.state = 'applied' AND NOT a.reflected)) AND (l->>'q')::bigint < 0;
	RETURN NULL;
END
$fn$;
CREATE FUNCTION inventory_adjustments_updated() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
	PERFORM inventory_record_changes(array_agg(n.store_id), array_agg(l->>'p'))
	FROM old_rows o JOIN new_rows n ON n.store_id = o.store_id AND n.id = o.id, jsonb_array_elements(n.lines) l
	WHERE (o.state = 'pending' OR (o.state = 'applied' AND NOT o.reflected))
		IS DISTINCT FROM (n.state = 'pending' OR (n.state = 'applied' AND NOT n.reflected))
		AND (l->>'q')::bigint < 0;
	RETURN NULL;
END
$fn$;
CREATE TRIGGER inventory_adjustments_inserted AFTER INSERT ON inventory_adjustments
	REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION inventory_adjustments_added_or_removed();
CREATE TRIGGER inventory_adjustments_deleted AFTER DELETE ON inventory_adjustments
	REFERENCING OLD TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION inventory_adjustments_added_or_removed();
CREATE TRIGGER inventory_adjustments_updated AFTER UPDATE ON inventory_adjustments
	REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION inventory_adjustments_updated();
`

// StoreVersion implements inventory.VersionStore.
func (s *Store) StoreVersion(ctx context.Context, key inventory.StoreKey) (uint64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	var v int64
	err := s.pool.QueryRow(ctx, `SELECT resource_version FROM inventory_stores WHERE namespace = $1 AND name = $2`,
		key.Namespace, key.Name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pgstore: reading the version of %s: %w", key, err)
	}
	return uint64(v), nil
}

// ChangesSince implements inventory.VersionStore: the store's version and
// prune mark and the changes come from one snapshot (one statement).
func (s *Store) ChangesSince(ctx context.Context, key inventory.StoreKey, since uint64, limit int) ([]inventory.Change, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("pgstore: reading changes of %s: limit %d is not positive", key, limit)
	}
	res, err := s.pool.Query(ctx, `
		WITH st AS (SELECT id, resource_version, changes_pruned_through FROM inventory_stores WHERE namespace = $1 AND name = $2)
		SELECT st.resource_version, st.changes_pruned_through, c.version, c.product_id
		FROM st LEFT JOIN LATERAL (
			SELECT version, product_id FROM inventory_changes
			WHERE store_id = st.id AND version > $3 ORDER BY version LIMIT $4) c ON true`,
		key.Namespace, key.Name, int64(since), limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading changes of %s: %w", key, err)
	}
	defer res.Close()
	var (
		out             []inventory.Change
		version, pruned int64
		seen            bool
	)
	for res.Next() {
		var (
			v *int64
			p *string
		)
		if err := res.Scan(&version, &pruned, &v, &p); err != nil {
			return nil, fmt.Errorf("pgstore: reading changes of %s: %w", key, err)
		}
		seen = true
		if v != nil && p != nil {
			out = append(out, inventory.Change{Version: uint64(*v), ProductID: *p})
		}
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: reading changes of %s: %w", key, err)
	}
	if !seen {
		version, pruned = 0, 0
	}
	if int64(since) > version || int64(since) < pruned {
		return nil, fmt.Errorf("pgstore: changes of %s after version %d: %w", key, since, inventory.ErrGone)
	}
	return out, nil
}

// RowsByID implements inventory.VersionStore: one query on the primary key.
func (s *Store) RowsByID(ctx context.Context, key inventory.StoreKey, productIDs []string) (map[string]inventory.Row, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]inventory.Row, len(productIDs))
	if len(productIDs) == 0 {
		return out, nil
	}
	res, err := s.pool.Query(ctx, `
		SELECT r.product_id, r.stock_amount, r.layaway_stock_amount, r.upd_date_time
		FROM inventory_rows r JOIN inventory_stores s ON s.id = r.store_id
		WHERE s.namespace = $1 AND s.name = $2 AND r.product_id = ANY($3::text[])`, key.Namespace, key.Name, productIDs)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
	}
	defer res.Close()
	for res.Next() {
		var r inventory.Row
		if err := res.Scan(&r.ProductID, &r.StockAmount, &r.LayawayStockAmount, &r.UpdDateTime); err != nil {
			return nil, fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
		}
		r.UpdDateTime = r.UpdDateTime.UTC()
		out[r.ProductID] = r
	}
	if err := res.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
	}
	return out, nil
}

// SubscribeVersions implements inventory.VersionStore through the shared
// LISTEN connection (listen.go). Notifications sent while it reconnects are
// lost; a watcher therefore also re-reads its store now and then.
func (s *Store) SubscribeVersions(ctx context.Context) <-chan inventory.StoreKey {
	ch := s.verFeed.Subscribe(ctx)
	s.startListening(ctx)
	return ch
}
