package mirror

import (
	"context"
	"os"
	"testing"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/stocksync/smaregi-operator/internal/storeregistry"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

// kubeControlPlane starts a real kube-apiserver and etcd for one test and
// stops them when it ends; without built binaries the test is skipped, so
// the package's other tests run anywhere.
func kubeControlPlane(t *testing.T) *rest.Config {
	t.Helper()
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS not set: run `make test` or export KUBEBUILDER_ASSETS=$(hack/build-controlplane.sh)")
	}
	cfg, stop := testenv.Start(t)
	t.Cleanup(stop)
	return cfg
}

// liveClient is an uncached client for the test's own reads and writes.
func liveClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// startInManager runs e (its watch and the leader-only engine) in a real
// manager on cfg until the test ends. Several tests of this package build
// the engine's controller, and controller names are unique per process,
// hence SkipNameValidation. The returned channel is closed if the manager
// stops, so a test can notice an early stop.
func startInManager(t *testing.T, cfg *rest.Config, e *Engine) <-chan struct{} {
	t.Helper()
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{Scheme: testenv.Scheme(), Metrics: metricsserver.Options{BindAddress: "0"},
		Controller: config.Controller{SkipNameValidation: ptr.To(true)}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	// The operator's wiring: the registry controller tells the engine of
	// the SmaregiStores.
	registry := storeregistry.New()
	registry.Subscribe(e)
	if err := (&storeregistry.Controller{Registry: registry}).SetupWithManager(mgr); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var mgrErr error
	go func() {
		mgrErr = mgr.Start(ctx)
		close(stopped)
	}()
	// Registered after kubeControlPlane's cleanup, so it runs first.
	t.Cleanup(func() {
		cancel()
		<-stopped
		if mgrErr != nil {
			t.Errorf("manager: %v", mgrErr)
		}
	})
	return stopped
}
