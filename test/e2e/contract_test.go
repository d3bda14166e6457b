package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// sendsArrive rings up a sale in storeID and waits until the store's
// status.inventory.lastSendTime moves past what it was.
func sendsArrive(t *testing.T, s *shop, ns, name, storeID string) {
	t.Helper()
	var before time.Time
	if inv := getStore(t, ns, name).Status.Inventory; inv != nil && inv.LastSendTime != nil {
		before = inv.LastSendTime.Time
	}
	if _, err := s.sim.Sale(storeID, []smaregisim.SaleLine{{ProductID: "8000001", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, name+"'s lastSendTime to move", func() bool {
		inv := getStore(t, ns, name).Status.Inventory
		return inv != nil && inv.LastSendTime != nil && inv.LastSendTime.After(before)
	})
}

// TestOneSendURLPerContract: both stores of a contract publish one URL; with
// Smaregi pointed at it, deleting one store leaves the other receiving. A
// Smaregi still configured with a store's pre-contract URL and key (what
// operator versions before one URL per contract published) keeps reaching
// every store of the contract while that store exists.
func TestOneSendURLPerContract(t *testing.T) {
	ctx := context.Background()
	s := newShop(t, "e2econtract", []string{"1", "2"}, 5)
	ns := newNamespace(t, "contract")
	startOperator(t, newOperatorConfig(t))
	declareStores(t, ns, s, time.Minute, "1", "2")
	one, two := waitReady(t, ns, "store-1"), waitReady(t, ns, "store-2")
	if one.Status.Receiver.URL != two.Status.Receiver.URL {
		t.Fatalf("the stores of one contract publish %s and %s", one.Status.Receiver.URL, two.Status.Receiver.URL)
	}

	t.Run("a Smaregi configured with a store's old URL and key still reaches every store", func(t *testing.T) {
		// The key Secret the operator used to make for store-1.
		yes := true
		legacy := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: one.ReceiverKeySecretName(),
			Labels: map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: smaregiv1alpha1.GroupVersion.String(), Kind: "SmaregiStore",
				Name: one.Name, UID: one.UID, Controller: &yes, BlockOwnerDeletion: &yes}}},
			StringData: map[string]string{"goqsystem_key": "key-from-before-the-contract-url"}}
		if err := kube.Create(ctx, legacy); err != nil {
			t.Fatal(err)
		}
		oldURL := strings.TrimSuffix(one.Status.Receiver.URL, one.Status.Receiver.RouteID) + string(one.UID)
		if err := s.sim.SetSendConfig(smaregisim.SendConfig{URL: oldURL,
			Params:    map[string]string{"goqsystem_key": "key-from-before-the-contract-url"},
			Functions: []string{"transaction_send", "stock_send"}}); err != nil {
			t.Fatal(err)
		}
		sendsArrive(t, s, ns, "store-1", "1")
		sendsArrive(t, s, ns, "store-2", "2")
	})

	t.Run("with Smaregi at the contract URL, deleting one store leaves the other receiving", func(t *testing.T) {
		connectSends(t, s, two)
		sendsArrive(t, s, ns, "store-1", "1")
		if err := kube.Delete(ctx, getStore(t, ns, "store-1")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "store-1 to be gone", func() bool {
			err := kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: "store-1"}, &smaregiv1alpha1.SmaregiStore{})
			return apierrors.IsNotFound(err)
		})
		sendsArrive(t, s, ns, "store-2", "2")
		if got := getStore(t, ns, "store-2").Status.Receiver.URL; got != two.Status.Receiver.URL {
			t.Errorf("store-2's URL changed from %s to %s", two.Status.Receiver.URL, got)
		}
	})
}
