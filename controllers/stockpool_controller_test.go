package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

func getPool(t *testing.T, ns, name string) *smaregiv1alpha1.StockPool {
	t.Helper()
	p := &smaregiv1alpha1.StockPool{}
	if err := live.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestStockPoolStatus: a pool's status follows its selector and its
// members' state: no member, then one active (Ready) member (with the distinct
// products of the members' mirrors), then a second that is not Ready.
func TestStockPoolStatus(t *testing.T) {
	s := startSim(t)
	ns := newNamespace(t)
	ctx := context.Background()
	mustCreate(t, &smaregiv1alpha1.StockPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kanto"},
		Spec: smaregiv1alpha1.StockPoolSpec{
			StoreSelector:    metav1.LabelSelector{MatchLabels: map[string]string{"pool": "kanto"}},
			MemberPriorities: []smaregiv1alpha1.MemberPriority{{Store: "shop", Priority: 5}},
		},
	})
	readyIs := func(status metav1.ConditionStatus, reason string) func() error {
		return func() error {
			c := meta.FindStatusCondition(getPool(t, ns, "kanto").Status.Conditions, smaregiv1alpha1.ReadyCondition)
			if c == nil || c.Status != status || c.Reason != reason {
				return fmt.Errorf("Ready = %+v, want %s/%s", c, status, reason)
			}
			return nil
		}
	}
	eventually(t, waitLong, readyIs(metav1.ConditionFalse, smaregiv1alpha1.ReasonNoMembers))

	for _, p := range []string{"1", "2"} {
		if _, err := outbox.ApplyPull(ctx, inventory.StoreKey{Namespace: ns, Name: "shop"}, []inventory.Row{{ProductID: p, StockAmount: 1}}, fakeClock.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := outbox.ApplyPull(ctx, inventory.StoreKey{Namespace: ns, Name: "closed"}, []inventory.Row{{ProductID: "3", StockAmount: 1}}, fakeClock.Now()); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	shop := newStore(ns, "shop", s.endpoint)
	shop.Labels = map[string]string{"pool": "kanto"}
	mustCreate(t, shop)
	eventually(t, waitLong, readyIs(metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded))
	// Active at once; Ready once the store's credentials are checked.
	eventually(t, waitLong, func() error {
		p := getPool(t, ns, "kanto")
		if len(p.Status.Members) != 1 || p.Status.Members[0] != (smaregiv1alpha1.StockPoolMember{Name: "shop", Priority: 5, Ready: true, Active: true}) ||
			p.Status.ActiveMembers != 1 || p.Status.SKUs != 2 || p.Status.ObservedGeneration != p.Generation {
			return fmt.Errorf("status = %+v", p.Status)
		}
		return nil
	})

	// A suspended member is listed and not counted:
	// its products are not the pool's.
	closed := newStore(ns, "closed", s.endpoint)
	closed.Labels = map[string]string{"pool": "kanto"}
	closed.Spec.Suspend = true
	mustCreate(t, closed)
	eventually(t, waitLong, func() error {
		p := getPool(t, ns, "kanto")
		if len(p.Status.Members) != 2 || p.Status.Members[0].Name != "closed" || p.Status.Members[0].Active || p.Status.ActiveMembers != 1 || p.Status.SKUs != 2 {
			return fmt.Errorf("status = %+v", p.Status)
		}
		return nil
	})
	for _, typ := range []string{smaregiv1alpha1.ReconcilingCondition, smaregiv1alpha1.StalledCondition} {
		if c := meta.FindStatusCondition(getPool(t, ns, "kanto").Status.Conditions, typ); c == nil || c.Status != metav1.ConditionFalse {
			t.Errorf("%s = %+v, want False", typ, c)
		}
	}
}

// poolConditionIs waits until the pool's condition typ has status and
// reason (absent when status is ""), and returns it.
func poolConditionIs(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) metav1.Condition {
	t.Helper()
	var got metav1.Condition
	eventually(t, waitLong, func() error {
		c := meta.FindStatusCondition(getPool(t, ns, name).Status.Conditions, typ)
		switch {
		case status == "" && c != nil:
			return fmt.Errorf("%s still there: %+v", typ, c)
		case status == "":
			return nil
		case c == nil || c.Status != status || c.Reason != reason:
			return fmt.Errorf("%s = %+v, want %s/%s", typ, c, status, reason)
		}
		got = *c
		return nil
	})
	return got
}

// TestStockPoolSafetyStockOverridesCondition: a pool's
// SafetyStockOverridesValid follows the ConfigMap its
// safetyStockOverridesRef names (missing, unlabelled, bad entries, fixed),
// never touches Ready, and goes with the ref. One ConfigMap may serve a
// store and a pool: a change of it reaches both.
func TestStockPoolSafetyStockOverridesCondition(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	mustCreate(t, &smaregiv1alpha1.StockPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kanto"},
		Spec: smaregiv1alpha1.StockPoolSpec{
			StoreSelector:           metav1.LabelSelector{MatchLabels: map[string]string{"pool": "kanto"}},
			SafetyStock:             1,
			SafetyStockOverridesRef: &smaregiv1alpha1.ConfigMapReference{Name: "overrides"},
		},
	})
	st := newStore(ns, "s", "http://127.0.0.1:1/access/")
	st.Spec.SafetyStockOverridesRef = &smaregiv1alpha1.ConfigMapReference{Name: "overrides"}
	mustCreate(t, st)
	c := poolConditionIs(t, ns, "kanto", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonConfigMapNotFound)
	if !strings.Contains(c.Message, smaregiv1alpha1.SafetyStockOverridesLabel) {
		t.Errorf("ConfigMapNotFound does not say how to label it: %q", c.Message)
	}
	// Ready is about members only.
	poolConditionIs(t, ns, "kanto", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonNoMembers)

	// Unlabelled: no event, found by the re-check.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "overrides"},
		Data: map[string]string{"8000001": "3", "abc": "1"}}
	mustCreate(t, cm)
	poolConditionIs(t, ns, "kanto", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonConfigMapNotLabelled)

	// Labelled: the bad entry is named, for the pool and the store alike.
	cm.Labels = map[string]string{smaregiv1alpha1.SafetyStockOverridesLabel: "true"}
	setConfigMap(t, cm)
	c = poolConditionIs(t, ns, "kanto", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonInvalidEntries)
	if !strings.Contains(c.Message, `1 of 2 entries`) || !strings.Contains(c.Message, `"abc"`) {
		t.Errorf("InvalidEntries message %q does not name the bad entry", c.Message)
	}
	waitCondition(t, ns, "s", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonInvalidEntries)

	// Fixed: True, for both.
	cm.Data = map[string]string{"8000001": "3", "8000002": "0"}
	setConfigMap(t, cm)
	c = poolConditionIs(t, ns, "kanto", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	if !strings.Contains(c.Message, "2 overrides") {
		t.Errorf("Succeeded message %q", c.Message)
	}
	waitCondition(t, ns, "s", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)

	// No ref: the condition goes; Ready stays as it was.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := getPool(t, ns, "kanto")
		p.Spec.SafetyStockOverridesRef = nil
		return live.Update(ctx, p)
	})
	if err != nil {
		t.Fatal(err)
	}
	poolConditionIs(t, ns, "kanto", smaregiv1alpha1.SafetyStockOverridesValidCondition, "", "")
	poolConditionIs(t, ns, "kanto", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonNoMembers)
}
