package pusher

import (
	"context"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Store is the part of the inventory store the pusher uses: the adjustment
// outbox, not the mirror. Declaring it here keeps the pusher's dependency
// visible and lets a narrow unit test fake or wrap storage without faking a
// whole backend; an inventory.Store (bbolt or PostgreSQL) satisfies it as is.
type Store interface {
	// Finding work: new adjustments wake the store's worker, the start-up
	// and periodic sweeps find what a wake-up missed.

	// SubscribeAdjustments delivers the keys of stores that got a new
	// adjustment until ctx ends (coalescing; closed when ctx ends).
	SubscribeAdjustments(ctx context.Context) <-chan inventory.StoreKey
	// StoresWithPendingAdjustments lists stores that have pending
	// adjustments or open attempts.
	StoresWithPendingAdjustments(ctx context.Context) ([]inventory.StoreKey, error)

	// Reading adjustments to batch them.

	// ReadyAdjustments returns up to limit pending adjustments not carried
	// by an open attempt, oldest first.
	ReadyAdjustments(ctx context.Context, key inventory.StoreKey, limit int) ([]inventory.Adjustment, error)
	GetAdjustment(ctx context.Context, key inventory.StoreKey, id string) (inventory.Adjustment, bool, error)

	// Attempts: each call is recorded durably before it is sent and settled
	// once its outcome is known, which is what makes a push exactly-once.

	// BeginAttempt durably records an open attempt; ErrAttemptConflict if an
	// adjustment is not pending or is carried by another open attempt.
	BeginAttempt(ctx context.Context, at inventory.Attempt) error
	// OpenAttempts lists the store's open attempts, oldest first.
	OpenAttempts(ctx context.Context, key inventory.StoreKey) ([]inventory.Attempt, error)
	// AppliedAttempts lists the store's applied attempts that finished at or
	// after since, in StartedAt order (resolve.go).
	AppliedAttempts(ctx context.Context, key inventory.StoreKey, since time.Time) ([]inventory.Attempt, error)
	// FinishAttempt settles an open attempt and its adjustments in one
	// transaction.
	FinishAttempt(ctx context.Context, key inventory.StoreKey, attemptID string, res inventory.AttemptResult) error

	// Retention (Options.AttemptRetention, Options.AdjustmentRetention).

	// PruneAttempts deletes settled attempts that finished before cutoff.
	PruneAttempts(ctx context.Context, key inventory.StoreKey, cutoff time.Time) (int, error)
	// PruneAdjustments deletes settled adjustments that no longer matter to
	// availability and are older than cutoff; never a pending one nor an
	// applied one not yet reflected in the mirror.
	PruneAdjustments(ctx context.Context, key inventory.StoreKey, cutoff time.Time) (int, error)
}

// Both backends are passed as they are.
var _ Store = inventory.Store(nil)
