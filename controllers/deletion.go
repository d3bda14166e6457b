package controllers

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// DefaultDeletionRecheckInterval is how often a deleted store's outbox is
// re-read while the deletion waits for it. The read is local (the inventory
// store), so it can be frequent; the pusher settling an adjustment does not
// touch the object, so nothing else would wake the controller.
const DefaultDeletionRecheckInterval = 5 * time.Second

// Outbox is the little the controller needs of the inventory store's
// adjustments to hold a deleted store until nothing is lost. The controller
// runs on the leader, where the inventory store is open (bbolt: the only
// replica; PostgreSQL: any replica reads the same outbox).
type Outbox interface {
	// PendingAdjustments counts the store's adjustments Smaregi has neither
	// applied nor rejected, and the oldest one's creation time.
	PendingAdjustments(ctx context.Context, key inventory.StoreKey) (int64, time.Time, error)
	// DiscardPending marks the pending adjustments failed with reason so
	// that they are never pushed (inventory.DiscardPending).
	DiscardPending(ctx context.Context, key inventory.StoreKey, reason string) (inventory.DiscardedOutbox, error)
}

// InventoryOutbox is the Outbox of an inventory store.
type InventoryOutbox struct {
	Store inventory.AdjustmentStore
	Clock clock.PassiveClock
}

// PendingAdjustments implements Outbox.
func (o InventoryOutbox) PendingAdjustments(ctx context.Context, key inventory.StoreKey) (int64, time.Time, error) {
	return o.Store.PendingAdjustments(ctx, key)
}

// DiscardPending implements Outbox.
func (o InventoryOutbox) DiscardPending(ctx context.Context, key inventory.StoreKey, reason string) (inventory.DiscardedOutbox, error) {
	now := time.Now()
	if o.Clock != nil {
		now = o.Clock.Now()
	}
	return inventory.DiscardPending(ctx, o.Store, key, reason, now)
}

// discardReason is the failure reason of a discarded adjustment, which the
// hub API shows to whoever submitted it.
const discardReason = "discarded: the SmaregiStore was deleted with " +
	smaregiv1alpha1.DiscardPendingAdjustmentsAnnotation + "=true before it reached Smaregi"

// ensureFinalizer adds the outbox finalizer to a live store.
func (r *SmaregiStoreReconciler) ensureFinalizer(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) error {
	if controllerutil.ContainsFinalizer(store, smaregiv1alpha1.OutboxFinalizer) {
		return nil
	}
	patch := client.MergeFromWithOptions(store.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.AddFinalizer(store, smaregiv1alpha1.OutboxFinalizer)
	if err := r.Client.Patch(ctx, store, patch); err != nil {
		return fmt.Errorf("add finalizer %s to %s/%s: %w", smaregiv1alpha1.OutboxFinalizer, store.Namespace, store.Name, err)
	}
	return nil
}

// finalize decides whether a deleted store may go. It releases the
// finalizer when the outbox is empty, or when the discard annotation asks
// to drop it (with an event naming what was dropped); otherwise it returns
// the message that says why the deletion waits.
func (r *SmaregiStoreReconciler) finalize(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) (waiting string, err error) {
	key := inventory.StoreKey{Namespace: store.Namespace, Name: store.Name}
	st := r.state(client.ObjectKeyFromObject(store))
	if store.Annotations[smaregiv1alpha1.DiscardPendingAdjustmentsAnnotation] == "true" {
		res, err := r.Outbox.DiscardPending(ctx, key, discardReason)
		if err != nil {
			return "", fmt.Errorf("discard the outbox of %s: %w", key, err)
		}
		if len(res.Discarded)+len(res.InFlight) > 0 {
			msg := fmt.Sprintf("deleted with %s=true: discarded %d pending adjustment(s) that never reached Smaregi: %s",
				smaregiv1alpha1.DiscardPendingAdjustmentsAnnotation, len(res.Discarded), idList(res.Discarded))
			if len(res.InFlight) > 0 {
				msg += fmt.Sprintf("; %d in flight, possibly applied (compare Smaregi's stock history): %s",
					len(res.InFlight), idList(res.InFlight))
			}
			r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, "AdjustmentsDiscarded", "Delete", "%s", msg)
		}
		return "", r.releaseFinalizer(ctx, store)
	}

	n, oldest, err := r.Outbox.PendingAdjustments(ctx, key)
	if err != nil {
		return "", fmt.Errorf("count the pending adjustments of %s: %w", key, err)
	}
	st.mu.Lock()
	announced := st.deletionPending
	st.deletionPending = n
	st.mu.Unlock()
	if n == 0 {
		if announced > 0 {
			r.Recorder.Eventf(store, nil, corev1.EventTypeNormal, "OutboxDrained", "Delete",
				"every pending adjustment reached Smaregi; the deletion proceeds")
		}
		return "", r.releaseFinalizer(ctx, store)
	}
	waiting = fmt.Sprintf("deletion waits for %d pending adjustment(s) (oldest from %s) to reach Smaregi: %s "+
		"To drop them instead: kubectl annotate smaregistore %s %s=true",
		n, oldest.UTC().Format(time.RFC3339), whyPending(store), store.Name, smaregiv1alpha1.DiscardPendingAdjustmentsAnnotation)
	if announced != n {
		r.Recorder.Eventf(store, nil, corev1.EventTypeWarning, smaregiv1alpha1.ReasonOutboxPending, "Delete", "%s", waiting)
	}
	return waiting, nil
}

