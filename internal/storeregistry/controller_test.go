package storeregistry

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

func TestCredentialsValidChangedPredicate(t *testing.T) {
	at := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	with := func(status metav1.ConditionStatus, reason string, since time.Time, skus int64) *v1alpha1.SmaregiStore {
		s := &v1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shibuya", Generation: 1}}
		s.Status.Inventory = &v1alpha1.InventoryStatus{SKUs: skus}
		if status != "" {
			s.Status.Conditions = []metav1.Condition{{Type: v1alpha1.CredentialsValidCondition, Status: status,
				Reason: reason, Message: reason, ObservedGeneration: 1, LastTransitionTime: metav1.NewTime(since)}}
		}
		return s
	}
	notFound := with(metav1.ConditionFalse, v1alpha1.ReasonSecretNotFound, at, 0)
	cases := []struct {
		name     string
		old, new *v1alpha1.SmaregiStore
		want     bool
	}{
		{"turns True", notFound, with(metav1.ConditionTrue, v1alpha1.ReasonSucceeded, at.Add(time.Minute), 0), true},
		{"turns False", with(metav1.ConditionTrue, v1alpha1.ReasonSucceeded, at, 0), notFound, true},
		{"appears", with("", "", time.Time{}, 0), with(metav1.ConditionTrue, v1alpha1.ReasonSucceeded, at, 0), true},
		{"True again since another time", with(metav1.ConditionTrue, v1alpha1.ReasonSucceeded, at, 0),
			with(metav1.ConditionTrue, v1alpha1.ReasonSucceeded, at.Add(time.Hour), 0), true},
		{"only the reason", notFound, with(metav1.ConditionFalse, v1alpha1.ReasonInvalidAccessToken, at, 0), false},
		{"the engine's own status write", with(metav1.ConditionTrue, v1alpha1.ReasonSucceeded, at, 0),
			with(metav1.ConditionTrue, v1alpha1.ReasonSucceeded, at, 50), false},
	}
	p := credentialsValidChanged()
	for _, c := range cases {
		if got := p.Update(event.UpdateEvent{ObjectOld: c.old, ObjectNew: c.new}); got != c.want {
			t.Errorf("%s: Update = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestDeletingStoreStillPushes: a SmaregiStore held by the outbox finalizer
// is registered as deleting but not suspended, so Targets still resolves it
// and the pusher can drain the outbox the deletion waits for.
func TestDeletingStoreStillPushes(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	store := &v1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "shibuya", Generation: 1,
			DeletionTimestamp: &now, Finalizers: []string{v1alpha1.OutboxFinalizer}},
		Spec: v1alpha1.SmaregiStoreSpec{ContractID: "sk1", StoreID: "1",
			CredentialsRef: v1alpha1.SecretKeyReference{Name: "creds"}},
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "creds",
		Labels: map[string]string{v1alpha1.CredentialsLabel: "true"}},
		Data: map[string][]byte{"accessToken": []byte("tok-1")}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(store, secret).Build()
	reg := New()
	ctrl := &Controller{Registry: reg, Reader: c}
	key := inventory.StoreKey{Namespace: "shop", Name: "shibuya"}
	if _, err := ctrl.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "shibuya"}}); err != nil {
		t.Fatal(err)
	}
	cfg, ok := reg.Get(key)
	if !ok || !cfg.Deleting || cfg.Suspend {
		t.Fatalf("registered %v: %+v; want deleting and not suspended", ok, cfg)
	}
	targets := Targets{Registry: reg, Tokens: storeaccess.NewTokens(c, time.Minute, nil)}
	if got, err := targets.Target(context.Background(), key); err != nil || got.Credentials.AccessToken != "tok-1" {
		t.Errorf("Target of a deleting store = %+v, %v; want the store's target", got.StoreID, err)
	}

	// spec.suspend still wins: the user paused all calls.
	suspended := store.DeepCopy()
	suspended.Spec.Suspend = true
	if err := c.Update(context.Background(), suspended); err != nil {
		t.Fatal(err)
	}
	if _, err := ctrl.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "shop", Name: "shibuya"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := targets.Target(context.Background(), key); !storeaccess.IsConfigError(err) {
		t.Errorf("Target of a deleting, suspended store: err = %v, want a Suspended ConfigError", err)
	}
}
