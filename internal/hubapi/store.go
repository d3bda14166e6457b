package hubapi

import (
	"context"
	"errors"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// The adjustment shapes below mirror the ones agreed for
// internal/inventory/adjustments.go, which another change is adding. They
// live here only until that lands; then they become aliases of the inventory
// types so that an inventory.Store satisfies Store without an adapter.

// AdjustmentState is where an adjustment is in its life.
type AdjustmentState string

// Adjustment states.
const (
	AdjustmentPending AdjustmentState = "pending"
	AdjustmentApplied AdjustmentState = "applied"
	AdjustmentFailed  AdjustmentState = "failed"
)

// AdjustmentLine is one product's signed change.
type AdjustmentLine struct {
	ProductID string
	Quantity  int64
}

// Adjustment is a change from another channel, to be applied to Smaregi
// exactly once.
type Adjustment struct {
	Key           inventory.StoreKey
	ID            string // the caller's idempotency key
	Reason        string
	Lines         []AdjustmentLine // resolved product IDs
	Fingerprint   string           // hash of the canonical request: replay or conflict
	State         AdjustmentState
	CreatedAt     time.Time
	AppliedAt     time.Time
	FailureReason string // Smaregi's safe reason when failed
}

// ErrAdjustmentConflict is returned by SubmitAdjustment when an adjustment
// with the same ID but another fingerprint exists.
var ErrAdjustmentConflict = errors.New("inventory: adjustment ID already used for a different request")

// Store is the part of the inventory store the hub API uses. Keeping it this
// narrow lets unit tests fake storage without faking a whole backend.
type Store interface {
	// Rows calls fn for each mirror row in product ID order; fn must not call
	// back into the Store.
	Rows(ctx context.Context, key inventory.StoreKey, fn func(inventory.Row) error) error
	Row(ctx context.Context, key inventory.StoreKey, productID string) (inventory.Row, bool, error)
	Summary(ctx context.Context, key inventory.StoreKey) (inventory.Summary, error)
	// SubmitAdjustment stores a new adjustment durably, or returns the stored
	// one (created false) when the ID exists with the same fingerprint, or
	// ErrAdjustmentConflict when it exists with another.
	SubmitAdjustment(ctx context.Context, a Adjustment) (stored Adjustment, created bool, err error)
	GetAdjustment(ctx context.Context, key inventory.StoreKey, id string) (Adjustment, bool, error)
	// PendingDeltas sums, per product, the quantities of adjustments not yet
	// reflected in the mirror.
	PendingDeltas(ctx context.Context, key inventory.StoreKey) (map[string]int64, error)
}
