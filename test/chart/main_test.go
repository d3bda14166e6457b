package chart

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stocksync/smaregi-operator/internal/testenv"
)

const (
	// releaseName equals the chart name so that resource names are the
	// chart's plain names (smaregi-operator-manager, ...).
	releaseName = "smaregi-operator"
	namespace   = "smaregi-operator"

	// Modules whose CRD YAMLs are installed into the test API server, so
	// that the chart's ServiceMonitor, PrometheusRule and HTTPRoute are
	// validated by their real schemas. Fetched with `go mod download`
	// (from the module cache when present), never vendored.
	prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
	gatewayAPIModule         = "sigs.k8s.io/gateway-api@v1.6.3"
)

// valuesFiles are the chart's CI values: the defaults plus the one required
// value, and several PostgreSQL replicas with every optional object on.
var valuesFiles = []string{"ci/default-values.yaml", "ci/ha-postgres-values.yaml"}

var (
	repoRoot string
	chartDir string
	// restConfig is the shared test API server's, with the Prometheus
	// Operator's and the Gateway API's CRDs installed.
	restConfig *rest.Config
)

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	var err error
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		return 0, err
	}
	chartDir = filepath.Join(repoRoot, "charts", "smaregi-operator")
	if os.Getenv("HELM") == "" {
		return 0, errors.New("HELM is not set: run `make test` or export HELM=$(hack/build-helm.sh)")
	}
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return 0, errors.New("KUBEBUILDER_ASSETS is not set: run `make test` or export KUBEBUILDER_ASSETS=$(hack/build-controlplane.sh)")
	}
	po, err := moduleDir(prometheusOperatorModule)
	if err != nil {
		return 0, err
	}
	gw, err := moduleDir(gatewayAPIModule)
	if err != nil {
		return 0, err
	}
	env := &envtest.Environment{
		CRDInstallOptions: envtest.CRDInstallOptions{
			Paths: []string{
				filepath.Join(po, "example", "prometheus-operator-crd", "monitoring.coreos.com_servicemonitors.yaml"),
				filepath.Join(po, "example", "prometheus-operator-crd", "monitoring.coreos.com_prometheusrules.yaml"),
				filepath.Join(gw, "config", "crd", "standard", "gateway.networking.k8s.io_httproutes.yaml"),
			},
			ErrorIfPathMissing: true,
		},
		BinaryAssetsDirectory:    assets,
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	if restConfig, err = env.Start(); err != nil {
		return 0, fmt.Errorf("start kube-apiserver and etcd from %s: %w", assets, err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "stop control plane: %v\n", err)
		}
	}()
	return m.Run(), nil
}

// moduleDir downloads a module version (a no-op when it is in the module
// cache) and returns its directory.
func moduleDir(modVersion string) (string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", modVersion)
	cmd.Dir = os.TempDir() // outside any module: nothing is added to a go.mod
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var info struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &info); jerr != nil || info.Error != "" || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s: %v %s %s", modVersion, err, info.Error, stderr.String())
	}
	return info.Dir, nil
}

// helm runs the helm CLI with throwaway home directories, so that no user
// configuration or repository cache leaks into the test. It returns stdout,
// and stderr in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(os.Getenv("HELM"), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// render runs helm template with a CI values file (relative to the chart)
// and extra arguments, and decodes every rendered object.
func render(t *testing.T, valuesFile string, extra ...string) []*unstructured.Unstructured {
	t.Helper()
	args := append([]string{"template", releaseName, chartDir, "--namespace", namespace,
		"-f", filepath.Join(chartDir, valuesFile)}, extra...)
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := decodeAll(out)
	if err != nil {
		t.Fatalf("decode helm template output (%s): %v", valuesFile, err)
	}
	if len(objs) == 0 {
		t.Fatalf("helm template with %s rendered nothing", valuesFile)
	}
	return objs
}

func decodeAll(manifests string) ([]*unstructured.Unstructured, error) {
	dec := k8syaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

func find(objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == kind && (name == "" || o.GetName() == name) {
			return o
		}
	}
	return nil
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	k := map[string]int{}
	for _, o := range objs {
		k[o.GetKind()]++
	}
	return k
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
