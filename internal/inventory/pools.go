package inventory

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// PoolAllocation is the part of a pool order one member shop takes: an
// adjustment of that store, under AdjustmentID, with these lines.
type PoolAllocation struct {
	// Store is the member SmaregiStore's name (the pool's namespace).
	Store        string
	AdjustmentID string
	Lines        []AdjustmentLine
}

// PoolOrder is an order submitted to a StockPool and the allocation decided
// when it was accepted. The allocation is recorded before any member
// adjustment is submitted, so that whatever happens afterwards (a crash, a
// retry on another replica) the same member adjustments are submitted and
// never a second, different allocation.
type PoolOrder struct {
	// Pool names the StockPool object.
	Pool StoreKey
	// ID is the caller's idempotency key, unique per pool.
	ID     string
	Reason string
	// Lines are the order as requested.
	Lines []AdjustmentLine
	// Fingerprint identifies the request: the same ID with another
	// fingerprint is a conflict.
	Fingerprint string
	// Allocations say which member takes what; their lines add up to Lines.
	Allocations []PoolAllocation
	// Submitted is true once every allocation's member adjustment is stored
	// (MarkPoolOrderSubmitted).
	Submitted bool
	CreatedAt time.Time
}

// PoolOrderStore keeps pool orders (see PoolOrder).
type PoolOrderStore interface {
	// RecordPoolOrder stores a new order with Submitted false durably
	// (created true), or returns the stored one when the ID exists for
	// the pool with the same fingerprint (created false), or
	// ErrAdjustmentConflict when it exists with another.
	RecordPoolOrder(ctx context.Context, o PoolOrder) (stored PoolOrder, created bool, err error)
	GetPoolOrder(ctx context.Context, pool StoreKey, id string) (PoolOrder, bool, error)
	// UnsubmittedPoolOrders lists the pool's orders whose member
	// adjustments may not all be stored yet, oldest first.
	UnsubmittedPoolOrders(ctx context.Context, pool StoreKey) ([]PoolOrder, error)
	// MarkPoolOrderSubmitted records that every member adjustment of the
	// order is stored. Marking twice is fine.
	MarkPoolOrderSubmitted(ctx context.Context, pool StoreKey, id string) error
	// LockPool serialises allocation for one pool across every replica that
	// shares the store (bbolt: this process; PostgreSQL: a session advisory
	// lock) until unlock is called. It waits until ctx ends.
	LockPool(ctx context.Context, pool StoreKey) (unlock func(), err error)
}

// NormalizePoolOrder validates an order and returns it as backends store it.
func NormalizePoolOrder(o PoolOrder, now time.Time) (PoolOrder, error) {
	if o.Pool.Namespace == "" || o.Pool.Name == "" {
		return o, errors.New("inventory: pool order without a pool key")
	}
	if o.ID == "" || o.Fingerprint == "" {
		return o, errors.New("inventory: pool order without an ID or fingerprint")
	}
	if len(o.Lines) == 0 || len(o.Allocations) == 0 {
		return o, fmt.Errorf("inventory: pool order %s has no lines or no allocation", o.ID)
	}
	sum := map[string]int64{}
	for _, a := range o.Allocations {
		if a.Store == "" || a.AdjustmentID == "" || len(a.Lines) == 0 {
			return o, fmt.Errorf("inventory: pool order %s has an incomplete allocation", o.ID)
		}
		for _, l := range a.Lines {
			sum[l.ProductID] += l.Quantity
		}
	}
	for _, l := range o.Lines {
		sum[l.ProductID] -= l.Quantity
	}
	for p, n := range sum {
		if n != 0 {
			return o, fmt.Errorf("inventory: pool order %s: the allocation of product %s does not add up to the order", o.ID, p)
		}
	}
	if o.CreatedAt.IsZero() {
		o.CreatedAt = now
	}
	o.CreatedAt = NormalizeTime(o.CreatedAt)
	o.Submitted = false
	return o, nil
}

// KeyedMutex is a mutex per key whose Lock a waiter can give up on (its
// context ends). The backends' LockPool use it: bbolt as the whole lock,
// PostgreSQL to queue a replica's own waiters before the advisory lock, so
// that they do not each hold a database connection while they wait.
type KeyedMutex struct {
	locks sync.Map // StoreKey -> chan struct{} (capacity 1)
}

// Lock locks key until unlock is called (once; later calls do nothing).
func (m *KeyedMutex) Lock(ctx context.Context, key StoreKey) (unlock func(), err error) {
	v, _ := m.locks.LoadOrStore(key, make(chan struct{}, 1))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-ch }) }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
