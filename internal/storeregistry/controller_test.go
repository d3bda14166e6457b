package storeregistry

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
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
