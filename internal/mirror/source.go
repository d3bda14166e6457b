package mirror

import (
	"context"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// StockQuery selects the stock rows of one Smaregi store.
type StockQuery struct {
	// StoreID is Smaregi's store ID (spec.storeID).
	StoreID string
	// UpdatedSince, when not zero, asks only for rows with
	// updDateTime >= UpdatedSince. Zero reads every row (a full reconcile).
	UpdatedSince time.Time
}

// StockReader reads stock rows from Smaregi page by page with stock_ref only:
// a shop that switched on just 在庫情報参照 and 在庫情報更新 must be served, so
// the engine never needs transaction_ref or product_ref. fn receives each page
// in order and must not keep the slice. An error from fn stops the read and is
// returned.
//
// The engine depends on this narrow interface, not on a Backend, so that
// the pull core can be tested against the simulator through the real client
// and, for a few narrow unit tests, against a fake.
type StockReader interface {
	ReadStock(ctx context.Context, q StockQuery, fn func(page []inventory.Row) error) error
}

// ReaderFactory builds a StockReader for a target. The engine caches the
// reader per store and builds a new one only when the target (endpoint,
// contract or token) changes.
type ReaderFactory func(t storeaccess.Target) (StockReader, error)

// TokenSource supplies a store's credentials; the operator's is the
// *storeaccess.Tokens cache it shares with the pusher. Forget drops cached
// credentials (after Smaregi rejected them, or the reference changed) so
// that the next Credentials reads them afresh.
type TokenSource interface {
	Credentials(ctx context.Context, ref storeaccess.CredentialsRef) (storeaccess.Credentials, error)
	Forget(ref storeaccess.CredentialsRef)
}
