package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
)

// TestUnknownStoreID: a store ID the contract does not have is flagged at
// once (no stock rows), and once Smaregi refuses an adjustment for it the
// store is not Ready, with the remedy.
func TestUnknownStoreID(t *testing.T) {
	s := newShop(t, "e2eunknown", []string{"1"}, 5)
	ns := newNamespace(t, "unknown")
	op := startOperator(t, newOperatorConfig(t))
	declareStores(t, ns, s, 10*time.Second, "99")
	st := waitReady(t, ns, "store-99")
	if c := apimeta.FindStatusCondition(st.Status.Conditions, smaregiv1alpha1.ReadyCondition); !strings.Contains(c.Message, `no stock rows for store ID "99"`) {
		t.Errorf("Ready message %q does not say that Smaregi has no stock rows for store 99", c.Message)
	}

	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)
	req := adjustmentRequest{ID: "order-99", Reason: "online order", Lines: []adjustmentLine{{ProductID: "8000001", Quantity: -1}}}
	if code, _, err := postAdjustment(op, adjuster, ns, "store-99", req); err != nil || code != http.StatusAccepted {
		t.Fatalf("POST: %d %v, want 202", code, err)
	}
	waitFor(t, 60*time.Second, "store-99 to be not Ready for an unknown store ID", func() bool {
		c := apimeta.FindStatusCondition(getStore(t, ns, "store-99").Status.Conditions, smaregiv1alpha1.ReadyCondition)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == smaregiv1alpha1.ReasonUnknownStoreID
	})
	c := apimeta.FindStatusCondition(getStore(t, ns, "store-99").Status.Conditions, smaregiv1alpha1.CredentialsValidCondition)
	if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "spec.storeID") {
		t.Errorf("CredentialsValid = %s %q, want False with the remedy naming spec.storeID", c.Status, c.Message)
	}
	if code, a := getAdjustment(op, adjuster, ns, "store-99", "order-99"); code != http.StatusOK || a.State != "failed" {
		t.Errorf("order-99: %d %s, want failed", code, a.State)
	}
}
