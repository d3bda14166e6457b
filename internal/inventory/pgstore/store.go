// Package pgstore is the PostgreSQL inventory backend, for several operator
// replicas sharing one database. The operator creates and migrates its own
// schema (see migrate.go). A send recorded by any replica reaches every
// replica's Subscribe through LISTEN/NOTIFY, sent in the recording commit.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/dirtyfeed"
)

func init() {
	open := func(ctx context.Context, u *url.URL) (inventory.Store, error) { return Open(ctx, u.String()) }
	inventory.Register("postgres", open)
	inventory.Register("postgresql", open)
}

// notifyChannel carries "<namespace>/<name>" of each store marked dirty.
const notifyChannel = "smaregi_inventory_dirty"

// Options tune a Store; the zero value gives the defaults.
type Options struct {
	// SendRetention is how long send records are kept (default 7 days).
	SendRetention time.Duration
	// MaxSends caps the number of send records kept (default 100,000).
	MaxSends int
	// PruneEvery is the retention janitor's period (default 1 minute).
	PruneEvery time.Duration
	// GroupCommitWindow is how long a writer waits for more concurrent
	// RecordSend calls once it has one. Default 0: it commits at once with
	// the calls already waiting, so an idle receiver pays no wait, and a
	// busy one still shares commits (calls queue while both writers are in
	// a commit, and the next commit takes them all).
	GroupCommitWindow time.Duration
	// GroupCommitMax caps the records in one commit (default 256).
	GroupCommitMax int
	// Writers is the number of group-commit writers (default 2): while one
	// waits for its fsync the other gathers the next group.
	Writers int
}

func (o Options) withDefaults() Options {
	if o.SendRetention <= 0 {
		o.SendRetention = 7 * 24 * time.Hour
	}
	if o.MaxSends <= 0 {
		o.MaxSends = 100_000
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Minute
	}
	if o.GroupCommitWindow < 0 {
		o.GroupCommitWindow = 0
	}
	if o.GroupCommitMax <= 0 {
		o.GroupCommitMax = 256
	}
	if o.Writers <= 0 {
		o.Writers = 2
	}
	return o
}

// Store is the PostgreSQL backend of inventory.Store.
type Store struct {
	pool *pgxpool.Pool
	// locks holds the connections of pool advisory locks (pools.go), apart
	// from pool: a lock holder needs pool connections to do its work, which
	// lock waiters must not use up.
	locks     *pgxpool.Pool
	poolLocks inventory.KeyedMutex
	opts      Options
	feed      *dirtyfeed.Feed
	// adjFeed republishes adjustmentsChannel for SubscribeAdjustments.
	adjFeed *dirtyfeed.Feed
	// verFeed republishes versionsChannel for SubscribeVersions.
	verFeed *dirtyfeed.Feed

	sendCh chan *sendReq
	stop   chan struct{} // closed by Close: writers, janitor and listener end
	wg     sync.WaitGroup
	closed atomic.Bool
	// inflight counts RecordSend calls between the closed check and their
	// hand-off, so Close can stop the writers only after they are served.
	inflight sync.WaitGroup
	closeMu  sync.RWMutex

	listenOnce  sync.Once
	listenReady chan struct{}
	// listenWait is how long the first Subscribe waits for LISTEN (5s).
	listenWait time.Duration
	// beforeListen, if set (tests only), runs before each LISTEN connect;
	// an error fails that attempt.
	beforeListen func(context.Context) error
}

var _ inventory.Store = (*Store)(nil)

// Open connects with default options, migrates the schema and starts the
// group-commit writers and the retention janitor.
func Open(ctx context.Context, dsn string) (*Store, error) {
	return OpenWithOptions(ctx, dsn, Options{})
}

