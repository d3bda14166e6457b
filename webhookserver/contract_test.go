package webhookserver

import (
	"net/http"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// contractFixture: stores x (store 1) and y (store 2) of contract K in
// namespace shops publish one contract route, whose key Secret both own
// (plain owner references, as the controller makes it). Store x also still
// has its pre-contract key Secret, and its UID was its old route.
func contractFixture(owners ...string) []client.Object {
	const route = "contract-route-uid"
	mk := func(name, id, uid string) *smaregiv1alpha1.SmaregiStore {
		st := store(nsShops, name, "K", id, route)
		st.UID = types.UID(uid)
		st.Status.Receiver.KeySecretRef = &smaregiv1alpha1.SecretKeyReference{
			Name: smaregiv1alpha1.ContractKeySecretName("K"), Key: "goqsystem_key"}
		return st
	}
	x, y := mk("store-x", "1", "uid-x"), mk("store-y", "2", "uid-y")
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsShops, Name: smaregiv1alpha1.ContractKeySecretName("K"),
			Labels: map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue}},
		Data: map[string][]byte{"goqsystem_key": []byte("contract-key")},
	}
	for _, o := range owners {
		secret.OwnerReferences = append(secret.OwnerReferences, metav1.OwnerReference{
			APIVersion: smaregiv1alpha1.GroupVersion.String(), Kind: "SmaregiStore", Name: "store-" + o, UID: types.UID("uid-" + o)})
	}
	legacy := keySecret(nsShops, "store-x", "uid-x", "goqsystem_key", "old-key-of-x")
	return []client.Object{x, y, secret, legacy}
}

func TestOneRoutePerContract(t *testing.T) {
	h := newHarness(t, nil, contractFixture("x", "y")...)
	const both = `{"data":[{"table_name":"Stock","rows":[{"storeId":"1","productId":"8000001","amount":"-1","stockAmount":"2"},{"storeId":"2","productId":"8000001","amount":"-1","stockAmount":"2"}]}]}`
	got := postForm(t, h.url("contract-route-uid"), sendForm(ProcStockSend, both, "goqsystem_key", "contract-key"))
	if got.status != http.StatusOK {
		t.Fatalf("contract route: status %d %q", got.status, got.body)
	}
	sends := h.sink.Sends()
	if len(sends) != 1 || len(sends[0].Targets) != 2 {
		t.Fatalf("sends %+v, want one send for both stores", sends)
	}

	// The pre-contract URL of store x (its UID) with its old key still
	// reaches every store of the contract, and so does the contract key.
	for _, key := range []string{"old-key-of-x", "contract-key"} {
		if got := postForm(t, h.url("uid-x"), sendForm(ProcStockSend, both, "goqsystem_key", key)); got.status != http.StatusOK {
			t.Errorf("old route of store x with %s: status %d %q", key, got.status, got.body)
		}
	}
	if got := postForm(t, h.url("uid-x"), sendForm(ProcStockSend, both, "goqsystem_key", "wrong")); got.status != http.StatusUnauthorized {
		t.Errorf("old route with a wrong key: status %d, want 401", got.status)
	}
	// Store y has no old key Secret: its UID is no route at all, not even
	// with the contract key (issue 20 §1).
	for _, key := range []string{"old-key-of-x", "contract-key"} {
		if got := postForm(t, h.url("uid-y"), sendForm(ProcStockSend, both, "goqsystem_key", key)); got.status != http.StatusNotFound {
			t.Errorf("UID of y, which has no old key Secret, with %s: status %d, want 404", key, got.status)
		}
	}
}

// TestStoreUIDRouteOnlyWhileItsOldKeySecretExists: a store's UID is a route
// only while the key Secret an operator before one key per contract made
// for that store exists (labelled, controlled by the store); otherwise the
// UID, which anyone who can read the store knows, would be a second public
// route to the contract (issue 20 §1).
func TestStoreUIDRouteOnlyWhileItsOldKeySecretExists(t *testing.T) {
	objs := contractFixture("x", "y")
	legacy := objs[3].(*corev1.Secret)
	h := newHarness(t, nil, objs...)
	if got := postForm(t, h.url("uid-x"), sendForm(ProcStockSend, stockParams, "goqsystem_key", "contract-key")); got.status != http.StatusOK {
		t.Fatalf("UID of x with its old key Secret: status %d %q, want 200", got.status, got.body)
	}

	unlabelled := legacy.DeepCopy()
	unlabelled.ResourceVersion = ""
	unlabelled.Labels = nil
	planted := legacy.DeepCopy()
	planted.ResourceVersion = ""
	planted.OwnerReferences = nil
	for name, secret := range map[string]*corev1.Secret{"deleted": nil, "not labelled": unlabelled, "not controlled by x": planted} {
		objs := contractFixture("x", "y")[:3]
		if secret != nil {
			objs = append(objs, secret)
		}
		h := newHarness(t, nil, objs...)
		for _, key := range []string{"old-key-of-x", "contract-key"} {
			got := postForm(t, h.url("uid-x"), sendForm(ProcStockSend, stockParams, "goqsystem_key", key))
			if got.status != http.StatusNotFound {
				t.Errorf("old key Secret %s, %s on x's UID: status %d, want 404", name, key, got.status)
			}
		}
		if n := h.sink.Len(); n != 0 {
			t.Errorf("old key Secret %s: sink holds %d sends", name, n)
		}
	}
}

func TestContractKeySecretMustBeOwnedByTheContract(t *testing.T) {
	// Owned by store x only (y joined later, or x was deleted): still good
	// for every store on the route.
	h := newHarness(t, nil, contractFixture("y")...)
	if got := postForm(t, h.url("contract-route-uid"), sendForm(ProcStockSend, stockParams, "goqsystem_key", "contract-key")); got.status != http.StatusOK {
		t.Errorf("owned by one store of the contract: status %d %q", got.status, got.body)
	}
	// Owned by no store of the route: a planted Secret.
	h = newHarness(t, nil, contractFixture("z")...)
	if got := postForm(t, h.url("contract-route-uid"), sendForm(ProcStockSend, stockParams, "goqsystem_key", "contract-key")); got.status != http.StatusUnauthorized {
		t.Errorf("owned by no store of the contract: status %d, want 401", got.status)
	}
}
