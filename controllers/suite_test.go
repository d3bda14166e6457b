package controllers_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	testingclock "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/log"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/controllers"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

const receiverBase = "https://hooks.example.test"

// Shared by every test of the package: one control plane, one manager.
var (
	restCfg    *rest.Config
	live       client.Client // uncached, for assertions
	mgrClient  client.Client // the manager's cached client
	fakeClock  *testingclock.FakeClock
	checker    *countingChecker
	reconciler *controllers.SmaregiStoreReconciler
	nsCounter  atomic.Int64
	// outbox is the inventory store whose adjustments hold deleted stores,
	// and where the safety stock controller records safety stock.
	outbox *boltstore.Store
)

// countingChecker wraps the production checker and counts calls per
// endpoint, so tests can bound how often Smaregi is asked.
type countingChecker struct {
	inner controllers.CredentialChecker
	mu    sync.Mutex
	calls map[string]int
}

func (c *countingChecker) CheckCredentials(ctx context.Context, t storeaccess.Target) (bool, error) {
	c.mu.Lock()
	c.calls[t.Endpoint]++
	c.mu.Unlock()
	return c.inner.CheckCredentials(ctx, t)
}

func (c *countingChecker) count(endpoint string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[endpoint]
}

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("CONTROLLER_TEST_LOG") != "" {
		log.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.Level(-4)})))
	}
	cfg, stop, err := testenv.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	restCfg = cfg
	scheme := testenv.Scheme()
	if live, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}

	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  controllers.CacheOptions(),
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fakeClock = testingclock.NewFakeClock(time.Now())
	dir, err := os.MkdirTemp("", "ctrl-outbox-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if outbox, err = boltstore.Open(filepath.Join(dir, "inventory.db")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer outbox.Close()
	checker = &countingChecker{inner: controllers.NewSmaregiChecker(storeaccess.NewClients(smaregi.NewLimiterRegistry(0, 1), nil)), calls: map[string]int{}}
	reconciler = &controllers.SmaregiStoreReconciler{
		Client:          mgr.GetClient(),
		APIReader:       mgr.GetAPIReader(),
		Scheme:          scheme,
		Recorder:        mgr.GetEventRecorder("smaregi-operator"),
		Clock:           fakeClock,
		Checker:         checker,
		ReceiverBaseURL: receiverBase,
		PlatformWebhook: &smaregiv1alpha1.WebhookKeyReference{Namespace: "smaregi-system", Name: "smaregi-platform-webhook-key",
			Key: smaregiv1alpha1.PlatformWebhookKeyKey, Header: "X-Smaregi-Operator-Key"},
		Outbox: controllers.InventoryOutbox{Store: outbox},
		// Short, so that a drained outbox releases a deletion quickly.
		DeletionRecheckInterval: 200 * time.Millisecond,
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := (&controllers.SafetyStockReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Store: outbox,
		MissingRecheckInterval: time.Second}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := (&controllers.StockPoolReconciler{Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Rows: outbox, Clock: fakeClock,
		MissingRecheckInterval: time.Second}).SetupWithManager(mgr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	mgrClient = mgr.GetClient()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "manager:", err)
		}
	}()
	return m.Run()
}

// sim is a simulator behind real HTTP on 127.0.0.1, counting /access/ calls.
type sim struct {
	*smaregisim.Server
	endpoint string
	access   atomic.Int64
}

const (
	simContract = "ct-ctrl"
	simToken    = "tok-SECRET-a9f3c27e11d4"
)

func startSim(t *testing.T) *sim {
	t.Helper()
	srv, err := smaregisim.New(smaregisim.Options{Contract: simContract, Token: simToken, Stores: []string{"1"}, Products: 3, InitialStock: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	s := &sim{Server: srv}
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/access/") {
			s.access.Add(1)
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { hs.Close(); _ = srv.Close() })
	s.endpoint = hs.URL + "/access/"
	return s
}

// newNamespace gives each test its own namespace.
func newNamespace(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("ctrl-%d-%d", time.Now().Unix()%100000, nsCounter.Add(1))
	if err := live.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
	return name
}

func tokenSecret(ns, name, key, token string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		Data:       map[string][]byte{key: []byte(token)},
	}
}

func newStore(ns, name, endpoint string) *smaregiv1alpha1.SmaregiStore {
	return &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{
			ContractID:     simContract,
			StoreID:        "1",
			Endpoint:       endpoint,
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: name + "-token"},
		},
	}
}

