package chart

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

func TestHelmLint(t *testing.T) {
	for _, vf := range valuesFiles {
		if out, err := helm(t, "lint", "--strict", chartDir, "-f", filepath.Join(chartDir, vf)); err != nil {
			t.Errorf("%s: %v\n%s", vf, err, out)
		}
	}
}

func TestValuesSchemaRefusesImpossibleCombinations(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // a word of helm's error
	}{
		{"no receiver URL", []string{"template", releaseName, chartDir}, "publicURL"},
		{"several replicas on bolt", []string{"template", releaseName, chartDir,
			"-f", filepath.Join(chartDir, "ci/default-values.yaml"), "--set", "replicas=2"}, "replicas"},
		{"postgres without a URL", []string{"template", releaseName, chartDir,
			"-f", filepath.Join(chartDir, "ci/default-values.yaml"), "--set", "inventory.type=postgres"}, "dsn"},
		{"receiver URL without a scheme", []string{"template", releaseName, chartDir,
			"--set", "receiver.publicURL=smaregi.example.com"}, "publicURL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, tc.args...)
			if err == nil {
				t.Fatal("helm template accepted it")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not mention %q:\n%v", tc.want, err)
			}
		})
	}
}

// The chart installs config/crd/bases' CRD: the file is a verbatim copy
// (make manifests refreshes it), and the rendered object keeps its schema.
func TestChartCRDIsTheGeneratedOne(t *testing.T) {
	want, err := filepath.Glob(filepath.Join(repoRoot, "config", "crd", "bases", "*.yaml"))
	if err != nil || len(want) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	got, _ := filepath.Glob(filepath.Join(chartDir, "files", "crds", "*.yaml"))
	if len(got) != len(want) {
		t.Fatalf("chart has %d CRD files, config/crd/bases %d: run make manifests", len(got), len(want))
	}
	objs := render(t, "ci/default-values.yaml")
	for _, w := range want {
		base := filepath.Base(w)
		wb, _ := os.ReadFile(w)
		gb, err := os.ReadFile(filepath.Join(chartDir, "files", "crds", base))
		if err != nil || !bytes.Equal(wb, gb) {
			t.Errorf("charts/smaregi-operator/files/crds/%s differs from config/crd/bases (%v): run make manifests", base, err)
			continue
		}
		var crd map[string]any
		if err := yaml.Unmarshal(wb, &crd); err != nil {
			t.Fatal(err)
		}
		name := crd["metadata"].(map[string]any)["name"].(string)
		r := find(objs, "CustomResourceDefinition", name)
		if r == nil {
			t.Fatalf("CRD %s not rendered", name)
		}
		if !reflect.DeepEqual(r.Object["spec"], crd["spec"]) {
			t.Errorf("rendered CRD %s has another spec than config/crd/bases", name)
		}
		if r.GetAnnotations()["helm.sh/resource-policy"] != "keep" {
			t.Errorf("rendered CRD %s lacks helm.sh/resource-policy: keep", name)
		}
	}
	if r := find(render(t, "ci/default-values.yaml", "--set", "crds.keep=false"), "CustomResourceDefinition", ""); r == nil ||
		r.GetAnnotations()["helm.sh/resource-policy"] != "" {
		t.Error("crds.keep=false still keeps the CRD")
	}
	if find(render(t, "ci/default-values.yaml", "--set", "crds.enabled=false"), "CustomResourceDefinition", "") != nil {
		t.Error("crds.enabled=false still renders the CRD")
	}
}

// The operator's ClusterRole is the one controller-gen writes from the
// kubebuilder markers.
func TestChartManagerRoleIsTheGeneratedOne(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want rbacv1.ClusterRole
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	r := find(render(t, "ci/default-values.yaml"), "ClusterRole", releaseName+"-manager")
	if r == nil {
		t.Fatal("no manager ClusterRole rendered")
	}
	var got rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.Object, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Rules, want.Rules) {
		t.Errorf("chart's manager rules differ from config/rbac/role.yaml:\n got %+v\nwant %+v", got.Rules, want.Rules)
	}
}

// flagRE finds the operator's flags in cmd/main.go; reading the source
// costs no build of the operator.
var flagRE = regexp.MustCompile(`flag\.\w+Var\(&[\w.]+, "([a-z0-9-]+)"`)

