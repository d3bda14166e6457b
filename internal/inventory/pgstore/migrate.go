package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are applied in order, each once, recorded in schema_migrations.
// Never edit an applied one: append a new one.

var migrations = []string{
	// 1: mirror, full-sync staging, send records, dirty marks.
	`
CREATE TABLE inventory_stores (
	id             bigserial PRIMARY KEY,
	namespace      text NOT NULL,
	name           text NOT NULL,
	watermark      timestamptz,
	last_pull      timestamptz,
	last_full_sync timestamptz,
	last_drift     bigint NOT NULL DEFAULT 0,
	skus           bigint NOT NULL DEFAULT 0,
	full_sync_id   bigint,
	UNIQUE (namespace, name)
);

-- COLLATE "C": byte order, the same as the bbolt backend, for Rows and the
-- drift sample; also the cheapest comparison.
CREATE TABLE inventory_rows (
	store_id             bigint NOT NULL REFERENCES inventory_stores (id) ON DELETE CASCADE,
	product_id           text COLLATE "C" NOT NULL,
	stock_amount         bigint NOT NULL,
	layaway_stock_amount bigint NOT NULL,
	upd_date_time        timestamptz NOT NULL,
	PRIMARY KEY (store_id, product_id)
);

-- Unlogged: staged pages are worthless after a crash (the sync restarts), so
-- they need not cost WAL. ord breaks updDateTime ties: the later row wins.
CREATE SEQUENCE inventory_full_sync_seq;
CREATE SEQUENCE inventory_staging_ord_seq;
CREATE UNLOGGED TABLE inventory_staging (
	sync_id              bigint NOT NULL,
	product_id           text COLLATE "C" NOT NULL,
	stock_amount         bigint NOT NULL,
	layaway_stock_amount bigint NOT NULL,
	upd_date_time        timestamptz NOT NULL,
	ord                  bigint NOT NULL DEFAULT nextval('inventory_staging_ord_seq')
);
CREATE INDEX inventory_staging_sync ON inventory_staging (sync_id, product_id);

CREATE TABLE inventory_sends (
	id          text PRIMARY KEY,
	namespace   text NOT NULL,
	proc_name   text NOT NULL,
	targets     jsonb NOT NULL,
	rows        integer NOT NULL,
	received_at timestamptz NOT NULL
);
CREATE INDEX inventory_sends_received_at ON inventory_sends (received_at);

CREATE SEQUENCE inventory_dirty_seq;
CREATE TABLE inventory_dirty (
	namespace text NOT NULL,
	name      text NOT NULL,
	seq       bigint NOT NULL,
	PRIMARY KEY (namespace, name)
);
`,
	// 2: adjustments (the outbox of changes from other channels) and the
	// pusher's attempts. Lines and rows are small JSON arrays: always read
	// and written whole with their adjustment.
	`
CREATE TABLE inventory_adjustments (
	store_id       bigint NOT NULL REFERENCES inventory_stores (id) ON DELETE CASCADE,
	id             text COLLATE "C" NOT NULL,
	reason         text NOT NULL,
	lines          jsonb NOT NULL,
	fingerprint    text NOT NULL,
	state          text NOT NULL CHECK (state IN ('pending', 'applied', 'failed')),
	created_at     timestamptz NOT NULL,
	applied_at     timestamptz,
	failure_reason text NOT NULL DEFAULT '',
	attempt_id     text,
	reflected      boolean NOT NULL DEFAULT false,
	PRIMARY KEY (store_id, id)
);
-- The outbox scan and the availability sum read only these small subsets.
CREATE INDEX inventory_adjustments_pending ON inventory_adjustments (store_id, created_at, id)
	WHERE state = 'pending';
CREATE INDEX inventory_adjustments_unreflected ON inventory_adjustments (store_id)
	WHERE state = 'applied' AND NOT reflected;
CREATE INDEX inventory_adjustments_attempt ON inventory_adjustments (store_id, attempt_id)
	WHERE attempt_id IS NOT NULL;

CREATE TABLE inventory_attempts (
	store_id       bigint NOT NULL REFERENCES inventory_stores (id) ON DELETE CASCADE,
	id             text COLLATE "C" NOT NULL,
	adjustment_ids text[] NOT NULL,
	rows           jsonb NOT NULL,
	started_at     timestamptz NOT NULL,
	finished_at    timestamptz,
	state          text NOT NULL CHECK (state IN ('open', 'applied', 'void')),
	claims         text[] NOT NULL DEFAULT '{}',
	PRIMARY KEY (store_id, id)
);
CREATE INDEX inventory_attempts_open ON inventory_attempts (store_id) WHERE state = 'open';
CREATE INDEX inventory_attempts_finished ON inventory_attempts (store_id, finished_at);
`,
	// 3: adjustment retention. PruneAdjustments walks these, oldest first,
	// and reads only what it deletes.
	`
CREATE INDEX inventory_adjustments_reflected ON inventory_adjustments (store_id, applied_at)
	WHERE state = 'applied' AND reflected;
CREATE INDEX inventory_adjustments_failed ON inventory_adjustments (store_id, created_at)
	WHERE state = 'failed';
`,
	// 4: the latest time an attempt's request can have ended (the pusher
	// waits a settle period after it before concluding "not applied").
	// NULL for attempts recorded before; the pusher derives it then.
	`
ALTER TABLE inventory_attempts ADD COLUMN request_deadline timestamptz;
`,
	// 5: at most one open attempt per store, enforced by the database so
	// that two pushers cannot both send for a store (BeginAttempt maps the
	// violation to ErrAttemptOpen); and who made each attempt.
	`
ALTER TABLE inventory_attempts ADD COLUMN leader text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX inventory_attempts_one_open ON inventory_attempts (store_id)
	WHERE state = 'open' AND rows <> 'null'::jsonb AND rows <> '[]'::jsonb;
`,
	// 6: resource versions and the change log channels watch (versions.go).
	migrationVersions,
	// 7: safety stock per store and product (safetystock.go).
	migrationSafetyStock,
	// 8: stock pool orders and their allocation (pools.go).
	migrationPoolOrders,
}

// migrationLock is the advisory lock key that serialises replicas starting
// together ("smaregi1" in ASCII).
const migrationLock int64 = 0x736d617265676931

// migrate brings the schema to the newest version in one transaction, under
// an advisory lock so that concurrent replicas apply each migration once.
func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
			return fmt.Errorf("taking the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return fmt.Errorf("creating schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
			return fmt.Errorf("reading the schema version: %w", err)
		}
		if current > len(migrations) {
			return fmt.Errorf("database schema is at version %d, newer than this binary knows (%d): run a newer operator", current, len(migrations))
		}
		for v := current + 1; v <= len(migrations); v++ {
			if _, err := tx.Exec(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("applying migration %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("recording migration %d: %w", v, err)
			}
		}
		return nil
	})
}

// SchemaVersion is the number of migrations this binary applies.
func SchemaVersion() int { return len(migrations) }
