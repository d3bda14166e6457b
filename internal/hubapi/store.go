package hubapi

import (
	"context"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// The adjustment types are the inventory store's own, aliased so that an
// inventory.Store satisfies Store without an adapter.
type (
	AdjustmentState = inventory.AdjustmentState
	AdjustmentLine  = inventory.AdjustmentLine
	Adjustment      = inventory.Adjustment
)

// Adjustment states.
const (
	AdjustmentPending = inventory.AdjustmentPending
	AdjustmentApplied = inventory.AdjustmentApplied
	AdjustmentFailed  = inventory.AdjustmentFailed
)

// ErrAdjustmentConflict is returned by SubmitAdjustment when an adjustment
// with the same ID but another fingerprint exists.
var ErrAdjustmentConflict = inventory.ErrAdjustmentConflict

// Store is the part of the inventory store the hub API uses. Keeping it this
// narrow lets unit tests fake storage without faking a whole backend.
type Store interface {
	// RowsPage returns up to limit mirror rows with product IDs strictly
	// after afterProductID (byte order), in that order; each call is a short
	// read of its own, so the listing writes to its client between reads.
	RowsPage(ctx context.Context, key inventory.StoreKey, afterProductID string, limit int) ([]inventory.Row, error)
	Row(ctx context.Context, key inventory.StoreKey, productID string) (inventory.Row, bool, error)
	Summary(ctx context.Context, key inventory.StoreKey) (inventory.Summary, error)
	// SubmitAdjustment stores a new adjustment durably, or returns the stored
	// one (created false) when the ID exists with the same fingerprint, or
	// ErrAdjustmentConflict when it exists with another.
	SubmitAdjustment(ctx context.Context, a Adjustment) (stored Adjustment, created bool, err error)
	GetAdjustment(ctx context.Context, key inventory.StoreKey, id string) (Adjustment, bool, error)
	// PendingDeltas sums, per product, the negative quantities of the
	// adjustments not yet reflected in the mirror (pending, or applied but
	// not yet seen by a later pull); positive ones are left out so that
	// availability is never overstated.
	PendingDeltas(ctx context.Context, key inventory.StoreKey) (map[string]int64, error)

	// The change log the live feed reads (inventory.VersionStore).
	StoreVersion(ctx context.Context, key inventory.StoreKey) (uint64, error)
	ChangesSince(ctx context.Context, key inventory.StoreKey, version uint64, limit int) ([]inventory.Change, error)
	RowsByID(ctx context.Context, key inventory.StoreKey, productIDs []string) (map[string]inventory.Row, error)
	SubscribeVersions(ctx context.Context) <-chan inventory.StoreKey

	// SafetyStockFor reads the store's safety stock for the given products
	// (inventory.SafetyStockStore).
	SafetyStockFor(ctx context.Context, key inventory.StoreKey, productIDs []string) (inventory.SafetyStock, bool, error)
}