func TestDeploymentUsesOnlyTheOperatorsFlags(t *testing.T) {
	src, err := os.ReadFile(filepath.Join(repoRoot, "cmd", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{}
	for _, m := range flagRE.FindAllStringSubmatch(string(src), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 10 {
		t.Fatalf("found only %d flags in cmd/main.go: flagRE is out of date", len(flags))
	}
	for _, vf := range valuesFiles {
		for _, o := range render(t, vf) {
			if o.GetKind() != "Deployment" {
				continue
			}
			containers, _, _ := unstructuredSlice(o.Object, "spec", "template", "spec", "containers")
			for _, c := range containers {
				args, _ := c.(map[string]any)["args"].([]any)
				for _, a := range args {
					name, _, _ := strings.Cut(strings.TrimPrefix(a.(string), "--"), "=")
					if !flags[name] && !strings.HasPrefix(name, "zap-") {
						t.Errorf("%s: the Deployment passes --%s, which cmd/main.go does not define", vf, name)
					}
				}
			}
		}
	}
}

func unstructuredSlice(obj map[string]any, path ...string) ([]any, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, nil
		}
		cur = m[p]
	}
	s, ok := cur.([]any)
	return s, ok, nil
}

func TestInventoryBackends(t *testing.T) {
	bolt := render(t, "ci/default-values.yaml")
	dep := find(bolt, "Deployment", releaseName)
	if dep == nil {
		t.Fatal("no Deployment")
	}
	if s := dep.Object["spec"].(map[string]any)["strategy"]; s == nil || s.(map[string]any)["type"] != "Recreate" {
		t.Errorf("bolt: strategy %v, want Recreate (one process may open the file)", s)
	}
	if find(bolt, "PersistentVolumeClaim", releaseName+"-inventory") == nil {
		t.Error("bolt: no inventory PersistentVolumeClaim")
	}

	ha := render(t, "ci/ha-postgres-values.yaml")
	dep = find(ha, "Deployment", releaseName)
	if find(ha, "PersistentVolumeClaim", "") != nil {
		t.Error("postgres: a PersistentVolumeClaim is rendered")
	}
	spec := dep.Object["spec"].(map[string]any)
	if spec["replicas"] != int64(3) && spec["replicas"] != float64(3) {
		t.Errorf("postgres: replicas %v, want 3", spec["replicas"])
	}
	c := spec["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	args := strings.Join(anyStrings(c["args"]), " ")
	for _, want := range []string{"--leader-elect", "--inventory=postgres://smaregi@postgres.databases.svc:5432/smaregi", "--sync-workers=8"} {
		if !strings.Contains(args, want) {
			t.Errorf("postgres: args %q lack %q", args, want)
		}
	}
	envJSON, _ := json.Marshal(c["env"])
	env := string(envJSON)
	if !strings.Contains(env, `"name":"PGPASSWORD"`) || !strings.Contains(env, `"secretKeyRef":{"key":"password","name":"smaregi-postgres"}`) {
		t.Errorf("postgres: the password is not PGPASSWORD from the Secret: env %s", env)
	}
	for _, k := range []string{"ServiceMonitor", "PrometheusRule", "HTTPRoute", "Ingress", "NetworkPolicy", "PodDisruptionBudget", "ConfigMap"} {
		if kinds(ha)[k] == 0 {
			t.Errorf("HA values: no %s rendered", k)
		}
	}
}

func anyStrings(v any) []string {
	var s []string
	for _, x := range v.([]any) {
		s = append(s, x.(string))
	}
	return s
}

// Every rendered object is accepted by a real kube-apiserver (server-side
// apply, dry run): schemas, CEL rules and defaulting of the built-in kinds
// and of the ServiceMonitor, PrometheusRule and HTTPRoute CRDs.
func TestRenderedObjectsPassServerSideDryRun(t *testing.T) {
	ctx := ctxFor(t)
	kube, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, vf := range valuesFiles {
		objs := render(t, vf)
		for _, o := range objs {
			gvk := o.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Errorf("%s: %s %s: no such kind on the API server: %v", vf, gvk, o.GetName(), err)
				continue
			}
			var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
			if m.Scope.Name() == meta.RESTScopeNameNamespace {
				if o.GetNamespace() != namespace {
					t.Errorf("%s: %s %s is in namespace %q, want the release's", vf, gvk.Kind, o.GetName(), o.GetNamespace())
				}
				ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
			}
			_, err = ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{
				FieldManager: "chart-test", Force: true, DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				t.Errorf("%s: server-side dry run of %s %s: %v", vf, gvk.Kind, o.GetName(), err)
			}
		}
		t.Logf("%s: %d objects accepted: %v", vf, len(objs), sortedKinds(objs))
	}
}

func sortedKinds(objs []*unstructured.Unstructured) []string {
	var k []string
	for kind := range kinds(objs) {
		k = append(k, kind)
	}
	slices.Sort(k)
	return k
}

// With watchNamespaces the manager ClusterRole grants no Secret: a Role and
// RoleBinding per watched namespace do, and the operator is told the list.
func TestWatchNamespacesGrantSecretsPerNamespace(t *testing.T) {
	objs := render(t, "ci/default-values.yaml", "--set", "watchNamespaces={shops,outlet}")
	r := find(objs, "ClusterRole", releaseName+"-manager")
	if r == nil {
		t.Fatal("no manager ClusterRole rendered")
	}
	var role rbacv1.ClusterRole
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.Object, &role); err != nil {
		t.Fatal(err)
	}
	for _, rule := range role.Rules {
		if slices.Contains(rule.Resources, "secrets") {
			t.Errorf("the manager ClusterRole still grants Secrets cluster-wide: %+v", rule)
		}
	}
	for _, ns := range []string{"shops", "outlet"} {
		var gotRole, gotBinding bool
		for _, o := range objs {
			if o.GetNamespace() != ns || o.GetName() != releaseName+"-manager-secrets" {
				continue
			}
			switch o.GetKind() {
			case "Role":
				var r rbacv1.Role
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &r); err != nil {
					t.Fatal(err)
				}
				gotRole = len(r.Rules) == 1 && slices.Equal(r.Rules[0].Resources, []string{"secrets"})
			case "RoleBinding":
				var b rbacv1.RoleBinding
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
					t.Fatal(err)
				}
				gotBinding = b.RoleRef.Kind == "Role" && len(b.Subjects) == 1 && b.Subjects[0].Namespace == namespace
			}
		}
		if !gotRole || !gotBinding {
			t.Errorf("namespace %s: Secret Role %v, RoleBinding to the operator %v", ns, gotRole, gotBinding)
		}
	}
	dep := find(objs, "Deployment", releaseName)
	c := dep.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if args := anyStrings(c["args"]); !slices.Contains(args, "--watch-namespaces=shops,outlet") {
		t.Errorf("args %q lack --watch-namespaces=shops,outlet", args)
	}
}

