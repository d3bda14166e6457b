package controllers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// TestOneKeyAndURLPerContract: two stores of one contract publish the same
// URL and key Secret, owned by both; a rotation asked on one rotates the
// contract's key and both say so; the Secret outlives the first deletion
// and goes with the last.
func TestOneKeyAndURLPerContract(t *testing.T) {
	ctx := context.Background()
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "a-token", "accessToken", simToken))
	mustCreate(t, tokenSecret(ns, "b-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "a", s.endpoint))
	a := waitCondition(t, ns, "a", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	b := newStore(ns, "b", s.endpoint)
	// A rotate-key value set before joining must not rotate the shared key.
	b.Annotations = map[string]string{smaregiv1alpha1.RotateKeyAnnotation: "before-joining"}
	mustCreate(t, b)
	b = waitCondition(t, ns, "b", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	if a.Status.Receiver.URL != b.Status.Receiver.URL || *a.Status.Receiver.KeySecretRef != *b.Status.Receiver.KeySecretRef {
		t.Fatalf("receivers differ: %+v vs %+v", a.Status.Receiver, b.Status.Receiver)
	}
	sec := keySecret(t, ns, "a")
	if len(sec.OwnerReferences) != 2 {
		t.Errorf("key Secret owners %+v, want both stores", sec.OwnerReferences)
	}
	if _, ok := sec.Data["goqsystem_key.previous"]; ok {
		t.Error("joining with a rotate-key annotation rotated the shared key")
	}
	waitEvent(t, ns, "b", "KeyShared")
	k1 := string(sec.Data["goqsystem_key"])

	updateStore(t, ns, "a", func(st *smaregiv1alpha1.SmaregiStore) {
		st.Annotations = map[string]string{smaregiv1alpha1.RotateKeyAnnotation: "r1"}
	})
	for _, name := range []string{"a", "b"} {
		st := waitCondition(t, ns, name, smaregiv1alpha1.ReceiverReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonKeyRotating)
		if msg := cond(st, smaregiv1alpha1.ReceiverReadyCondition).Message; !strings.Contains(msg, "receiver key of contract") {
			t.Errorf("%s: ReceiverReady %q does not say the contract's key rotated", name, msg)
		}
	}
	sec = keySecret(t, ns, "b")
	if string(sec.Data["goqsystem_key.previous"]) != k1 || string(sec.Data["goqsystem_key"]) == k1 {
		t.Error("the contract's key did not rotate")
	}

	if err := live.Delete(ctx, getStore(t, ns, "a")); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "a")
	sec = keySecret(t, ns, "b")
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].Name != "b" {
		t.Errorf("after deleting a, owners %+v, want b only", sec.OwnerReferences)
	}
	name := sec.Name
	if err := live.Delete(ctx, getStore(t, ns, "b")); err != nil {
		t.Fatal(err)
	}
	waitGone(t, ns, "b")
	eventually(t, waitLong, func() error {
		err := live.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, sec)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("key Secret still there after the last store (err %v)", err)
	})
}
