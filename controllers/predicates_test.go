package controllers

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/event"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

func TestInventorySyncedChangedPredicate(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC))
	with := func(c *metav1.Condition, skus int64) *smaregiv1alpha1.SmaregiStore {
		s := testStore()
		s.Status.Inventory = &smaregiv1alpha1.InventoryStatus{SKUs: skus}
		if c != nil {
			s.Status.Conditions = []metav1.Condition{*c}
		}
		return s
	}
	synced := func(status metav1.ConditionStatus, reason, message string) *metav1.Condition {
		return &metav1.Condition{Type: smaregiv1alpha1.InventorySyncedCondition, Status: status,
			Reason: reason, Message: message, ObservedGeneration: 2, LastTransitionTime: at}
	}
	unreachable := synced(metav1.ConditionFalse, smaregiv1alpha1.ReasonUnreachable, "Smaregi did not answer")
	cases := []struct {
		name     string
		old, new *smaregiv1alpha1.SmaregiStore
		want     bool
	}{
		{"status", with(unreachable, 1), with(synced(metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded, "ok"), 1), true},
		{"reason while False", with(unreachable, 1),
			with(synced(metav1.ConditionFalse, smaregiv1alpha1.ReasonFunctionDisabled, "Smaregi did not answer"), 1), true},
		{"message while False", with(unreachable, 1),
			with(synced(metav1.ConditionFalse, smaregiv1alpha1.ReasonUnreachable, "connection refused"), 1), true},
		{"appears", with(nil, 0), with(unreachable, 0), true},
		{"only inventory figures", with(unreachable, 1), with(unreachable, 7), false},
		{"only observedGeneration and time", with(unreachable, 1), func() *smaregiv1alpha1.SmaregiStore {
			c := *unreachable
			c.ObservedGeneration, c.LastTransitionTime = 3, metav1.NewTime(at.Add(time.Minute))
			return with(&c, 1)
		}(), false},
	}
	p := inventorySyncedChanged()
	for _, c := range cases {
		if got := p.Update(event.UpdateEvent{ObjectOld: c.old, ObjectNew: c.new}); got != c.want {
			t.Errorf("%s: Update = %v, want %v", c.name, got, c.want)
		}
	}
}