func mustCreate(t *testing.T, obj client.Object) {
	t.Helper()
	if err := live.Create(context.Background(), obj); err != nil {
		t.Fatalf("create %T %s: %v", obj, obj.GetName(), err)
	}
}

// eventually polls cond until it returns nil or the timeout passes, then
// fails with the last error. The timeouts are generous on purpose: these
// assert outcomes, not timings.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const waitLong = 30 * time.Second

func getStore(t *testing.T, ns, name string) *smaregiv1alpha1.SmaregiStore {
	t.Helper()
	s := &smaregiv1alpha1.SmaregiStore{}
	if err := live.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
		t.Fatalf("get store: %v", err)
	}
	return s
}

// waitCondition waits until condition typ has status and reason, and
// returns the store as then observed.
func waitCondition(t *testing.T, ns, name, typ string, status metav1.ConditionStatus, reason string) *smaregiv1alpha1.SmaregiStore {
	t.Helper()
	var s *smaregiv1alpha1.SmaregiStore
	eventually(t, waitLong, func() error {
		s = &smaregiv1alpha1.SmaregiStore{}
		if err := live.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, s); err != nil {
			return err
		}
		c := meta.FindStatusCondition(s.Status.Conditions, typ)
		if c == nil {
			return fmt.Errorf("no %s condition yet; conditions: %+v", typ, s.Status.Conditions)
		}
		if c.Status != status || c.Reason != reason {
			return fmt.Errorf("%s = %s/%s (%s), want %s/%s", typ, c.Status, c.Reason, c.Message, status, reason)
		}
		return nil
	})
	return s
}

func cond(s *smaregiv1alpha1.SmaregiStore, typ string) metav1.Condition {
	if c := meta.FindStatusCondition(s.Status.Conditions, typ); c != nil {
		return *c
	}
	return metav1.Condition{}
}

// storeEvents lists the events regarding a store (events.k8s.io/v1, which
// the manager's recorder writes).
func storeEvents(t *testing.T, ns, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := live.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatalf("list events: %v", err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Kind == "SmaregiStore" && e.Regarding.Name == name {
			out = append(out, e)
		}
	}
	return out
}

// assertNoSecretLeak fails if any secret value appears in the store's
// status (conditions included) or in any event in the namespace.
func assertNoSecretLeak(t *testing.T, ns, name string, secrets ...string) {
	t.Helper()
	s := getStore(t, ns, name)
	status, err := json.Marshal(s.Status)
	if err != nil {
		t.Fatal(err)
	}
	var events eventsv1.EventList
	if err := live.List(context.Background(), &events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	evJSON, err := json.Marshal(events)
	if err != nil {
		t.Fatal(err)
	}
	var coreEvents corev1.EventList
	if err := live.List(context.Background(), &coreEvents, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	coreJSON, err := json.Marshal(coreEvents)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range secrets {
		if v == "" {
			t.Fatal("assertNoSecretLeak: empty secret value (test bug)")
		}
		for what, text := range map[string][]byte{"status": status, "events": evJSON, "core events": coreJSON} {
			if strings.Contains(string(text), v) {
				t.Errorf("a secret value appears in the %s of %s/%s", what, ns, name)
			}
		}
	}
}

// receiverKey returns the current receiver key of a store.
func keySecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	sec := &corev1.Secret{}
	contract := getStore(t, ns, name).Spec.ContractID
	if err := live.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: smaregiv1alpha1.ContractKeySecretName(contract)}, sec); err != nil {
		t.Fatalf("get key Secret: %v", err)
	}
	return sec
}

// poke changes an unrelated annotation, which makes the controller
// reconcile (annotation changes pass its predicates) without changing the
// spec.
func poke(t *testing.T, ns, name string) {
	t.Helper()
	s := getStore(t, ns, name)
	patch := client.MergeFrom(s.DeepCopy())
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	s.Annotations["test.stocksync.io/poke"] = time.Now().Format(time.RFC3339Nano)
	if err := live.Patch(context.Background(), s, patch); err != nil {
		t.Fatalf("poke: %v", err)
	}
}

// updateStore changes a store's spec or metadata, retrying on conflicts
// with the controller's concurrent status writes.
func updateStore(t *testing.T, ns, name string, change func(*smaregiv1alpha1.SmaregiStore)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		s := getStore(t, ns, name)
		change(s)
		return live.Update(context.Background(), s)
	})
	if err != nil {
		t.Fatalf("update store %s/%s: %v", ns, name, err)
	}
}