// The Pod stops accepting only after a preStop sleep (its endpoints are
// removed meanwhile), and the grace period covers the sleep and the
// servers' drain.
func TestShutdownLetsEndpointsGoFirst(t *testing.T) {
	drain := int64(max(webhookserver.DefaultShutdownTimeout, hubapi.DefaultShutdownTimeout) / time.Second)
	for _, vf := range valuesFiles {
		dep := find(render(t, vf), "Deployment", releaseName)
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(dep.Object, &d); err != nil {
			t.Fatal(err)
		}
		c := d.Spec.Template.Spec.Containers[0]
		var sleep int64
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
			sleep = c.Lifecycle.PreStop.Sleep.Seconds
		}
		if sleep < 5 {
			t.Errorf("%s: preStop sleep %ds; want at least 5 s", vf, sleep)
		}
		if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || *g <= sleep+drain {
			t.Errorf("%s: terminationGracePeriodSeconds %v must exceed the preStop sleep (%d s) plus the drain (%d s)", vf, g, sleep, drain)
		}
	}
}

// hubApi.tls.secretName mounts the Secret and points the operator's TLS
// flags at its tls.crt and tls.key; without it neither is rendered.
func TestHubAPITLSFromASecret(t *testing.T) {
	container := func(vf string) (appsv1.Deployment, corev1.Container) {
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(render(t, vf), "Deployment", releaseName).Object, &d); err != nil {
			t.Fatal(err)
		}
		return d, d.Spec.Template.Spec.Containers[0]
	}
	d, c := container("ci/ha-postgres-values.yaml")
	var mountPath string
	for _, m := range c.VolumeMounts {
		if m.Name == "hub-api-tls" {
			mountPath = m.MountPath
		}
	}
	var secret string
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "hub-api-tls" && v.Secret != nil {
			secret = v.Secret.SecretName
		}
	}
	if secret != "smaregi-hub-api-tls" || mountPath == "" {
		t.Fatalf("the TLS Secret is not mounted: volume of Secret %q at %q", secret, mountPath)
	}
	for _, want := range []string{"--api-tls-cert-file=" + mountPath + "/tls.crt", "--api-tls-key-file=" + mountPath + "/tls.key"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %q lack %s", c.Args, want)
		}
	}
	if _, c := container("ci/default-values.yaml"); slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--api-tls-") }) {
		t.Errorf("TLS flags without hubApi.tls.secretName: %q", c.Args)
	}
}

