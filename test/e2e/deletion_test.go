package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
)

// TestDeletionKeepsOrders: a store deleted with an adjustment that has not
// reached Smaregi stays (saying why) until it is applied; the discard
// annotation lets a deletion drop its outbox on purpose, with an event that
// names what was dropped.
func TestDeletionKeepsOrders(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, "e2edel", []string{"1", "2"}, 5)
	ns := newNamespace(t, "deletion")
	op := startOperator(t, newOperatorConfig(t))
	declareStores(t, ns, s, 10*time.Second, "1", "2")
	waitReady(t, ns, "store-1")
	waitReady(t, ns, "store-2")
	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)

	update := func(name string, change func(*smaregiv1alpha1.SmaregiStore)) {
		t.Helper()
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			st := getStore(t, ns, name)
			change(st)
			return kube.Update(ctx, st)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	gone := func(name string) bool {
		err := kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &smaregiv1alpha1.SmaregiStore{})
		return apierrors.IsNotFound(err)
	}
	waitOutboxPending := func(name string) {
		t.Helper()
		waitFor(t, 60*time.Second, name+" to wait for its outbox", func() bool {
			c := apimeta.FindStatusCondition(getStore(t, ns, name).Status.Conditions, smaregiv1alpha1.ReadyCondition)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == smaregiv1alpha1.ReasonOutboxPending
		})
	}

	t.Run("a deleted store stays until its adjustment is applied", func(t *testing.T) {
		before, err := s.sim.StockOf("1", "8000001")
		if err != nil {
			t.Fatal(err)
		}
		update("store-1", func(st *smaregiv1alpha1.SmaregiStore) { st.Spec.Suspend = true })
		req := adjustmentRequest{ID: "order-kept", Reason: "online order", Lines: []adjustmentLine{{ProductID: "8000001", Quantity: -2}}}
		if code, _, err := postAdjustment(op, adjuster, ns, "store-1", req); err != nil || code != http.StatusAccepted {
			t.Fatalf("POST: %d %v, want 202", code, err)
		}
		if err := kube.Delete(ctx, getStore(t, ns, "store-1")); err != nil {
			t.Fatal(err)
		}
		waitOutboxPending("store-1")
		msg := apimeta.FindStatusCondition(getStore(t, ns, "store-1").Status.Conditions, smaregiv1alpha1.ReadyCondition).Message
		if !strings.Contains(msg, "spec.suspend is true") {
			t.Errorf("Ready message %q does not say the suspension holds the outbox", msg)
		}
		update("store-1", func(st *smaregiv1alpha1.SmaregiStore) { st.Spec.Suspend = false })
		waitFor(t, 60*time.Second, "store-1 to be gone once its adjustment is applied", func() bool { return gone("store-1") })
		after, err := s.sim.StockOf("1", "8000001")
		if err != nil {
			t.Fatal(err)
		}
		if after != before-2 {
			t.Errorf("Smaregi stock of 8000001 went %d → %d, want the adjustment's -2 applied", before, after)
		}
	})

	t.Run("the discard annotation drops the outbox with an event naming it", func(t *testing.T) {
		before, _ := s.sim.StockOf("2", "8000002")
		update("store-2", func(st *smaregiv1alpha1.SmaregiStore) { st.Spec.Suspend = true })
		req := adjustmentRequest{ID: "order-dropped", Reason: "online order", Lines: []adjustmentLine{{ProductID: "8000002", Quantity: -1}}}
		if code, _, err := postAdjustment(op, adjuster, ns, "store-2", req); err != nil || code != http.StatusAccepted {
			t.Fatalf("POST: %d %v, want 202", code, err)
		}
		if err := kube.Delete(ctx, getStore(t, ns, "store-2")); err != nil {
			t.Fatal(err)
		}
		waitOutboxPending("store-2")
		update("store-2", func(st *smaregiv1alpha1.SmaregiStore) {
			metav1.SetMetaDataAnnotation(&st.ObjectMeta, smaregiv1alpha1.DiscardPendingAdjustmentsAnnotation, "true")
		})
		waitFor(t, 60*time.Second, "store-2 to be gone after the discard", func() bool { return gone("store-2") })
		var found bool
		waitFor(t, 30*time.Second, "the AdjustmentsDiscarded event", func() bool {
			var list eventsv1.EventList
			if err := kube.List(ctx, &list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			for _, e := range list.Items {
				if e.Regarding.Name == "store-2" && e.Reason == "AdjustmentsDiscarded" {
					found = strings.Contains(e.Note, "order-dropped")
					return true
				}
			}
			return false
		})
		if !found {
			t.Error("the AdjustmentsDiscarded event does not name order-dropped")
		}
		if after, _ := s.sim.StockOf("2", "8000002"); after != before {
			t.Errorf("Smaregi stock of 8000002 went %d → %d; a discarded adjustment must not be pushed", before, after)
		}
	})
}
