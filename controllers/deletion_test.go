package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// submitAdjustment puts a pending adjustment into the store's outbox, as the
// hub API would.
func submitAdjustment(t *testing.T, ns, name, id string) {
	t.Helper()
	_, _, err := outbox.SubmitAdjustment(context.Background(), inventory.Adjustment{
		Key: inventory.StoreKey{Namespace: ns, Name: name}, ID: id, Reason: "online order",
		Lines: []inventory.AdjustmentLine{{ProductID: "8000001", Quantity: -1}}})
	if err != nil {
		t.Fatal(err)
	}
}

func waitGone(t *testing.T, ns, name string) {
	t.Helper()
	eventually(t, waitLong, func() error {
		err := live.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &smaregiv1alpha1.SmaregiStore{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("store still exists (err %v)", err)
	})
}

func waitEvent(t *testing.T, ns, name, reason string) string {
	t.Helper()
	var note string
	eventually(t, waitLong, func() error {
		for _, e := range storeEvents(t, ns, name) {
			if e.Reason == reason {
				note = e.Note
				return nil
			}
		}
		return fmt.Errorf("no %s event yet", reason)
	})
	return note
}

// TestDeletionWaitsForTheOutbox: a deleted store with a pending adjustment
// stays, says why in Ready and an event, and goes once the adjustment is
// applied; a store with an empty outbox goes at once.
func TestDeletionWaitsForTheOutbox(t *testing.T) {
	ctx := context.Background()
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", s.endpoint))
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	if st := getStore(t, ns, "shop"); !controllerutil.ContainsFinalizer(st, smaregiv1alpha1.OutboxFinalizer) {
		t.Fatalf("finalizers %v, want %s", st.Finalizers, smaregiv1alpha1.OutboxFinalizer)
	}

	updateStore(t, ns, "shop", func(st *smaregiv1alpha1.SmaregiStore) { st.Spec.Suspend = true })
	submitAdjustment(t, ns, "shop", "order-1")
	if err := live.Delete(ctx, getStore(t, ns, "shop")); err != nil {
		t.Fatal(err)
	}
	st := waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonOutboxPending)
	if msg := cond(st, smaregiv1alpha1.ReadyCondition).Message; !strings.Contains(msg, "1 pending adjustment") ||
		!strings.Contains(msg, "spec.suspend is true") || !strings.Contains(msg, smaregiv1alpha1.DiscardPendingAdjustmentsAnnotation) {
		t.Errorf("Ready message %q: want the count, the cause (suspend) and the discard annotation", msg)
	}
	if c := cond(st, smaregiv1alpha1.ReconcilingCondition); c.Status != metav1.ConditionTrue || c.Reason != smaregiv1alpha1.ReasonOutboxPending {
		t.Errorf("Reconciling = %s/%s, want True/%s", c.Status, c.Reason, smaregiv1alpha1.ReasonOutboxPending)
	}
	if note := waitEvent(t, ns, "shop", smaregiv1alpha1.ReasonOutboxPending); !strings.Contains(note, "1 pending adjustment") {
		t.Errorf("OutboxPending event %q", note)
	}

	// The pusher applies it: the outbox is empty and the store goes.
	key := inventory.StoreKey{Namespace: ns, Name: "shop"}
	if err := outbox.BeginAttempt(ctx, inventory.Attempt{Key: key, ID: "a1", AdjustmentIDs: []string{"order-1"},
		Rows: []inventory.AttemptRow{{ProductID: "8000001", Amount: -1}}, StartedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := outbox.FinishAttempt(ctx, key, "a1", inventory.AttemptResult{Applied: true, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "shop")
	if a, _, _ := outbox.GetAdjustment(ctx, key, "order-1"); a.State != inventory.AdjustmentApplied {
		t.Errorf("order-1 is %s, want applied", a.State)
	}

	// Nothing pending: the deletion is not held.
	mustCreate(t, newStore(ns, "empty", s.endpoint))
	eventually(t, waitLong, func() error {
		if !controllerutil.ContainsFinalizer(getStore(t, ns, "empty"), smaregiv1alpha1.OutboxFinalizer) {
			return fmt.Errorf("no finalizer yet")
		}
		return nil
	})
	if err := live.Delete(ctx, getStore(t, ns, "empty")); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "empty")
}

// TestDiscardAnnotationDropsTheOutbox: the discard annotation lets a held
// deletion complete, marks the adjustment failed and names it in an event.
func TestDiscardAnnotationDropsTheOutbox(t *testing.T) {
	ctx := context.Background()
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	store := newStore(ns, "shop", s.endpoint)
	store.Spec.Suspend = true
	mustCreate(t, store)
	eventually(t, waitLong, func() error {
		if !controllerutil.ContainsFinalizer(getStore(t, ns, "shop"), smaregiv1alpha1.OutboxFinalizer) {
			return fmt.Errorf("no finalizer yet")
		}
		return nil
	})
	submitAdjustment(t, ns, "shop", "order-7")
	if err := live.Delete(ctx, getStore(t, ns, "shop")); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonOutboxPending)

	updateStore(t, ns, "shop", func(st *smaregiv1alpha1.SmaregiStore) {
		metav1.SetMetaDataAnnotation(&st.ObjectMeta, smaregiv1alpha1.DiscardPendingAdjustmentsAnnotation, "true")
	})
	waitGone(t, ns, "shop")
	if note := waitEvent(t, ns, "shop", "AdjustmentsDiscarded"); !strings.Contains(note, "order-7") {
		t.Errorf("AdjustmentsDiscarded event %q does not name order-7", note)
	}
	a, ok, err := outbox.GetAdjustment(ctx, inventory.StoreKey{Namespace: ns, Name: "shop"}, "order-7")
	if err != nil || !ok || a.State != inventory.AdjustmentFailed || !strings.Contains(a.FailureReason, "discarded") {
		t.Errorf("order-7 = %+v (found %v, %v), want failed as discarded", a, ok, err)
	}
}