// OpenWithOptions is Open with options.
func OpenWithOptions(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's own message quotes the DSN; redaction there is best
		// effort, so say nothing more than which DSN.
		return nil, fmt.Errorf("pgstore: cannot parse DSN %s", inventory.RedactURL(dsn))
	}
	if u, perr := url.Parse(dsn); perr != nil || !u.Query().Has("pool_max_conns") {
		cfg.MaxConns = 10
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: connecting to %s: %w", inventory.RedactURL(dsn), err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: migrating the schema in %s: %w", inventory.RedactURL(dsn), err)
	}
	lockCfg := cfg.Copy()
	lockCfg.MaxConns = lockConns
	locks, err := pgxpool.NewWithConfig(ctx, lockCfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connecting to %s: %w", inventory.RedactURL(dsn), err)
	}
	opts = opts.withDefaults()
	s := &Store{
		pool:        pool,
		locks:       locks,
		opts:        opts,
		feed:        dirtyfeed.New(),
		adjFeed:     dirtyfeed.New(),
		verFeed:     dirtyfeed.New(),
		sendCh:      make(chan *sendReq),
		stop:        make(chan struct{}),
		listenReady: make(chan struct{}),
		listenWait:  5 * time.Second,
	}
	for i := 0; i < opts.Writers; i++ {
		s.wg.Add(1)
		go s.sendWriter()
	}
	s.wg.Add(1)
	go s.janitor()
	return s, nil
}

// Close stops the background work and closes the pool. RecordSend calls in
// progress finish first.
func (s *Store) Close() error {
	s.closeMu.Lock()
	already := s.closed.Swap(true)
	s.closeMu.Unlock()
	if already {
		return nil
	}
	s.inflight.Wait()
	close(s.stop)
	s.wg.Wait()
	s.feed.Close()
	s.adjFeed.Close()
	s.verFeed.Close()
	s.locks.Close()
	s.pool.Close()
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return inventory.ErrClosed
	}
	return ctx.Err()
}

// upsertStore returns the store's row ID and open full sync, creating the
// row, and locks it for the rest of tx: ApplyPull, BeginFullSync and Commit
// of one store are serialised by this lock.
func upsertStore(ctx context.Context, tx pgx.Tx, key inventory.StoreKey) (id int64, fullSync *int64, err error) {
	err = tx.QueryRow(ctx, `
		INSERT INTO inventory_stores (namespace, name) VALUES ($1, $2)
		ON CONFLICT (namespace, name) DO UPDATE SET namespace = EXCLUDED.namespace
		RETURNING id, full_sync_id`, key.Namespace, key.Name).Scan(&id, &fullSync)
	return id, fullSync, err
}

// rowColumns turns rows into the column arrays the unnest queries take.
func rowColumns(rows []inventory.Row) (ids []string, stock, layaway []int64, upd []time.Time) {
	ids = make([]string, len(rows))
	stock = make([]int64, len(rows))
	layaway = make([]int64, len(rows))
	upd = make([]time.Time, len(rows))
	for i, r := range rows {
		ids[i], stock[i], layaway[i], upd[i] = r.ProductID, r.StockAmount, r.LayawayStockAmount, r.UpdDateTime
	}
	return
}

func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return inventory.NormalizeTime(t)
}

