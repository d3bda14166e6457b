package pgstore

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txAttempts bounds how often a transaction PostgreSQL aborted to break a
// deadlock (or a serialization failure) is run again.
const txAttempts = 3

// inRetriedTx runs fn in a transaction and runs it again, up to txAttempts
// times, when PostgreSQL aborted it as a deadlock victim or for a
// serialization failure: both mean "nothing happened, try again", and the
// change log's statement triggers (versions.go) lock a store's row in every
// write, so concurrent writers of one store can meet in a deadlock that
// PostgreSQL breaks by aborting one. fn must be safe to run again (it is
// only ever run on a fresh transaction).
func inRetriedTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	var err error
	for range txAttempts {
		err = pgx.BeginFunc(ctx, pool, fn)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || (pe.Code != "40P01" && pe.Code != "40001") {
			return err
		}
	}
	return err
}
