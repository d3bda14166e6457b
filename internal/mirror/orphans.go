package mirror

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// OrphanSweep is what one sweep of orphaned inventory data did.
type OrphanSweep struct {
	// Removed are the stores whose data was deleted.
	Removed []inventory.StoreKey
	// KeptPending are orphans kept because their outbox is not empty.
	KeptPending []inventory.StoreKey
}

// sweepOrphans deletes the inventory data of stores that no SmaregiStore
// declares: those deleted while no operator ran, or during a leader
// hand-over, whose deletion no watch saw. It runs once each time the engine
// starts leading.
//
// Deleting data is irreversible, so a store is removed only when every check
// says it is gone, and any doubt keeps it:
//   - The SmaregiStore list (from the manager's cache, which blocks until
//     the informer has synced) must succeed; an error aborts the sweep.
//   - The inventory is listed before the SmaregiStores: data written for a
//     store created after the inventory listing is no candidate at all.
//   - Each candidate is confirmed absent with an uncached Get (quorum read
//     through APIReader): that also protects stores in namespaces the cache
//     does not cover. Any answer but NotFound keeps the store.
//   - A store the watch has registered meanwhile is kept.
//
// A store with pending adjustments (which includes adjustments carried by an
// open push attempt) is kept, with an error log each time the engine starts:
// those are other channels' orders not yet applied in Smaregi, and an open
// attempt's outcome is still unknown. Deleting them would silently drop
// orders, overselling the shop. The sweep cannot tell a SmaregiStore deleted
// for good from one removed by mistake (a GitOps prune, a rename) while the
// operator was down; re-creating it lets the pusher drain the outbox, after
// which a deletion removes everything. A store deleted while the operator
// runs is removed by the watch at once, as before, with an error log if that
// drops pending adjustments (RemoveStore).
func (e *Engine) sweepOrphans(ctx context.Context) (OrphanSweep, error) {
	var res OrphanSweep
	lister := e.opts.Client
	if lister == nil {
		// No Kubernetes to compare with (an engine driven by tests).
		return res, nil
	}
	getter := client.Reader(lister)
	if e.opts.APIReader != nil {
		getter = e.opts.APIReader
	}

	held, err := e.inv.Stores(ctx)
	if err != nil {
		return res, fmt.Errorf("listing the stores in the inventory: %w", err)
	}
	if len(held) == 0 {
		return res, nil
	}
	var list v1alpha1.SmaregiStoreList
	if err := lister.List(ctx, &list); err != nil {
		return res, fmt.Errorf("listing SmaregiStores (nothing removed): %w", err)
	}
	declared := make(map[inventory.StoreKey]bool, len(list.Items))
	for i := range list.Items {
		declared[inventory.StoreKey{Namespace: list.Items[i].Namespace, Name: list.Items[i].Name}] = true
	}

	var firstErr error
	keep := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	for _, key := range held {
		if declared[key] || e.known(key) {
			continue
		}
		var obj v1alpha1.SmaregiStore
		err := getter.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, &obj)
		switch {
		case err == nil:
			continue // created after the list; the watch has it
		case !apierrors.IsNotFound(err):
			keep(fmt.Errorf("confirming that SmaregiStore %s is gone (its data is kept): %w", key, err))
			continue
		}
		n, oldest, err := e.inv.PendingAdjustments(ctx, key)
		if err != nil {
			keep(fmt.Errorf("counting the pending adjustments of %s (its data is kept): %w", key, err))
			continue
		}
		if n > 0 {
			res.KeptPending = append(res.KeptPending, key)
			e.log.Error(nil, "keeping the inventory data of a deleted SmaregiStore: its adjustments were never applied in Smaregi; re-create the SmaregiStore to push them",
				"store", key.String(), "pendingAdjustments", n, "oldestPending", oldest)
			continue
		}
		removed, err := e.removeOrphan(ctx, key)
		if err != nil {
			keep(err)
			continue
		}
		if !removed {
			continue
		}
		res.Removed = append(res.Removed, key)
		e.log.Info("removed the inventory data of a SmaregiStore deleted while no operator watched", "store", key.String())
	}
	return res, firstErr
}

// removeOrphan is RemoveStore for a store the watch has not registered. If
// the watch registers it while the data is being deleted (the SmaregiStore
// was re-created that instant), the engine may have read the summary before
// the delete, so a full reconcile is asked for: it rebuilds the mirror.
func (e *Engine) removeOrphan(ctx context.Context, key inventory.StoreKey) (bool, error) {
	if !e.forgetUnknown(key) {
		return false, nil
	}
	e.retry.Forget(key)
	if err := e.inv.DeleteStore(ctx, key); err != nil {
		return false, fmt.Errorf("deleting the inventory data of %s: %w", key, err)
	}
	if e.known(key) {
		e.RequestPull(key, TriggerFull)
	}
	return true, nil
}

// runOrphanSweep runs the sweep and reports it; a failed sweep is retried
// at the next start, not sooner: the data it keeps only costs space.
func (e *Engine) runOrphanSweep(ctx context.Context) {
	res, err := e.sweepOrphans(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		e.log.Error(err, "removing the inventory data of deleted SmaregiStores; the rest is left for the next start",
			"removed", len(res.Removed))
	case len(res.Removed) > 0 || len(res.KeptPending) > 0:
		e.log.Info("swept the inventory data of deleted SmaregiStores", "removed", len(res.Removed),
			"keptWithPendingAdjustments", len(res.KeptPending))
	}
	if e.onSweep != nil {
		e.onSweep(res, err)
	}
}