func fromNull(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// ApplyPull implements inventory.Store.
func (s *Store) ApplyPull(ctx context.Context, key inventory.StoreKey, rows []inventory.Row, watermark time.Time) (int, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	rows, err := inventory.LatestPerProduct(rows)
	if err != nil {
		return 0, err
	}
	changed := 0
	err = inRetriedTx(ctx, s.pool, func(tx pgx.Tx) error {
		changed = 0
		id, fullSync, err := upsertStore(ctx, tx, key)
		if err != nil {
			return err
		}
		ids, stock, layaway, upd := rowColumns(rows)
		added := 0
		if len(rows) > 0 {
			// xmax = 0 tells a fresh insert from an update; the WHERE skips
			// rows whose values did not change, so they are not returned.
			res, err := tx.Query(ctx, `
				INSERT INTO inventory_rows AS m (store_id, product_id, stock_amount, layaway_stock_amount, upd_date_time)
				SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::int8[], $5::timestamptz[])
				ON CONFLICT (store_id, product_id) DO UPDATE SET
					stock_amount = EXCLUDED.stock_amount,
					layaway_stock_amount = EXCLUDED.layaway_stock_amount,
					upd_date_time = EXCLUDED.upd_date_time
				WHERE (m.stock_amount, m.layaway_stock_amount, m.upd_date_time)
					IS DISTINCT FROM (EXCLUDED.stock_amount, EXCLUDED.layaway_stock_amount, EXCLUDED.upd_date_time)
				RETURNING xmax = 0`, id, ids, stock, layaway, upd)
			if err != nil {
				return err
			}
			for res.Next() {
				var inserted bool
				if err := res.Scan(&inserted); err != nil {
					res.Close()
					return err
				}
				changed++
				if inserted {
					added++
				}
			}
			if err := res.Err(); err != nil {
				return err
			}
			// An open full sync must see these rows too, or its commit
			// would put back the older values it staged before this pull.
			if fullSync != nil {
				if _, err := tx.Exec(ctx, `
					INSERT INTO inventory_staging (sync_id, product_id, stock_amount, layaway_stock_amount, upd_date_time)
					SELECT $1, * FROM unnest($2::text[], $3::int8[], $4::int8[], $5::timestamptz[])`,
					*fullSync, ids, stock, layaway, upd); err != nil {
					return err
				}
			}
		}
		_, err = tx.Exec(ctx, `
			UPDATE inventory_stores SET
				watermark = GREATEST(watermark, $2), last_pull = now(), skus = skus + $3
			WHERE id = $1`, id, nullTime(watermark), added)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("pgstore: applying pull for %s: %w", key, err)
	}
	return changed, nil
}

// Rows implements inventory.Store. It streams from one query, so memory
// stays flat for any number of rows.
func (s *Store) Rows(ctx context.Context, key inventory.StoreKey, fn func(inventory.Row) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	res, err := s.pool.Query(ctx, `
		SELECT r.product_id, r.stock_amount, r.layaway_stock_amount, r.upd_date_time
		FROM inventory_rows r JOIN inventory_stores s ON s.id = r.store_id
		WHERE s.namespace = $1 AND s.name = $2
		ORDER BY r.product_id`, key.Namespace, key.Name)
	if err != nil {
		return fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
	}
	defer res.Close()
	for res.Next() {
		var r inventory.Row
		if err := res.Scan(&r.ProductID, &r.StockAmount, &r.LayawayStockAmount, &r.UpdDateTime); err != nil {
			return fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
		}
		r.UpdDateTime = r.UpdDateTime.UTC()
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := res.Err(); err != nil {
		return fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
	}
	return nil
}

// RowsPage implements inventory.Store: one short query per page on the
// (store_id, product_id) primary key, COLLATE "C" so in byte order.
func (s *Store) RowsPage(ctx context.Context, key inventory.StoreKey, afterProductID string, limit int) ([]inventory.Row, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, fmt.Errorf("pgstore: reading rows of %s: page limit %d is not positive", key, limit)
	}
	res, err := s.pool.Query(ctx, `
		SELECT r.product_id, r.stock_amount, r.layaway_stock_amount, r.upd_date_time
		FROM inventory_rows r JOIN inventory_stores s ON s.id = r.store_id
		WHERE s.namespace = $1 AND s.name = $2 AND r.product_id > $3
		ORDER BY r.product_id
		LIMIT $4`, key.Namespace, key.Name, afterProductID, limit)
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
	}
	out, err := pgx.CollectRows(res, func(row pgx.CollectableRow) (inventory.Row, error) {
		var r inventory.Row
		err := row.Scan(&r.ProductID, &r.StockAmount, &r.LayawayStockAmount, &r.UpdDateTime)
		r.UpdDateTime = r.UpdDateTime.UTC()
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: reading rows of %s: %w", key, err)
	}
	return out, nil
}

// Row implements inventory.Store.
func (s *Store) Row(ctx context.Context, key inventory.StoreKey, productID string) (inventory.Row, bool, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Row{}, false, err
	}
	r := inventory.Row{ProductID: productID}
	err := s.pool.QueryRow(ctx, `
		SELECT r.stock_amount, r.layaway_stock_amount, r.upd_date_time
		FROM inventory_rows r JOIN inventory_stores s ON s.id = r.store_id
		WHERE s.namespace = $1 AND s.name = $2 AND r.product_id = $3`,
		key.Namespace, key.Name, productID).Scan(&r.StockAmount, &r.LayawayStockAmount, &r.UpdDateTime)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Row{}, false, nil
	}
	if err != nil {
		return inventory.Row{}, false, fmt.Errorf("pgstore: reading row %s of %s: %w", productID, key, err)
	}
	r.UpdDateTime = r.UpdDateTime.UTC()
	return r, true, nil
}

