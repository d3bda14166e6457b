package mirror

import (
	"context"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/statusapply"
)

// StatusUpdate is everything the engine owns in a SmaregiStore's status.
type StatusUpdate struct {
	Key inventory.StoreKey
	// Condition is InventorySynced, with ObservedGeneration set.
	Condition            metav1.Condition
	SKUs                 int64
	Drift                int64
	LastPullTime         time.Time
	LastFullSyncTime     time.Time
	LastFullSyncDuration time.Duration
	LastSendTime         time.Time
	// LastHandledResync is the resync request the last full reconcile
	// answered; empty when none was made.
	LastHandledResync string
	// PendingAdjustments counts adjustments not yet applied in Smaregi;
	// OldestPending is when the oldest of them was accepted.
	PendingAdjustments int64
	OldestPending      time.Time
}

// StatusWriter writes a StatusUpdate to the store's object.
type StatusWriter interface {
	WriteStatus(ctx context.Context, u StatusUpdate) error
}

// StatusApplier writes status with server-side apply under FieldManager.
// The applied object names only the InventorySynced condition and the
// status.inventory fields: conditions are a map keyed on type, so the
// SmaregiStore controller's conditions are left to its own manager. The
// engine owns all of status.inventory, pendingAdjustments and
// oldestPendingAdjustmentTime included: it reads them from the inventory
// store's outbox at write time (flushStatus); the pusher does not write
// status.
type StatusApplier struct {
	c client.Client
}

// NewStatusApplier returns a StatusWriter using c.
func NewStatusApplier(c client.Client) *StatusApplier { return &StatusApplier{c: c} }

// WriteStatus applies u to the status subresource.
func (a *StatusApplier) WriteStatus(ctx context.Context, u StatusUpdate) error {
	return statusapply.Apply(ctx, a.c, FieldManager, u.Key.Namespace, u.Key.Name, statusFields(u))
}

// statusFields renders the engine's fields: the InventorySynced condition
// and status.inventory, nothing else (statusapply says why).
func statusFields(u StatusUpdate) map[string]any {
	c := u.Condition
	cond := map[string]any{
		"type":               c.Type,
		"status":             string(c.Status),
		"reason":             c.Reason,
		"message":            c.Message,
		"observedGeneration": c.ObservedGeneration,
		"lastTransitionTime": c.LastTransitionTime.UTC().Format(time.RFC3339),
	}
	inv := map[string]any{
		"skus":  u.SKUs,
		"drift": u.Drift,
	}
	putTime(inv, "lastPullTime", u.LastPullTime)
	putTime(inv, "lastFullSyncTime", u.LastFullSyncTime)
	putTime(inv, "lastSendTime", u.LastSendTime)
	inv["pendingAdjustments"] = u.PendingAdjustments
	putTime(inv, "oldestPendingAdjustmentTime", u.OldestPending)
	if u.LastHandledResync != "" {
		inv["lastHandledResyncRequest"] = u.LastHandledResync
	}
	if u.LastFullSyncDuration > 0 {
		inv["lastFullSyncDuration"] = u.LastFullSyncDuration.Round(time.Millisecond).String()
	}
	return map[string]any{"conditions": []any{cond}, "inventory": inv}
}

func putTime(m map[string]any, k string, t time.Time) {
	if !t.IsZero() {
		m[k] = t.UTC().Format(time.RFC3339)
	}
}

// statusLoop writes status: a condition change at once, other changes at
// most once per StatusInterval per store, so a busy shop whose mirror changes
// every second does not flood the API server.
func (e *Engine) statusLoop(ctx context.Context) {
	if e.status == nil {
		return
	}
	t := e.clock.NewTicker(e.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		case <-e.kick:
		}
		e.flushStatus(ctx)
	}
}

// flushStatus writes every store whose status is due and reports how many
// it wrote.
func (e *Engine) flushStatus(ctx context.Context) int {
	due := e.takeDueStatus(e.clock.Now())
	written := 0
	for _, u := range due {
		// Read at write time, not kept in memory: the outbox lives in the
		// inventory store and any replica's hub API adds to it. Without the
		// figure the write waits, rather than publishing a wrong zero.
		n, oldest, err := e.inv.PendingAdjustments(ctx, u.Key)
		if err != nil {
			e.log.Error(err, "reading pending adjustments for status; will retry", "store", u.Key.String())
			e.markStatusDirty(u.Key)
			continue
		}
		u.PendingAdjustments, u.OldestPending = n, oldest
		if err := e.status.WriteStatus(ctx, u); err != nil {
			if ctx.Err() != nil {
				return written
			}
			if apierrors.IsNotFound(err) {
				continue // deleted; the watch removes the store
			}
			e.log.Error(err, "writing status; will retry", "store", u.Key.String())
			// Retried after StatusInterval, not at once: the update carries
			// the condition too, and an API server in trouble should not be
			// pressed harder.
			e.markStatusDirty(u.Key)
			continue
		}
		written++
	}
	return written
}

// adjustmentLoop marks a store's status due when an adjustment is submitted
// for it (on any replica), so status.inventory.pendingAdjustments follows the
// outbox; the pusher's pull request after applying covers the way down.
func (e *Engine) adjustmentLoop(ctx context.Context, sub <-chan inventory.StoreKey) {
	for {
		select {
		case <-ctx.Done():
			return
		case key, ok := <-sub:
			if !ok {
				return
			}
			e.statusChanged(key)
		}
	}
}
