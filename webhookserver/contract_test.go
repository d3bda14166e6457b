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
	// Store y had no old key Secret: its old route takes only the contract key.
	if got := postForm(t, h.url("uid-y"), sendForm(ProcStockSend, both, "goqsystem_key", "old-key-of-x")); got.status != http.StatusUnauthorized {
		t.Errorf("old route of y with x's old key: status %d, want 401", got.status)
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