// Summary implements inventory.Store.
func (s *Store) Summary(ctx context.Context, key inventory.StoreKey) (inventory.Summary, error) {
	if err := s.check(ctx); err != nil {
		return inventory.Summary{}, err
	}
	var (
		sum                        inventory.Summary
		watermark, pull, fullStamp *time.Time
	)
	err := s.pool.QueryRow(ctx, `
		SELECT skus, watermark, last_pull, last_full_sync, last_drift
		FROM inventory_stores WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name).
		Scan(&sum.SKUs, &watermark, &pull, &fullStamp, &sum.LastDrift)
	if errors.Is(err, pgx.ErrNoRows) {
		return inventory.Summary{}, nil
	}
	if err != nil {
		return inventory.Summary{}, fmt.Errorf("pgstore: reading summary of %s: %w", key, err)
	}
	sum.Watermark, sum.LastPull, sum.LastFullSync = fromNull(watermark), fromNull(pull), fromNull(fullStamp)
	return sum, nil
}

// DeleteStore implements inventory.Store. Adjustments and attempts go with
// the store row (ON DELETE CASCADE).
func (s *Store) DeleteStore(ctx context.Context, key inventory.StoreKey) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var fullSync *int64
		err := tx.QueryRow(ctx, `DELETE FROM inventory_stores WHERE namespace = $1 AND name = $2 RETURNING full_sync_id`,
			key.Namespace, key.Name).Scan(&fullSync)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		if fullSync != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM inventory_staging WHERE sync_id = $1`, *fullSync); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, `DELETE FROM inventory_dirty WHERE namespace = $1 AND name = $2`, key.Namespace, key.Name)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: deleting %s: %w", key, err)
	}
	return nil
}

// Dirty implements inventory.Store.
func (s *Store) Dirty(ctx context.Context) ([]inventory.DirtyMark, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	res, err := s.pool.Query(ctx, `SELECT namespace, name, seq FROM inventory_dirty ORDER BY namespace, name`)
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing dirty stores: %w", err)
	}
	marks, err := pgx.CollectRows(res, func(r pgx.CollectableRow) (inventory.DirtyMark, error) {
		var m inventory.DirtyMark
		var seq int64
		err := r.Scan(&m.Key.Namespace, &m.Key.Name, &seq)
		m.Seq = uint64(seq)
		return m, err
	})
	if err != nil {
		return nil, fmt.Errorf("pgstore: listing dirty stores: %w", err)
	}
	return marks, nil
}

// ClearDirty implements inventory.Store.
func (s *Store) ClearDirty(ctx context.Context, key inventory.StoreKey, upTo uint64) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if upTo > 1<<63-1 {
		upTo = 1<<63 - 1
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM inventory_dirty WHERE namespace = $1 AND name = $2 AND seq <= $3`,
		key.Namespace, key.Name, int64(upTo))
	if err != nil {
		return false, fmt.Errorf("pgstore: clearing dirty mark of %s: %w", key, err)
	}
	return tag.RowsAffected() == 1, nil
}