// whyPending says what keeps the pusher from draining the outbox, from
// what the store's status shows.
func whyPending(store *smaregiv1alpha1.SmaregiStore) string {
	if store.Spec.Suspend {
		return "spec.suspend is true, so they are not pushed; unsuspend the store."
	}
	for _, typ := range []string{smaregiv1alpha1.CredentialsValidCondition, smaregiv1alpha1.InventorySyncedCondition} {
		if c := meta.FindStatusCondition(store.Status.Conditions, typ); c != nil && c.Status == metav1.ConditionFalse {
			return fmt.Sprintf("Smaregi cannot be reached as configured (%s: %s).", typ, c.Message)
		}
	}
	return "the pusher is applying them."
}

// idList names adjustment IDs, at most 20, so that an event stays short.
func idList(ids []string) string {
	const most = 20
	if len(ids) <= most {
		return strings.Join(ids, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ids[:most], ", "), len(ids)-most)
}

// releaseFinalizer takes the store off its contract's key Secret (deleting
// the Secret with the last store of the contract) and removes the outbox
// finalizer, letting the deletion complete (the inventory data goes with the
// sync engine).
func (r *SmaregiStoreReconciler) releaseFinalizer(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) error {
	if err := r.leaveContractKey(ctx, store); err != nil {
		return err
	}
	patch := client.MergeFromWithOptions(store.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(store, smaregiv1alpha1.OutboxFinalizer)
	if err := r.Client.Patch(ctx, store, patch); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("remove finalizer %s from %s/%s: %w", smaregiv1alpha1.OutboxFinalizer, store.Namespace, store.Name, err)
	}
	r.states.Delete(client.ObjectKeyFromObject(store))
	return nil
}

// deletionStatus turns Ready and Reconciling False/True with the reason
// the deletion waits, keeping the detail conditions as the steps found
// them.
func deletionStatus(desired *ownedStatus, store *smaregiv1alpha1.SmaregiStore, waiting string, now time.Time) {
	for i, c := range desired.Conditions {
		switch c.Type {
		case smaregiv1alpha1.ReadyCondition:
			c.Status = metav1.ConditionFalse
		case smaregiv1alpha1.ReconcilingCondition:
			c.Status = metav1.ConditionTrue
		default:
			continue
		}
		c.Reason, c.Message = smaregiv1alpha1.ReasonOutboxPending, waiting
		desired.Conditions[i] = condition(store.Status.Conditions, c, now)
	}
}
