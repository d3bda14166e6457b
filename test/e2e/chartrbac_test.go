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
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// helmHint is the fix whenever helm is missing: the operators of these
// tests get their permissions from the chart, and only helm renders it.
const helmHint = "the e2e operators run with the Helm chart's RBAC, rendered by `helm template`: " +
	"run `make test`, or export HELM=$(hack/build-helm.sh)"

// helmBin is $HELM, checked by TestMain.
var helmBin string

// findHelm returns $HELM, or an error saying how to get it. There is no
// fallback to the API server's admin credentials: an operator that runs
// as admin cannot show a permission the chart lacks.
func findHelm() (string, error) {
	h := os.Getenv("HELM")
	if h == "" {
		return "", errors.New("HELM is not set; " + helmHint)
	}
	if st, err := os.Stat(h); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		return "", fmt.Errorf("HELM=%s is not an executable file (%v); %s", h, err, helmHint)
	}
	return h, nil
}

// chartInstall is what `helm install` of charts/smaregi-operator creates
// for the operator's identity, in a namespace of its own: the chart's
// ServiceAccount and every Role, ClusterRole and binding the chart gives
// it, exactly as rendered. The operator process then runs with a token of
// that ServiceAccount, as the chart's Pod does, so that a permission the
// chart lacks fails a test here instead of a user's install.
type chartInstall struct {
	// namespace is the release's namespace, the operator Pod's: its
	// ServiceAccount, the leader-election Role (so the Lease) and the
	// Platform webhook key Secret are there.
	namespace string
	// serviceAccount is the chart's ServiceAccount for the operator.
	serviceAccount string
	// kubeconfig holds a TokenRequest token of that ServiceAccount, for
	// the API server's own audience, as a Pod's projected token is.
	kubeconfig string
	// args are the Deployment's flags that name what the chart's Roles
	// are scoped to (--platform-webhook-key-secret, --watch-namespaces):
	// the operator must be told the same or the Roles do not fit it.
	// Addresses, ports and paths stay the test's.
	args []string
}

// username is the ServiceAccount's user name in the API server.
func (in chartInstall) username() string {
	return "system:serviceaccount:" + in.namespace + ":" + in.serviceAccount
}

// installChart renders the chart with `helm template` under a release of
// its own in a new namespace (with watchNamespaces, when given: those
// namespaces must exist) and applies the operator's RBAC from it. Cluster
// objects carry the release name, so installs do not clash.
func installChart(t testing.TB, watchNamespaces ...string) chartInstall {
	t.Helper()
	ctx := context.Background()
	ns := newNamespace(t, "operator")
	// The release is named after its namespace: unique, and short enough
	// for every name the chart derives from it.
	release := ns
	values := []string{"-f", filepath.Join(repoRoot, "charts", "smaregi-operator", "ci", "default-values.yaml")}
	if len(watchNamespaces) > 0 {
		values = append(values, "--set", "watchNamespaces={"+strings.Join(watchNamespaces, ",")+"}")
	}
	objs, err := renderChart(release, ns, values...)
	if err != nil {
		t.Fatal(err)
	}
	rbac, err := operatorRBAC(objs, ns)
	if err != nil {
		t.Fatalf("the chart rendered with %q: %v", values, err)
	}
	for _, o := range rbac.objects {
		if err := kube.Create(ctx, o); err != nil {
			t.Fatalf("applying the chart's %T %s/%s: %v", o, o.GetNamespace(), o.GetName(), err)
		}
	}
	// Long enough for the longest run (the scale benchmark); a kubeconfig
	// token is not refreshed as a Pod's projected one is.
	expiry := int64((24 * time.Hour).Seconds())
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, rbac.serviceAccount,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for the chart's ServiceAccount %s/%s: %v", ns, rbac.serviceAccount, err)
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: restConfig.Host, CertificateAuthorityData: restConfig.CAData}
	kc.AuthInfos["e2e"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e", Namespace: ns}
	kc.CurrentContext = "e2e"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatalf("writing the operator's kubeconfig: %v", err)
	}
	return chartInstall{namespace: ns, serviceAccount: rbac.serviceAccount, kubeconfig: path, args: rbac.args}
}

// installs holds each test's default install, so that the replicas of
// one test share one ServiceAccount, Lease namespace and webhook key, as
// the Pods of one Deployment do.
var installs sync.Map // testing.TB → chartInstall

