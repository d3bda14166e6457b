package controllers_test

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// TestPlatformStorePublishesTheOperatorWebhook: a Platform store gets no
// per-contract route or key Secret; status.receiver shows the operator-wide
// webhook URL and where its key is, and ReceiverReady says so.
func TestPlatformStorePublishesTheOperatorWebhook(t *testing.T) {
	ns := newNamespace(t)
	st := newStore(ns, "plat", "http://127.0.0.1:1/")
	st.Spec.API = smaregiv1alpha1.APIPlatform
	mustCreate(t, st)
	got := waitCondition(t, ns, "plat", smaregiv1alpha1.ReceiverReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonPlatformWebhook)
	rs := got.Status.Receiver
	if rs == nil || rs.URL != receiverBase+smaregiv1alpha1.PlatformWebhookPath || rs.RouteID != "" || rs.KeySecretRef != nil {
		t.Fatalf("status.receiver %+v, want the operator-wide webhook URL and no route or key Secret", rs)
	}
	if *rs.WebhookKey != *reconciler.PlatformWebhook {
		t.Errorf("status.receiver.webhookKey %+v, want %+v", rs.WebhookKey, reconciler.PlatformWebhook)
	}
	msg := cond(got, smaregiv1alpha1.ReceiverReadyCondition).Message
	for _, want := range []string{rs.URL, "X-Smaregi-Operator-Key", "smaregi-system/smaregi-platform-webhook-key", "pos:stock"} {
		if !strings.Contains(msg, want) {
			t.Errorf("ReceiverReady message %q does not name %q", msg, want)
		}
	}
	var secrets corev1.SecretList
	if err := live.List(context.Background(), &secrets, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, s := range secrets.Items {
		if s.Labels[smaregiv1alpha1.ManagedByLabel] == smaregiv1alpha1.ManagedByValue {
			t.Errorf("a Platform store got key Secret %s", s.Name)
		}
	}
}
