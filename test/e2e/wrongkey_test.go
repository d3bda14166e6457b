package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// TestWrongKeySendsAreVisible: a Smaregi sending with a wrong key makes the
// contract's stores say so within seconds (condition and Warning event),
// and entering the right key clears it.
func TestWrongKeySendsAreVisible(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, "e2ewrongkey", []string{"1", "2"}, 5)
	ns := newNamespace(t, "wrongkey")
	startOperator(t, newOperatorConfig(t))
	declareStores(t, ns, s, time.Minute, "1", "2")
	one := waitReady(t, ns, "store-1")
	waitReady(t, ns, "store-2")

	if err := s.sim.SetSendConfig(smaregisim.SendConfig{URL: one.Status.Receiver.URL,
		Params:    map[string]string{"goqsystem_key": "typed-in-wrong"},
		Functions: []string{"transaction_send", "stock_send"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.sim.Sale("1", []smaregisim.SaleLine{{ProductID: "8000001", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"store-1", "store-2"} {
		waitFor(t, 30*time.Second, name+" to report wrong-key sends", func() bool {
			c := apimeta.FindStatusCondition(getStore(t, ns, name).Status.Conditions, smaregiv1alpha1.SendsHealthyCondition)
			return c != nil && c.Status == metav1.ConditionFalse && c.Reason == smaregiv1alpha1.ReasonWrongKey &&
				strings.Contains(c.Message, "update 4.パラメータ情報 in Smaregi")
		})
		waitFor(t, 30*time.Second, name+"'s WrongKey event", func() bool {
			var list eventsv1.EventList
			if err := kube.List(ctx, &list, client.InNamespace(ns)); err != nil {
				t.Fatal(err)
			}
			for _, e := range list.Items {
				if e.Regarding.Name == name && e.Reason == smaregiv1alpha1.ReasonWrongKey && e.Type == "Warning" {
					return true
				}
			}
			return false
		})
	}

	connectSends(t, s, one)
	if _, err := s.sim.Sale("1", []smaregisim.SaleLine{{ProductID: "8000001", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "store-1 to report the sends accepted", func() bool {
		c := apimeta.FindStatusCondition(getStore(t, ns, "store-1").Status.Conditions, smaregiv1alpha1.SendsHealthyCondition)
		return c != nil && c.Status == metav1.ConditionTrue
	})
}
