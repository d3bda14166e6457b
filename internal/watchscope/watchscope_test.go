package watchscope

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// countingReader records every call that reaches it: the stand-in for the
// API server, whose only property under test is whether it is called.
type countingReader struct{ calls []string }

func (c *countingReader) Get(_ context.Context, key client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	c.calls = append(c.calls, "get "+key.String())
	return nil
}

func (c *countingReader) List(_ context.Context, _ client.ObjectList, opts ...client.ListOption) error {
	c.calls = append(c.calls, "list "+(&client.ListOptions{}).ApplyOptions(opts).Namespace)
	return nil
}

func TestParse(t *testing.T) {
	n, err := Parse([]string{" shops ", "", "alpha", "shops"})
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Names(); len(got) != 2 || got[0] != "alpha" || got[1] != "shops" {
		t.Fatalf("Names() = %v, want [alpha shops]", got)
	}
	if n.All() || !n.Contains("shops") || n.Contains("kube-system") || n.Contains("") {
		t.Fatalf("scope %v: All=%v Contains(shops)=%v Contains(kube-system)=%v", n.Names(), n.All(), n.Contains("shops"), n.Contains("kube-system"))
	}
	if len(CacheNamespaces(n.Names())) != 2 {
		t.Fatalf("CacheNamespaces() = %v", CacheNamespaces(n.Names()))
	}
	if _, err := Parse([]string{"Not_A_Namespace"}); err == nil {
		t.Fatal("an invalid namespace name was accepted")
	}
	all, err := Parse(nil)
	if err != nil || !all.All() || !all.Contains("anything") || CacheNamespaces(all.Names()) != nil {
		t.Fatalf("empty list: All=%v CacheNamespaces=%v err=%v", all.All(), CacheNamespaces(all.Names()), err)
	}
}

// TestReadsOutsideNeverReachTheAPIServer: in a limited scope a Get of a
// Secret in another namespace is NotFound and a List there is empty, and
// neither is sent on; reads inside go through.
func TestReadsOutsideNeverReachTheAPIServer(t *testing.T) {
	n, err := Parse([]string{"shops"})
	if err != nil {
		t.Fatal(err)
	}
	inner := &countingReader{}
	r := n.Reader(inner)
	ctx := context.Background()

	err = r.Get(ctx, types.NamespacedName{Namespace: "kube-system", Name: "db-creds"}, &corev1.Secret{})
	if !apierrors.IsNotFound(err) {
		t.Fatalf("Get outside the scope: %v, want NotFound", err)
	}
	list := &corev1.SecretList{Items: []corev1.Secret{{}}}
	if err := r.List(ctx, list, client.InNamespace("kube-system")); err != nil || len(list.Items) != 0 {
		t.Fatalf("List outside the scope: %d items, %v; want none", len(list.Items), err)
	}
	if err := r.List(ctx, &corev1.SecretList{}); err == nil {
		t.Fatal("a List across all namespaces was allowed in a limited scope")
	}
	if len(inner.calls) != 0 {
		t.Fatalf("reads outside the scope reached the API server: %v", inner.calls)
	}

	if err := r.Get(ctx, types.NamespacedName{Namespace: "shops", Name: "creds"}, &corev1.Secret{}); err != nil {
		t.Fatal(err)
	}
	if err := r.List(ctx, &corev1.SecretList{}, client.InNamespace("shops")); err != nil {
		t.Fatal(err)
	}
	if len(inner.calls) != 2 {
		t.Fatalf("reads inside the scope: %v, want both sent on", inner.calls)
	}

	all, _ := Parse(nil)
	if all.Reader(inner) != client.Reader(inner) {
		t.Fatal("the cluster-wide scope must not wrap the reader")
	}
}