// testInstall is the test's install of the chart with its default values,
// made on first use.
func testInstall(t testing.TB) chartInstall {
	t.Helper()
	if in, ok := installs.Load(t); ok {
		return in.(chartInstall)
	}
	in := installChart(t)
	installs.Store(t, in)
	t.Cleanup(func() { installs.Delete(t) })
	return in
}

// renderChart runs helm template with throwaway helm directories, so that
// no user configuration or repository cache leaks in, and decodes every
// rendered object.
func renderChart(release, namespace string, values ...string) ([]*unstructured.Unstructured, error) {
	home, err := os.MkdirTemp("", "smaregi-e2e-helm-")
	if err != nil {
		return nil, fmt.Errorf("helm's home directory: %w", err)
	}
	defer func() { _ = os.RemoveAll(home) }()
	args := append([]string{"template", release, filepath.Join(repoRoot, "charts", "smaregi-operator"),
		"--namespace", namespace}, values...)
	cmd := exec.Command(helmBin, args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	dec := k8syaml.NewYAMLOrJSONDecoder(&stdout, 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, fmt.Errorf("decoding helm template's output: %w", err)
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// chartRBAC is the part of a rendering that makes the operator's identity.
type chartRBAC struct {
	serviceAccount string
	objects        []client.Object // ServiceAccount, roles, then bindings: creation order
	args           []string
}

// operatorRBAC picks from a rendering the Deployment's ServiceAccount,
// every binding with that ServiceAccount as a subject and the roles those
// bindings refer to. Roles bound to others (the hub API's, the aggregated
// editor and viewer) are the chart's too but grant the operator nothing,
// so they are left out.
func operatorRBAC(objs []*unstructured.Unstructured, ns string) (chartRBAC, error) {
	var out chartRBAC
	var dep *appsv1.Deployment
	for _, o := range objs {
		if o.GetKind() == "Deployment" {
			if dep != nil {
				return out, errors.New("more than one Deployment")
			}
			dep = &appsv1.Deployment{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, dep); err != nil {
				return out, fmt.Errorf("Deployment %s: %w", o.GetName(), err)
			}
		}
	}
	if dep == nil {
		return out, errors.New("no Deployment")
	}
	out.serviceAccount = dep.Spec.Template.Spec.ServiceAccountName
	if out.serviceAccount == "" {
		return out, fmt.Errorf("Deployment %s names no serviceAccountName", dep.Name)
	}
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name != "manager" {
			continue
		}
		for _, a := range c.Args {
			switch {
			case strings.HasPrefix(a, "--platform-webhook-key-secret="):
				// A bare name is in the Pod's namespace; outside a Pod the
				// operator cannot know it, so it is written out.
				if v := strings.TrimPrefix(a, "--platform-webhook-key-secret="); v != "" && !strings.Contains(v, "/") {
					a = "--platform-webhook-key-secret=" + ns + "/" + v
				}
				out.args = append(out.args, a)
			case strings.HasPrefix(a, "--watch-namespaces="):
				out.args = append(out.args, a)
			}
		}
	}

	bound := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && s.Name == out.serviceAccount && s.Namespace == ns {
				return true
			}
		}
		return false
	}
	type roleKey struct{ kind, namespace, name string }
	wanted := map[roleKey]bool{}
	var sa *corev1.ServiceAccount
	var bindings []client.Object
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount":
			if o.GetName() == out.serviceAccount && o.GetNamespace() == ns {
				sa = &corev1.ServiceAccount{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, sa); err != nil {
					return out, fmt.Errorf("ServiceAccount %s: %w", o.GetName(), err)
				}
			}
		case "ClusterRoleBinding":
			b := &rbacv1.ClusterRoleBinding{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, b); err != nil {
				return out, fmt.Errorf("ClusterRoleBinding %s: %w", o.GetName(), err)
			}
			if bound(b.Subjects) {
				bindings = append(bindings, b)
				wanted[roleKey{b.RoleRef.Kind, "", b.RoleRef.Name}] = true
			}
		case "RoleBinding":
			b := &rbacv1.RoleBinding{}
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, b); err != nil {
				return out, fmt.Errorf("RoleBinding %s/%s: %w", o.GetNamespace(), o.GetName(), err)
			}
			if bound(b.Subjects) {
				bindings = append(bindings, b)
				k := roleKey{b.RoleRef.Kind, "", b.RoleRef.Name}
				if b.RoleRef.Kind == "Role" {
					k.namespace = b.Namespace
				}
				wanted[k] = true
			}
		}
	}
	if sa == nil {
		return out, fmt.Errorf("no ServiceAccount %s/%s (the Deployment's)", ns, out.serviceAccount)
	}
	if len(bindings) == 0 {
		return out, fmt.Errorf("no binding grants ServiceAccount %s/%s anything", ns, out.serviceAccount)
	}
	out.objects = append(out.objects, sa)
	for _, o := range objs {
		switch o.GetKind() {
		case "ClusterRole":
			if wanted[roleKey{"ClusterRole", "", o.GetName()}] {
				r := &rbacv1.ClusterRole{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, r); err != nil {
					return out, fmt.Errorf("ClusterRole %s: %w", o.GetName(), err)
				}
				out.objects = append(out.objects, r)
				delete(wanted, roleKey{"ClusterRole", "", o.GetName()})
			}
		case "Role":
			if wanted[roleKey{"Role", o.GetNamespace(), o.GetName()}] {
				r := &rbacv1.Role{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, r); err != nil {
					return out, fmt.Errorf("Role %s/%s: %w", o.GetNamespace(), o.GetName(), err)
				}
				out.objects = append(out.objects, r)
				delete(wanted, roleKey{"Role", o.GetNamespace(), o.GetName()})
			}
		}
	}
	// A binding to a role the chart does not render would need one the
	// cluster already has (a built-in ClusterRole): name it, so the test
	// does not silently grant less than a cluster would.
	for k := range wanted {
		return out, fmt.Errorf("a binding of the operator refers to %s %s/%s, which the chart does not render", k.kind, k.namespace, k.name)
	}
	out.objects = append(out.objects, bindings...)
	return out, nil
}

