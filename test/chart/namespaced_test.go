package chart

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
)

// Namespaced mode is shipped twice, as the chart's watchNamespaces and as
// config/namespaced (kustomize). The e2e tests run the operator with the
// chart's RBAC only, so the overlay is held to the chart here: the same
// manager rules without Secrets, the same Secret rules per watched
// namespace, and the same rules on the Platform webhook key's Secret, by
// the name each install's Deployment gives the operator.
func TestNamespacedKustomizeMatchesTheChart(t *testing.T) {
	kubectl := filepath.Join(os.Getenv("KUBEBUILDER_ASSETS"), "kubectl")
	out, err := exec.Command(kubectl, "kustomize", filepath.Join(repoRoot, "config", "namespaced")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/namespaced: %v", err)
	}
	kust, err := decodeAll(string(out))
	if err != nil {
		t.Fatalf("decoding config/namespaced: %v", err)
	}
	chart := render(t, "ci/default-values.yaml", "--set", "watchNamespaces={shops}")

	type rbac struct {
		manager, secrets, key []rbacv1.PolicyRule
		keySecret             string // the operator's --platform-webhook-key-secret
	}
	pick := func(what string, objs []*unstructured.Unstructured, manager, secrets, key, deployment string) rbac {
		t.Helper()
		rules := func(kind, name string) []rbacv1.PolicyRule {
			o := find(objs, kind, name)
			if o == nil {
				t.Fatalf("%s renders no %s %s", what, kind, name)
			}
			var r rbacv1.ClusterRole // a Role's rules decode the same
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(map[string]any{"rules": o.Object["rules"]}, &r); err != nil {
				t.Fatalf("%s: %s %s: %v", what, kind, name, err)
			}
			return r.Rules
		}
		var r rbac
		r.manager = rules("ClusterRole", manager)
		kind, name, _ := strings.Cut(secrets, "/")
		r.secrets = rules(kind, name)
		r.key = rules("Role", key)
		d := find(objs, "Deployment", deployment)
		if d == nil {
			t.Fatalf("%s renders no Deployment %s", what, deployment)
		}
		containers, _, _ := unstructuredSlice(d.Object, "spec", "template", "spec", "containers")
		for _, a := range anyStrings(containers[0].(map[string]any)["args"]) {
			if v, ok := strings.CutPrefix(a, "--platform-webhook-key-secret="); ok {
				r.keySecret = v
			}
		}
		if r.keySecret == "" {
			r.keySecret = flagDefault(t, "platform-webhook-key-secret")
		}
		return r
	}
	k := pick("config/namespaced", kust, "smaregi-operator-manager-role", "ClusterRole/smaregi-operator-manager-secrets",
		"smaregi-operator-platform-webhook-key", "smaregi-operator-controller-manager")
	c := pick("the chart with watchNamespaces", chart, releaseName+"-manager", "Role/"+releaseName+"-manager-secrets",
		releaseName+"-platform-webhook-key", releaseName)

	if !reflect.DeepEqual(k.manager, c.manager) {
		t.Errorf("manager rules: config/namespaced %+v, chart %+v", k.manager, c.manager)
	}
	if !reflect.DeepEqual(k.secrets, c.secrets) {
		t.Errorf("Secret rules of a watched namespace: config/namespaced %+v, chart %+v", k.secrets, c.secrets)
	}
	// The key's Secret is named by each install: compare the rules with
	// that name replaced, after checking that the rules do name it.
	norm := func(what string, rules []rbacv1.PolicyRule, secret string) []rbacv1.PolicyRule {
		t.Helper()
		var named bool
		out := make([]rbacv1.PolicyRule, len(rules))
		for i, r := range rules {
			r.ResourceNames = slices.Clone(r.ResourceNames)
			for j, n := range r.ResourceNames {
				if n == secret {
					r.ResourceNames[j], named = "KEY", true
				}
			}
			out[i] = r
		}
		if !named {
			t.Errorf("%s: the webhook key Role does not name the operator's key Secret %q: %+v", what, secret, rules)
		}
		return out
	}
	if kr, cr := norm("config/namespaced", k.key, k.keySecret), norm("chart", c.key, c.keySecret); !reflect.DeepEqual(kr, cr) {
		t.Errorf("webhook key rules: config/namespaced %+v, chart %+v", kr, cr)
	}
}

// flagDefault reads a string flag's default from cmd/main.go.
func flagDefault(t *testing.T, name string) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`flag\.StringVar\(&[\w.]+, "` + regexp.QuoteMeta(name) + `", "([^"]*)"`).FindSubmatch(src)
	if m == nil {
		t.Fatalf("no default of --%s in cmd/main.go", name)
	}
	return string(m[1])
}
