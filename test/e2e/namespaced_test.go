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
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
)

// TestNamespacedModeIgnoresStoresOutside runs the operator as a
// ServiceAccount holding exactly the RBAC of config/namespaced (its
// ClusterRole without Secret rules, Secret rights by a RoleBinding in the
// watched namespace only) with --watch-namespaces. A store in the watched
// namespace becomes Ready and takes sends; an identical store elsewhere is ignored
// entirely: no status, no key Secret, and the hub API answers 404 for it.
// Any cache that still listed Secrets cluster-wide would be forbidden and
// the watched store would never become Ready.
func TestNamespacedModeIgnoresStoresOutside(t *testing.T) {
	ctx := context.Background()
	watched, outside, opNS := newNamespace(t, "watched"), newNamespace(t, "outside"), newNamespace(t, "operator")

	var managerRole, secretsRole *rbacv1.ClusterRole
	var secretsBinding, keyBinding *rbacv1.RoleBinding
	var keyRole *rbacv1.Role
	var watchArg string
	for _, doc := range renderKustomize(t, "config/namespaced") {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(doc, &u.Object); err != nil || u.Object == nil {
			continue
		}
		switch {
		case u.GetKind() == "ClusterRole" && u.GetName() == "smaregi-operator-manager-role":
			managerRole = &rbacv1.ClusterRole{}
			mustUnmarshal(t, doc, managerRole)
		case u.GetKind() == "ClusterRole" && u.GetName() == "smaregi-operator-manager-secrets":
			secretsRole = &rbacv1.ClusterRole{}
			mustUnmarshal(t, doc, secretsRole)
		case u.GetKind() == "RoleBinding" && u.GetName() == "smaregi-operator-manager-secrets":
			secretsBinding = &rbacv1.RoleBinding{}
			mustUnmarshal(t, doc, secretsBinding)
		case u.GetKind() == "Role" && u.GetName() == "smaregi-operator-platform-webhook-key":
			keyRole = &rbacv1.Role{}
			mustUnmarshal(t, doc, keyRole)
		case u.GetKind() == "RoleBinding" && u.GetName() == "smaregi-operator-platform-webhook-key":
			keyBinding = &rbacv1.RoleBinding{}
			mustUnmarshal(t, doc, keyBinding)
		case u.GetKind() == "Deployment":
			args, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
			for _, c := range args {
				cargs, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
				for _, a := range cargs {
					if strings.HasPrefix(a, "--watch-namespaces=") {
						watchArg = a
					}
				}
			}
		}
	}
	if managerRole == nil || secretsRole == nil || secretsBinding == nil || keyRole == nil || keyBinding == nil || watchArg == "" {
		t.Fatalf("config/namespaced lacks a piece: manager role %v, secrets role %v, binding %v, webhook key role %v and binding %v, %q",
			managerRole != nil, secretsRole != nil, secretsBinding != nil, keyRole != nil, keyBinding != nil, watchArg)
	}
	for _, r := range managerRole.Rules {
		for _, res := range r.Resources {
			if res == "secrets" {
				t.Fatalf("the namespaced ClusterRole still grants Secrets cluster-wide: %+v", r)
			}
		}
	}

	// The rendered objects, bound to this test's ServiceAccount and
	// namespaces (ClusterRoles renamed so they do not clash).
	const sa = "manager"
	if err := kube.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: opNS, Name: sa}}); err != nil {
		t.Fatal(err)
	}
	subject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: opNS}}
	for _, r := range []*rbacv1.ClusterRole{managerRole, secretsRole} {
		r.ObjectMeta = metav1.ObjectMeta{Name: opNS + "-" + r.Name}
		if err := kube.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if err := kube.Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: managerRole.Name},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: managerRole.Name},
		Subjects: subject}); err != nil {
		t.Fatal(err)
	}
	secretsBinding.ObjectMeta = metav1.ObjectMeta{Namespace: watched, Name: secretsBinding.Name}
	secretsBinding.RoleRef.Name, secretsBinding.Subjects = secretsRole.Name, subject
	if err := kube.Create(ctx, secretsBinding); err != nil {
		t.Fatal(err)
	}
	// The Platform webhook key's Secret, in the operator's own namespace.
	keyRole.ObjectMeta = metav1.ObjectMeta{Namespace: opNS, Name: keyRole.Name}
	if err := kube.Create(ctx, keyRole); err != nil {
		t.Fatal(err)
	}
	keyBinding.ObjectMeta = metav1.ObjectMeta{Namespace: opNS, Name: keyBinding.Name}
	keyBinding.Subjects = subject
	if err := kube.Create(ctx, keyBinding); err != nil {
		t.Fatal(err)
	}

	// The same shop declared in both namespaces, the outside one first.
	s := newShop(t, "e2enamespaced", []string{"1"}, 5)
	declareStores(t, outside, s, time.Minute, "1")
	declareStores(t, watched, s, time.Minute, "1")

	c := newOperatorConfig(t)
	c.kubeconfig = serviceAccountKubeconfig(t, opNS, sa)
	// The overlay names its example namespace; the test watches its own.
	// Outside a Pod the operator's namespace is not known: name it, as the
	// Pod's namespace would.
	c.extraArgs = []string{"--watch-namespaces=" + watched, "--platform-webhook-key-secret=" + opNS + "/smaregi-platform-webhook-key"}
	op := startOperator(t, c)

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
	op.stop()
	if log := readFile(op.logPath); strings.Contains(log, "forbidden") {
		t.Errorf("the operator was refused by RBAC in namespaced mode:\n%s", tail(log, 4096))
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

// serviceAccountKubeconfig writes a kubeconfig with a token of the
// ServiceAccount, for the API server's own audience, as a Pod's would be.
func serviceAccountKubeconfig(t *testing.T, ns, sa string) string {
	t.Helper()
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: restConfig.Host, CertificateAuthorityData: restConfig.CAData}
	kc.AuthInfos["e2e"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e"}
	kc.CurrentContext = "e2e"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	return path
}