// canAs asks the API server (SubjectAccessReview, as admin) whether the
// install's ServiceAccount may do verb on resource (core group) in ns ("":
// cluster-wide).
func canAs(t testing.TB, in chartInstall, verb, resource, ns string) bool {
	t.Helper()
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   in.username(),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + in.namespace, "system:authenticated"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb,
			Group: resourceGroup(resource), Resource: resourceName(resource)},
	}}
	got, err := clientset.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), sar, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SubjectAccessReview %s %s in %q: %v", verb, resource, ns, err)
	}
	return got.Status.Allowed
}

// resourceGroup and resourceName split "leases.coordination.k8s.io" into
// its API group and resource; a bare name is the core group's.
func resourceGroup(r string) string {
	_, g, _ := strings.Cut(r, ".")
	return g
}

func resourceName(r string) string {
	n, _, _ := strings.Cut(r, ".")
	return n
}

// TestOperatorRunsAsTheChartsServiceAccount checks the harness itself: the
// kubeconfig every operator gets authenticates as the chart's
// ServiceAccount (not the API server's admin), and that identity holds
// what the chart grants and nothing more (a sample either side).
func TestOperatorRunsAsTheChartsServiceAccount(t *testing.T) {
	in := testInstall(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", in.kubeconfig)
	if err != nil {
		t.Fatalf("reading the operator's kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(context.Background(), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectReview with the operator's kubeconfig: %v", err)
	}
	if got, want := review.Status.UserInfo.Username, in.username(); got != want {
		t.Fatalf("the operator's kubeconfig authenticates as %q, want the chart's ServiceAccount %q", got, want)
	}
	other := newNamespace(t, "elsewhere")
	for _, c := range []struct {
		verb, resource, ns string
		want               bool
	}{
		{"watch", "smaregistores.smaregi.stocksync.io", "", true},
		{"create", "tokenreviews.authentication.k8s.io", "", true},
		{"update", "leases.coordination.k8s.io", in.namespace, true},
		// The Lease is the release namespace's only.
		{"update", "leases.coordination.k8s.io", other, false},
		// Read-only: stores are the users', the operator writes status.
		{"create", "smaregistores.smaregi.stocksync.io", other, false},
		{"update", "configmaps", other, false},
		{"create", "namespaces", "", false},
		{"list", "pods", other, false},
	} {
		if got := canAs(t, in, c.verb, c.resource, c.ns); got != c.want {
			t.Errorf("the chart's ServiceAccount may %s %s in %q: %v, want %v", c.verb, c.resource, c.ns, got, c.want)
		}
	}
}
