/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
)

// TestNamespacedModeIgnoresStoresOutside runs the operator with the RBAC
// of the chart rendered with watchNamespaces (its ClusterRole without
// Secret rules, Secret rights by a Role in the watched namespace only, the
// Platform webhook key's Secret by name in its own namespace) and the
// --watch-namespaces the chart gives it. A store in the watched namespace
// becomes Ready and takes sends; an identical store elsewhere is ignored
// entirely: no status, no key Secret, and the hub API answers 404 for it.
// Any cache that still listed Secrets cluster-wide would be forbidden and
// the watched store would never become Ready.
func TestNamespacedModeIgnoresStoresOutside(t *testing.T) {
	ctx := context.Background()
	watched, outside := newNamespace(t, "watched"), newNamespace(t, "outside")
	in := installChart(t, watched)
	if !slices.Contains(in.args, "--watch-namespaces="+watched) {
		t.Fatalf("the chart rendered with watchNamespaces gives the operator %q, without --watch-namespaces=%s", in.args, watched)
	}
	// The identity itself, before any operator: Secrets in the watched
	// namespace only (what a broader ClusterRole would hide).
	for _, c := range []struct {
		ns   string
		want bool
	}{{watched, true}, {outside, false}} {
		if got := canAs(t, in, "list", "secrets", c.ns); got != c.want {
			t.Errorf("the chart's ServiceAccount may list Secrets in %s: %v, want %v", c.ns, got, c.want)
		}
	}

	// The same shop declared in both namespaces, the outside one first.
	s := newShop(t, "e2enamespaced", []string{"1"}, 5)
	declareStores(t, outside, s, time.Minute, "1")
	declareStores(t, watched, s, time.Minute, "1")

	op := startOperator(t, newOperatorConfigFor(t, in))

	waitReady(t, watched, "store-1")
	viewer := bearerToken(t, watched, "dashboard", hubapi.StockViewerRole)
	waitFor(t, 30*time.Second, "the watched store's import", func() bool {
		l, code := hubStock(t, op, viewer, watched, "store-1")
		return code == http.StatusOK && l.SKUs == 5
	})

	// The receiver finds the watched store's route through the
	// namespace-limited cache: a sale reaches the mirror by its send, well
	// before the one-minute poll.
	connectSends(t, s, getStore(t, watched, "store-1"))
	ringUp(t, s, 3, []string{"1"}, 5, 7)
	waitFor(t, 30*time.Second, "the sale's send to reach the watched store's mirror", func() bool {
		return mirrorDiff(t, op, viewer, s, watched, "store-1", "1") == ""
	})

	st := getStore(t, outside, "store-1")
	if st.Status.ObservedGeneration != 0 || len(st.Status.Conditions) != 0 || st.Status.Receiver != nil || st.Status.Inventory != nil {
		t.Errorf("the store outside --watch-namespaces has status written: %+v", st.Status)
	}
	var keys corev1.SecretList
	if err := kube.List(ctx, &keys, client.InNamespace(outside)); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys.Items {
		if k.Labels[smaregiv1alpha1.ManagedByLabel] == smaregiv1alpha1.ManagedByValue {
			t.Errorf("the operator created Secret %s/%s outside --watch-namespaces", outside, k.Name)
		}
	}
	outsideViewer := bearerToken(t, outside, "dashboard", hubapi.StockViewerRole)
	if _, code := hubStock(t, op, outsideViewer, outside, "store-1"); code != http.StatusNotFound {
		t.Errorf("hub API for a store outside --watch-namespaces: %d, want 404", code)
	}
}

// renderKustomize builds a kustomization (a directory of the repository,
// or an absolute path) with the kubectl of the control plane, split into
// YAML documents.
func renderKustomize(t *testing.T, dir string) [][]byte {
	t.Helper()
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot, dir)
	}
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	out, err := exec.Command(kubectl, "kustomize", dir).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", dir, err)
	}
	var docs [][]byte
	for _, d := range bytes.Split(out, []byte("\n---\n")) {
		if len(bytes.TrimSpace(d)) > 0 {
			docs = append(docs, d)
		}
	}
	return docs
}

func mustUnmarshal(t *testing.T, doc []byte, into any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, into); err != nil {
		t.Fatal(err)
	}
}
