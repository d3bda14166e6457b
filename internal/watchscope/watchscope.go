// Package watchscope is the set of namespaces the operator acts in
// (--watch-namespaces). Empty means every namespace (the default,
// cluster-wide mode). With a list, the manager's caches, the uncached
// reads of Secrets and the hub API's reads stay inside it, so the operator
// needs Secret access (RoleBindings) only in those namespaces and a store
// elsewhere is ignored entirely.
package watchscope

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Namespaces is the scope. The zero value is every namespace.
type Namespaces struct {
	names []string // sorted, unique; nil = every namespace
}

// Parse builds the scope from a list of namespace names; an empty list is
// every namespace. Each name must be a valid namespace name.
func Parse(names []string) (Namespaces, error) {
	var out []string
	for _, n := range names {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return Namespaces{}, fmt.Errorf("namespace %q: %s", n, strings.Join(errs, "; "))
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return Namespaces{names: slices.Compact(out)}, nil
}

// All reports whether the scope is every namespace.
func (n Namespaces) All() bool { return len(n.names) == 0 }

// Names returns the namespaces of a limited scope (nil for every namespace).
func (n Namespaces) Names() []string { return slices.Clone(n.names) }

// Contains reports whether ns is inside the scope.
func (n Namespaces) Contains(ns string) bool {
	if n.All() {
		return true
	}
	_, found := slices.BinarySearch(n.names, ns)
	return found
}

// CacheNamespaces is cache.Options.DefaultNamespaces for a list of
// namespaces (Names of a scope): nil for every namespace, otherwise one
// entry per namespace, so every informer lists and watches only there.
func CacheNamespaces(names []string) map[string]cache.Config {
	if len(names) == 0 {
		return nil
	}
	m := make(map[string]cache.Config, len(names))
	for _, ns := range names {
		m[ns] = cache.Config{}
	}
	return m
}

// Reader wraps r so that reads outside the scope never reach it: a Get
// outside answers NotFound, a List in a namespace outside answers an empty
// list, and a List across all namespaces is refused in a limited scope.
// Used for the uncached reads (credentials Secrets) and the hub API, so a
// request naming another namespace costs no call to the API server.
func (n Namespaces) Reader(r client.Reader) client.Reader {
	if n.All() {
		return r
	}
	return scopedReader{scope: n, r: r}
}

type scopedReader struct {
	scope Namespaces
	r     client.Reader
}

func (s scopedReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if !s.scope.Contains(key.Namespace) {
		return apierrors.NewNotFound(resourceOf(obj), key.Name)
	}
	return s.r.Get(ctx, key, obj, opts...)
}

func (s scopedReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	lo := (&client.ListOptions{}).ApplyOptions(opts)
	if lo.Namespace == "" {
		return fmt.Errorf("listing across all namespaces is outside --watch-namespaces (%s)", strings.Join(s.scope.names, ","))
	}
	if !s.scope.Contains(lo.Namespace) {
		return meta.SetList(list, nil)
	}
	return s.r.List(ctx, list, opts...)
}

// resourceOf names the object's kind for a NotFound error; the API group
// does not matter to callers, which only test apierrors.IsNotFound.
func resourceOf(obj client.Object) schema.GroupResource {
	if gvk := obj.GetObjectKind().GroupVersionKind(); gvk.Kind != "" {
		return schema.GroupResource{Group: gvk.Group, Resource: strings.ToLower(gvk.Kind)}
	}
	return schema.GroupResource{Resource: strings.ToLower(reflect.TypeOf(obj).Elem().Name())}
}