// The chart's NetworkPolicy admits the same ports as config/network-policy.
func TestNetworkPolicyMatchesKustomize(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "network-policy", "network_policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want networkingv1.NetworkPolicy
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	np := find(render(t, "ci/default-values.yaml", "--set", "networkPolicy.enabled=true"), "NetworkPolicy", releaseName)
	if np == nil {
		t.Fatal("no NetworkPolicy rendered")
	}
	var got networkingv1.NetworkPolicy
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(np.Object, &got); err != nil {
		t.Fatal(err)
	}
	ports := func(p networkingv1.NetworkPolicy) []string {
		var out []string
		for _, r := range p.Spec.Ingress {
			for _, port := range r.Ports {
				out = append(out, port.Port.String())
			}
		}
		slices.Sort(out)
		return out
	}
	if !slices.Equal(ports(got), ports(want)) || !slices.Equal(got.Spec.PolicyTypes, want.Spec.PolicyTypes) {
		t.Errorf("chart NetworkPolicy admits %v (%v), config/network-policy %v (%v)", ports(got), got.Spec.PolicyTypes, ports(want), want.Spec.PolicyTypes)
	}
}

// The chart's leader-election Role is config/rbac's: Leases and events,
// no ConfigMaps.
func TestChartLeaderElectionRoleIsConfigs(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "config", "rbac", "leader_election_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var want rbacv1.Role
	if err := yaml.Unmarshal(data, &want); err != nil {
		t.Fatal(err)
	}
	r := find(render(t, "ci/default-values.yaml"), "Role", releaseName+"-leader-election")
	if r == nil {
		t.Fatal("no leader-election Role rendered")
	}
	var got rbacv1.Role
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(r.Object, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Rules, want.Rules) {
		t.Errorf("chart's leader-election rules differ from config/rbac/leader_election_role.yaml:\n got %+v\nwant %+v", got.Rules, want.Rules)
	}
}

// The chart, like config/manager/manager.yaml, gives the Go runtime the
// container's memory limit as GOMEMLIMIT (in bytes: divisor 1), and none
// when no limit is set.
func TestGoMemoryLimitIsTheContainers(t *testing.T) {
	gomemlimit := func(objs []*unstructured.Unstructured) *corev1.EnvVar {
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(find(objs, "Deployment", releaseName).Object, &d); err != nil {
			t.Fatal(err)
		}
		for _, e := range d.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "GOMEMLIMIT" {
				return &e
			}
		}
		return nil
	}
	for _, vf := range valuesFiles {
		e := gomemlimit(render(t, vf))
		if e == nil || e.ValueFrom == nil || e.ValueFrom.ResourceFieldRef == nil {
			t.Fatalf("%s: GOMEMLIMIT = %+v; want it from the container's limits.memory", vf, e)
		}
		ref := e.ValueFrom.ResourceFieldRef
		if ref.Resource != "limits.memory" || ref.ContainerName != "manager" || ref.Divisor.String() != "1" {
			t.Errorf("%s: GOMEMLIMIT from %+v; want limits.memory of manager, divisor 1", vf, ref)
		}
	}
	if e := gomemlimit(render(t, valuesFiles[0], "--set", "resources.limits=null")); e != nil {
		t.Errorf("without a memory limit GOMEMLIMIT is still set: %+v", e)
	}
}
