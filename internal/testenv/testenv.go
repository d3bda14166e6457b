// Package testenv starts a real kube-apiserver and etcd (controller-runtime's
// envtest) with this module's CRDs installed, for the integration tests of
// any package. The binaries are built from source by
// hack/build-controlplane.sh and found through KUBEBUILDER_ASSETS; nothing is
// downloaded.
package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// modulePath identifies this repository's go.mod when looking for the root.
const modulePath = "github.com/stocksync/smaregi-operator"

// hint is printed whenever the control plane cannot be found, because the
// fix is always the same and the envtest error alone does not say it.
const hint = "run `make test` or export KUBEBUILDER_ASSETS=$(hack/build-controlplane.sh)"

// Scheme returns a scheme with the built-in Kubernetes types and this
// module's API, the one integration tests usually need.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(smaregiv1alpha1.AddToScheme(s))
	return s
}

// Start starts a control plane for one test (or one package, when called
// from a helper shared by the package's tests) and fails tb with a clear
// message when it cannot. Call stop when done; Start does not register it
// with tb.Cleanup so that callers decide the control plane's lifetime.
func Start(tb testing.TB) (*rest.Config, func()) {
	tb.Helper()
	cfg, stop, err := StartMain()
	if err != nil {
		tb.Fatalf("%v", err)
	}
	return cfg, stop
}

// StartMain is Start for TestMain, which has no testing.TB: it returns the
// error instead. A typical TestMain:
//
//	cfg, stop, err := testenv.StartMain()
//	if err != nil { fmt.Fprintln(os.Stderr, err); os.Exit(1) }
//	code := m.Run(); stop(); os.Exit(code)
func StartMain() (*rest.Config, func(), error) {
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		return nil, nil, errors.New("testenv: KUBEBUILDER_ASSETS is not set; " + hint)
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(assets, bin)); err != nil {
			return nil, nil, fmt.Errorf("testenv: %s not found in KUBEBUILDER_ASSETS=%s; %s", bin, assets, hint)
		}
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, nil, err
	}
	env := &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join(root, "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: assets,
		// Two cores shared with the compiler: the default 20s is too tight
		// for a cold kube-apiserver.
		ControlPlaneStartTimeout: 90 * time.Second,
		ControlPlaneStopTimeout:  30 * time.Second,
	}
	// Every test that checks a permission (the e2e operators run as the
	// chart's ServiceAccount, hub API callers with their own tokens)
	// needs RBAC enforced. envtest's default, stated so that it cannot
	// change unseen; ServiceAccount tokens are verified with the key pair
	// and issuer envtest also sets by default.
	env.ControlPlane.GetAPIServer().Configure().Set("authorization-mode", "RBAC")
	cfg, err := env.Start()
	if err != nil {
		return nil, nil, fmt.Errorf("testenv: start kube-apiserver and etcd from %s: %w (%s)", assets, err, hint)
	}
	stop := func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "testenv: stop control plane: %v\n", err)
		}
	}
	return cfg, stop, nil
}

// RepoRoot finds the checkout's root by walking up from the working
// directory (go test runs in the package directory) to the go.mod that
// declares this module. It does not rely on source file paths, which
// -trimpath would hide.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testenv: working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && declaresModule(string(data)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testenv: no go.mod for module %s above the working directory", modulePath)
		}
		dir = parent
	}
}

func declaresModule(gomod string) bool {
	for line := range strings.Lines(gomod) {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" && f[1] == modulePath {
			return true
		}
	}
	return false
}
