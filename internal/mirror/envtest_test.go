package mirror

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// TestEngineAgainstKubeAPIServer runs the engine in a manager against a real
// kube-apiserver: the watch fills the registry, the token comes from the
// Secret, status is applied under the engine's own field manager without
// touching another manager's condition, and deleting the store drops its
// mirror rows.
func TestEngineAgainstKubeAPIServer(t *testing.T) {
	cfg := kubeControlPlane(t)
	h := newHarness(t, nil)
	e, err := New(Options{Inventory: h.inv, Readers: h.readers(), Tick: 20 * time.Millisecond, StatusInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	startInManager(t, cfg, e)
	ctx := context.Background()
	live := liveClient(t, cfg)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(live.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testKey.Namespace}}))
	must(live.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testKey.Namespace, Name: "smaregi-credentials",
		Labels: map[string]string{v1alpha1.CredentialsLabel: "true"}},
		Data: map[string][]byte{"accessToken": []byte(testToken)}}))
	store := &v1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: testKey.Namespace, Name: testKey.Name},
		Spec: v1alpha1.SmaregiStoreSpec{ContractID: testContract, StoreID: "1", Endpoint: h.endpoint,
			CredentialsRef: v1alpha1.SecretKeyReference{Name: "smaregi-credentials"}}}
	must(live.Create(ctx, store))
	// The SmaregiStore controller's condition, under its manager.
	other := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(), "kind": "SmaregiStore",
		"metadata": map[string]any{"namespace": testKey.Namespace, "name": testKey.Name},
		"status": map[string]any{"conditions": []any{map[string]any{"type": v1alpha1.ReceiverReadyCondition,
			"status": "True", "reason": v1alpha1.ReasonKeyProvisioned, "message": "m",
			"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}},
	}}
	must(live.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(other), client.FieldOwner("smaregi-operator"), client.ForceOwnership))

	var got v1alpha1.SmaregiStore
	waitFor(t, 30*time.Second, "status.inventory and InventorySynced", func() bool {
		if err := live.Get(ctx, client.ObjectKeyFromObject(store), &got); err != nil {
			return false
		}
		c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.InventorySyncedCondition)
		return c != nil && c.Status == metav1.ConditionTrue && got.Status.Inventory != nil &&
			got.Status.Inventory.SKUs == 50 && got.Status.Inventory.LastFullSyncTime != nil
	})
	if meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ReceiverReadyCondition) == nil {
		t.Error("the engine's apply removed the controller's ReceiverReady condition")
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatal(d)
	}
	owners := map[string]bool{}
	for _, mf := range got.ManagedFields {
		if mf.Subresource == "status" {
			owners[mf.Manager] = true
		}
	}
	if !owners[FieldManager] || !owners["smaregi-operator"] {
		t.Errorf("status managers %v, want both %s and smaregi-operator", owners, FieldManager)
	}

	must(live.Delete(ctx, store))
	waitFor(t, 30*time.Second, "mirror rows to be removed", func() bool {
		return len(mirrorRows(t, h.inv, testKey)) == 0
	})
}

// TestFixedSecretLiftsTheBackoffAgainstKubeAPIServer: GitOps applies the
// store before its Secret. The engine's first pull fails (SecretNotFound) and
// backs off long. The Secret is created and the SmaregiStore controller
// (played here) reports CredentialsValid=True: the engine's watch passes
// that status change and the engine imports at once, with the generation
// unchanged.
func TestFixedSecretLiftsTheBackoffAgainstKubeAPIServer(t *testing.T) {
	cfg := kubeControlPlane(t)
	h := newHarness(t, nil)
	e, err := New(Options{Inventory: h.inv, Readers: h.readers(), Tick: 20 * time.Millisecond, StatusInterval: 50 * time.Millisecond,
		ConfigBackoff: time.Hour, ConfigBackoffMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	startInManager(t, cfg, e)
	ctx := context.Background()
	live := liveClient(t, cfg)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	credentialsValid := func(status metav1.ConditionStatus, reason string) {
		t.Helper()
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": v1alpha1.GroupVersion.String(), "kind": "SmaregiStore",
			"metadata": map[string]any{"namespace": testKey.Namespace, "name": testKey.Name},
			"status": map[string]any{"conditions": []any{map[string]any{"type": v1alpha1.CredentialsValidCondition,
				"status": string(status), "reason": reason, "message": "m",
				"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}}},
		}}
		must(live.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner("smaregi-operator"), client.ForceOwnership))
	}
	inventorySynced := func(store *v1alpha1.SmaregiStore) *metav1.Condition {
		var got v1alpha1.SmaregiStore
		if err := live.Get(ctx, client.ObjectKeyFromObject(store), &got); err != nil {
			return nil
		}
		*store = got
		return meta.FindStatusCondition(got.Status.Conditions, v1alpha1.InventorySyncedCondition)
	}

	must(live.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: testKey.Namespace}}))
	store := &v1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: testKey.Namespace, Name: testKey.Name},
		Spec: v1alpha1.SmaregiStoreSpec{ContractID: testContract, StoreID: "1", Endpoint: h.endpoint,
			CredentialsRef: v1alpha1.SecretKeyReference{Name: "smaregi-credentials"}}}
	must(live.Create(ctx, store))
	credentialsValid(metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound)
	waitFor(t, 30*time.Second, "InventorySynced=False/SecretNotFound", func() bool {
		c := inventorySynced(store)
		return c != nil && c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonSecretNotFound
	})
	generation := store.Generation

	must(live.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testKey.Namespace, Name: "smaregi-credentials",
		Labels: map[string]string{v1alpha1.CredentialsLabel: "true"}},
		Data: map[string][]byte{"accessToken": []byte(testToken)}}))
	credentialsValid(metav1.ConditionTrue, v1alpha1.ReasonSucceeded)
	waitFor(t, 30*time.Second, "the import once the credentials are valid", func() bool {
		c := inventorySynced(store)
		return c != nil && c.Status == metav1.ConditionTrue && store.Status.Inventory != nil && store.Status.Inventory.SKUs == 50
	})
	if store.Generation != generation {
		t.Fatalf("generation moved from %d to %d: the test must recover without a spec change", generation, store.Generation)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatal(d)
	}
}
