package inventory

import (
	"context"
	"errors"
)

// Resource versions: the feed channels watch (docs/hub-api.md, "Watch").
//
// Every change a channel can see in a store's listing bumps the store's
// resource version by one and records a Change naming the product: a mirror
// row written, added or removed (ApplyPull, a full sync's commit), and a
// product's pending adjustment sum changing (SubmitAdjustment with a negative
// line, an adjustment failing or being reflected), and a product's effective
// safety stock changing (SetSafetyStock: an override added, changed or
// removed, or the default changed; safetystock.go). Versions are durable and
// increase by exactly one per change, in commit order, per store: a reader
// that has seen every change up to v and reads ChangesSince(v) misses
// nothing and sees nothing twice, across restarts and replicas. They start
// again from 0 when the store is deleted (DeleteStore); ChangesSince answers
// ErrGone for a version newer than the store's, so a client relists.
//
// The change log is bounded: each store keeps its newest ChangeLogSize
// changes. Asking for changes after an older version answers ErrGone, and
// the client lists again.

// ChangeLogSize is how many changes each store keeps. At 100 changes a
// second that is more than three minutes of disconnection a watcher can
// resume from; after longer, it lists again (one listing of 100,000 rows is
// about 14 MB).
const ChangeLogSize = 20_000

// Change is one entry of a store's change log: at Version, ProductID's row
// or availability changed. It says that, not what: a reader reads the
// product's current row (the feed is level-based, like the listing).
type Change struct {
	Version   uint64
	ProductID string
}

// ErrGone is returned by ChangesSince when changes after the version asked
// for are no longer kept (or the version is newer than the store's, after
// the store was deleted and recreated): list again.
var ErrGone = errors.New("inventory: the requested resource version is too old (changes after it are no longer kept); list again")

// VersionStore is the change-log part of Store.
type VersionStore interface {
	// StoreVersion is the store's current resource version: the version of
	// its newest committed change, 0 if none.
	StoreVersion(ctx context.Context, key StoreKey) (uint64, error)
	// ChangesSince returns up to limit changes with versions after version,
	// oldest first; fewer than limit means there are no more right now. It
	// returns ErrGone when some change after version is no longer kept, or
	// version is newer than the store's. limit must be positive.
	ChangesSince(ctx context.Context, key StoreKey, version uint64, limit int) ([]Change, error)
	// RowsByID reads the current mirror rows of the given products in one
	// read; products without a row are absent from the map.
	RowsByID(ctx context.Context, key StoreKey, productIDs []string) (map[string]Row, error)
	// SubscribeVersions delivers the keys of stores whose version grew (on
	// any replica, on PostgreSQL) until ctx ends, coalescing like
	// Subscribe: a key is delivered at least once after each commit that
	// recorded changes.
	SubscribeVersions(ctx context.Context) <-chan StoreKey
}
