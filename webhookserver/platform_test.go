package webhookserver

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

// The Platform fixture, in a real API server: contract P1 has Platform
// stores 1 and 2 in namespace shops and Platform store 1 in namespace
// other, plus a Legacy store 1 in shops (its sends have a route; it must
// never take a webhook); contract P2 has Platform store 1 in shops. The
// webhook key Secret lives in smaregi-system.
const (
	platNS     = "smaregi-system"
	platSecret = "smaregi-platform-webhook-key"
	platHeader = "X-Smaregi-Operator-Key"
)

type platformEnv struct {
	kube  client.Client
	cache cache.Cache
	keys  *PlatformKeys
	clock *clocktesting.FakePassiveClock
}

func startPlatformEnv(t *testing.T) *platformEnv {
	t.Helper()
	cfg, stop := testenv.Start(t)
	t.Cleanup(stop)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	kube, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{"shops", "other", platNS} {
		if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(ns, name, contract, storeID string, api smaregiv1alpha1.StoreAPI) {
		st := &smaregiv1alpha1.SmaregiStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: smaregiv1alpha1.SmaregiStoreSpec{ContractID: contract, StoreID: storeID, API: api,
				CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: name + "-app"}},
		}
		if err := kube.Create(ctx, st); err != nil {
			t.Fatalf("create %s/%s: %v", ns, name, err)
		}
	}
	mk("shops", "plat-1", "P1", "1", smaregiv1alpha1.APIPlatform)
	mk("shops", "plat-2", "P1", "2", smaregiv1alpha1.APIPlatform)
	mk("other", "plat-1", "P1", "1", smaregiv1alpha1.APIPlatform)
	mk("shops", "legacy-1", "P1", "1", smaregiv1alpha1.APILegacy)
	mk("shops", "p2-1", "P2", "1", smaregiv1alpha1.APIPlatform)

	opts := cache.Options{Scheme: testenv.Scheme()}
	c, err := cache.New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetupIndexes(ctx, c); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetInformer(ctx, &smaregiv1alpha1.SmaregiStore{}); err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("the informer cache did not sync")
	}
	// The cache sees all five stores before any webhook is posted.
	var list smaregiv1alpha1.SmaregiStoreList
	for list.Items = nil; len(list.Items) < 5; time.Sleep(10 * time.Millisecond) {
		if err := c.List(ctx, &list); err != nil {
			t.Fatal(err)
		}
	}
	clk := clocktesting.NewFakePassiveClock(testNow)
	keys, err := NewPlatformKeys(PlatformKeysOptions{Client: kube, Reader: kube, Clock: clk,
		Secret: types.NamespacedName{Namespace: platNS, Name: platSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if err := keys.Sync(ctx); err != nil {
		t.Fatalf("first Sync: %v", err)
	}
	return &platformEnv{kube: kube, cache: c, keys: keys, clock: clk}
}

// key reads the current webhook key from the Secret.
func (e *platformEnv) key(t *testing.T) string {
	t.Helper()
	var s corev1.Secret
	if err := e.kube.Get(context.Background(), types.NamespacedName{Namespace: platNS, Name: platSecret}, &s); err != nil {
		t.Fatal(err)
	}
	return string(s.Data[smaregiv1alpha1.PlatformWebhookKeyKey])
}

func (e *platformEnv) server(t *testing.T, sink Sink, mutate func(*PlatformOptions)) *httptest.Server {
	t.Helper()
	po := PlatformOptions{Keys: e.keys, KeyHeader: platHeader, KeyInPath: true}
	if mutate != nil {
		mutate(&po)
	}
	srv, err := New(Options{Reader: e.cache, Sink: sink, Clock: e.clock, Platform: po, MaxBodyBytes: 64 << 10, MaxRows: 100})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs
}

type webhook struct {
	path                      string // after PlatformWebhookPath
	key                       string // header value; "" = none
	event, contract, eventID  string
	body                      string
	extraHeaders, dropHeaders []string
}

func postWebhook(t *testing.T, base string, w webhook) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+smaregiv1alpha1.PlatformWebhookPath+w.path, strings.NewReader(w.body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if w.key != "" {
		req.Header.Set(platHeader, w.key)
	}
	for k, v := range map[string]string{HeaderEvent: w.event, HeaderContractID: w.contract, HeaderEventID: w.eventID} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	return do(t, req)
}

func stockBody(contract string, storeIDs ...string) string {
	var ids []string
	for i, s := range storeIDs {
		ids = append(ids, `{"id":"`+string(rune('1'+i))+`","storeId":"`+s+`","productId":"8000001"}`)
	}
	return `{"contractId":"` + contract + `","event":"pos:stock","action":"edited","ids":[` + strings.Join(ids, ",") + `]}`
}

// targetsOf flattens the recorded sends' targets, sorted.
func targetsOf(sends []Send) []string {
	var out []string
	for _, s := range sends {
		for _, t := range s.Targets {
			out = append(out, t.String())
		}
	}
	slices.Sort(out)
	return out
}

func platformRequests(result string) float64 {
	return testutil.ToFloat64(platformRequestsTotal.WithLabelValues(result))
}

func TestPlatformWebhook(t *testing.T) {
	env := startPlatformEnv(t)
	key := env.key(t)
	if len(key) < 43 {
		t.Fatalf("generated key has %d characters, want 43", len(key))
	}
	sink := &RecordingSink{}
	hs := env.server(t, sink, nil)

	t.Run("routed by contract and storeId across namespaces, never to legacy stores", func(t *testing.T) {
		sink.Reset()
		got := postWebhook(t, hs.URL, webhook{key: key, event: EventStock, contract: "P1", eventID: "ev-1", body: stockBody("P1", "1")})
		if got.status != http.StatusOK {
			t.Fatalf("status %d %s", got.status, got.body)
		}
		sends := sink.Sends()
		if want := []string{"other/plat-1", "shops/plat-1"}; !slices.Equal(targetsOf(sends), want) {
			t.Fatalf("targets %v, want %v", targetsOf(sends), want)
		}
		if len(sends) != 2 || sends[0].Namespace == sends[1].Namespace || sends[0].ID == sends[1].ID {
			t.Fatalf("want one send per namespace with distinct IDs: %+v", sends)
		}
		for _, s := range sends {
			if s.ProcName != EventStock || s.ContractID != "P1" || s.Rows != 1 || !slices.Equal(s.StoreIDs, []string{"1"}) {
				t.Errorf("send %+v", s)
			}
		}
	})

	t.Run("pos:transactions for store 2 reaches store 2 only", func(t *testing.T) {
		sink.Reset()
		body := `{"contractId":"P1","event":"pos:transactions","action":"created","ids":[{"transactionHeadId":"7","storeId":2}]}`
		got := postWebhook(t, hs.URL, webhook{key: key, event: EventTransactions, contract: "P1", eventID: "ev-2", body: body})
		if got.status != http.StatusOK || !slices.Equal(targetsOf(sink.Sends()), []string{"shops/plat-2"}) {
			t.Fatalf("status %d %s, targets %v", got.status, got.body, targetsOf(sink.Sends()))
		}
	})

	t.Run("no storeId reaches every Platform store of the contract", func(t *testing.T) {
		sink.Reset()
		got := postWebhook(t, hs.URL, webhook{key: key, event: EventStock, contract: "P1", eventID: "ev-3",
			body: `{"contractId":"P1","event":"pos:stock","action":"bulk-update","ids":[]}`})
		want := []string{"other/plat-1", "shops/plat-1", "shops/plat-2"}
		if got.status != http.StatusOK || !slices.Equal(targetsOf(sink.Sends()), want) {
			t.Fatalf("status %d %s, targets %v, want %v", got.status, got.body, targetsOf(sink.Sends()), want)
		}
	})

	t.Run("another contract's stores are untouched", func(t *testing.T) {
		sink.Reset()
		got := postWebhook(t, hs.URL, webhook{key: key, event: EventStock, contract: "P2", eventID: "ev-4", body: stockBody("P2", "1")})
		if got.status != http.StatusOK || !slices.Equal(targetsOf(sink.Sends()), []string{"shops/p2-1"}) {
			t.Fatalf("status %d %s, targets %v", got.status, got.body, targetsOf(sink.Sends()))
		}
	})

	t.Run("key in the path", func(t *testing.T) {
		sink.Reset()
		got := postWebhook(t, hs.URL, webhook{path: "/" + key, event: EventStock, contract: "P1", eventID: "ev-5", body: stockBody("P1", "2")})
		if got.status != http.StatusOK || !slices.Equal(targetsOf(sink.Sends()), []string{"shops/plat-2"}) {
			t.Fatalf("status %d %s, targets %v", got.status, got.body, targetsOf(sink.Sends()))
		}
	})

	t.Run("duplicate event ID is dropped", func(t *testing.T) {
		sink.Reset()
		before := platformRequests(ResultDuplicate)
		w := webhook{key: key, event: EventStock, contract: "P1", eventID: "ev-dup", body: stockBody("P1", "2")}
		for i := 0; i < 3; i++ {
			if got := postWebhook(t, hs.URL, w); got.status != http.StatusOK {
				t.Fatalf("post %d: status %d %s", i, got.status, got.body)
			}
		}
		if sink.Len() != 1 {
			t.Fatalf("recorded %d sends, want 1", sink.Len())
		}
		if d := platformRequests(ResultDuplicate) - before; d != 2 {
			t.Errorf("duplicate results grew by %v, want 2", d)
		}
		// The same event ID of another contract is another event.
		w.contract, w.body = "P2", stockBody("P2", "1")
		if got := postWebhook(t, hs.URL, w); got.status != http.StatusOK || sink.Len() != 2 {
			t.Fatalf("same ID, other contract: status %d, %d sends", got.status, sink.Len())
		}
	})

	t.Run("other events are answered and ignored", func(t *testing.T) {
		sink.Reset()
		before := platformRequests(ResultIgnored)
		got := postWebhook(t, hs.URL, webhook{key: key, event: "pos:products", contract: "P1", eventID: "ev-6", body: `{"ids":[]}`})
		if got.status != http.StatusOK || sink.Len() != 0 || platformRequests(ResultIgnored)-before != 1 {
			t.Fatalf("status %d %s, %d sends, ignored +%v", got.status, got.body, sink.Len(), platformRequests(ResultIgnored)-before)
		}
	})

	t.Run("a contract nobody declared records nothing", func(t *testing.T) {
		sink.Reset()
		got := postWebhook(t, hs.URL, webhook{key: key, event: EventStock, contract: "P9", eventID: "ev-7", body: stockBody("P9", "1")})
		if got.status != http.StatusOK || sink.Len() != 0 || !strings.Contains(got.body, ResultNoStores) {
			t.Fatalf("status %d %s, %d sends", got.status, got.body, sink.Len())
		}
	})

	t.Run("refusals record nothing", func(t *testing.T) {
		big := `{"contractId":"P1","ids":[` + strings.Repeat(`{"storeId":"1"},`, 5000) + `{"storeId":"1"}]}`
		many := `{"contractId":"P1","ids":[` + strings.Repeat(`{},`, 100) + `{}]}`
		ok := webhook{key: key, event: EventStock, contract: "P1", eventID: "ev-refused", body: stockBody("P1", "1")}
		cases := []struct {
			name   string
			mutate func(*webhook)
			status int
		}{
			{"no key", func(w *webhook) { w.key = "" }, http.StatusUnauthorized},
			{"wrong key", func(w *webhook) { w.key = key + "x" }, http.StatusUnauthorized},
			{"wrong key in the path", func(w *webhook) { w.key, w.path = "", "/"+key+"x" }, http.StatusUnauthorized},
			{"right header, wrong path key", func(w *webhook) { w.path = "/wrong-key-0123456789" }, http.StatusUnauthorized},
			{"nested path", func(w *webhook) { w.path = "/" + key + "/x" }, http.StatusNotFound},
			{"malformed JSON", func(w *webhook) { w.body = `{"contractId":"P1","ids":[` }, http.StatusBadRequest},
			{"ids not objects", func(w *webhook) { w.body = `{"ids":["1"]}` }, http.StatusBadRequest},
			{"trailing data", func(w *webhook) { w.body = stockBody("P1", "1") + `{}` }, http.StatusBadRequest},
			{"body of another contract", func(w *webhook) { w.body = stockBody("P2", "1") }, http.StatusBadRequest},
			{"no event ID", func(w *webhook) { w.eventID = "" }, http.StatusBadRequest},
			{"no contract", func(w *webhook) { w.contract = "" }, http.StatusBadRequest},
			{"malformed contract", func(w *webhook) { w.contract = "P1/../x" }, http.StatusBadRequest},
			{"no event", func(w *webhook) { w.event = "" }, http.StatusBadRequest},
			{"too large", func(w *webhook) { w.body = big }, http.StatusRequestEntityTooLarge},
			{"too many ids", func(w *webhook) { w.body = many }, http.StatusRequestEntityTooLarge},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				sink.Reset()
				w := ok
				c.mutate(&w)
				got := postWebhook(t, hs.URL, w)
				if got.status != c.status || sink.Len() != 0 {
					t.Fatalf("status %d %s, %d sends; want %d and none", got.status, got.body, sink.Len(), c.status)
				}
				if strings.Contains(got.body, key) {
					t.Fatal("the answer quotes the key")
				}
			})
		}
		// A refused event ID was not remembered: the good webhook goes through.
		sink.Reset()
		if got := postWebhook(t, hs.URL, ok); got.status != http.StatusOK || sink.Len() != 2 {
			t.Fatalf("after the refusals: status %d %s, %d sends", got.status, got.body, sink.Len())
		}
		// GET is refused before anything else.
		req, _ := http.NewRequest(http.MethodGet, hs.URL+smaregiv1alpha1.PlatformWebhookPath, nil)
		if got := do(t, req); got.status != http.StatusMethodNotAllowed {
			t.Errorf("GET: status %d", got.status)
		}
	})

	t.Run("a failed record answers 503", func(t *testing.T) {
		failing := env.server(t, &failingSink{}, nil)
		w := webhook{key: key, event: EventStock, contract: "P1", eventID: "ev-fail", body: stockBody("P1", "1")}
		if got := postWebhook(t, failing.URL, w); got.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d %s, want 503", got.status, got.body)
		}
	})

	t.Run("key accepted only where configured", func(t *testing.T) {
		sink.Reset()
		headerOnly := env.server(t, sink, func(o *PlatformOptions) { o.KeyInPath = false })
		w := webhook{path: "/" + key, event: EventStock, contract: "P1", eventID: "ev-8", body: stockBody("P1", "1")}
		if got := postWebhook(t, headerOnly.URL, w); got.status != http.StatusNotFound {
			t.Errorf("key in the path when only the header is configured: status %d", got.status)
		}
		pathOnly := env.server(t, sink, func(o *PlatformOptions) { o.KeyHeader = "" })
		w.path, w.key = "", key
		if got := postWebhook(t, pathOnly.URL, w); got.status != http.StatusUnauthorized {
			t.Errorf("key in a header when only the path is configured: status %d", got.status)
		}
		if sink.Len() != 0 {
			t.Errorf("%d sends recorded", sink.Len())
		}
	})

	t.Run("rotation keeps the previous key for the grace, deletion makes a new key", func(t *testing.T) {
		ctx := context.Background()
		sink.Reset()
		var s corev1.Secret
		if err := env.kube.Get(ctx, types.NamespacedName{Namespace: platNS, Name: platSecret}, &s); err != nil {
			t.Fatal(err)
		}
		if s.Labels[smaregiv1alpha1.ManagedByLabel] != smaregiv1alpha1.ManagedByValue {
			t.Fatalf("generated Secret is not labelled managed-by: %v", s.Labels)
		}
		metav1.SetMetaDataAnnotation(&s.ObjectMeta, smaregiv1alpha1.RotateKeyAnnotation, "r1")
		if err := env.kube.Update(ctx, &s); err != nil {
			t.Fatal(err)
		}
		if err := env.keys.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		newKey := env.key(t)
		if newKey == key {
			t.Fatal("rotation kept the key")
		}
		for i, k := range []string{key, newKey} {
			w := webhook{key: k, event: EventStock, contract: "P2", eventID: "ev-rot-" + string(rune('a'+i)), body: stockBody("P2", "1")}
			if got := postWebhook(t, hs.URL, w); got.status != http.StatusOK {
				t.Errorf("key %d after rotation: status %d", i, got.status)
			}
		}
		// A second Sync does not rotate again.
		if err := env.keys.Sync(ctx); err != nil || env.key(t) != newKey {
			t.Fatalf("second Sync rotated again (%v)", err)
		}
		// After the grace the old key is refused.
		env.clock.SetTime(testNow.Add(DefaultPlatformKeyGrace + time.Minute))
		defer env.clock.SetTime(testNow)
		w := webhook{key: key, event: EventStock, contract: "P2", eventID: "ev-rot-c", body: stockBody("P2", "1")}
		if got := postWebhook(t, hs.URL, w); got.status != http.StatusUnauthorized {
			t.Errorf("old key after the grace: status %d", got.status)
		}
		// Deleting the Secret is the immediate rotation.
		if err := env.kube.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: platNS, Name: platSecret}}); err != nil {
			t.Fatal(err)
		}
		if err := env.keys.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		third := env.key(t)
		w = webhook{key: newKey, event: EventStock, contract: "P2", eventID: "ev-rot-d", body: stockBody("P2", "1")}
		if got := postWebhook(t, hs.URL, w); third == newKey || got.status != http.StatusUnauthorized {
			t.Errorf("after deleting the Secret: new key differs %v, old key status %d", third != newKey, got.status)
		}
		key = third
	})

	t.Run("an administrator's own Secret is used read-only, a short key refused", func(t *testing.T) {
		ctx := context.Background()
		own := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: platNS, Name: "own-key"},
			Data: map[string][]byte{smaregiv1alpha1.PlatformWebhookKeyKey: []byte("short")}}
		if err := env.kube.Create(ctx, own); err != nil {
			t.Fatal(err)
		}
		k, err := NewPlatformKeys(PlatformKeysOptions{Client: env.kube, Reader: env.kube, Clock: env.clock,
			Secret: types.NamespacedName{Namespace: platNS, Name: "own-key"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := k.Sync(ctx); err == nil || k.Ready() {
			t.Fatalf("a 5-byte key was accepted (err %v)", err)
		}
		own.Data[smaregiv1alpha1.PlatformWebhookKeyKey] = []byte("an-administrators-own-key-0123")
		if err := env.kube.Update(ctx, own); err != nil {
			t.Fatal(err)
		}
		if err := k.Sync(ctx); err != nil || !k.Ready() {
			t.Fatalf("Sync: %v", err)
		}
		var after corev1.Secret
		if err := env.kube.Get(ctx, client.ObjectKeyFromObject(own), &after); err != nil {
			t.Fatal(err)
		}
		if after.ResourceVersion != own.ResourceVersion || len(after.Labels) != 0 {
			t.Fatal("the operator wrote to a Secret it does not manage")
		}
	})

	t.Run("logs carry no key", func(t *testing.T) {
		var mu sync.Mutex
		var logs strings.Builder
		logger := funcr.New(func(prefix, args string) {
			mu.Lock()
			defer mu.Unlock()
			logs.WriteString(prefix + " " + args + "\n")
		}, funcr.Options{Verbosity: 10})
		srv, err := New(Options{Reader: env.cache, Sink: &failingSink{}, Clock: env.clock, Log: logger,
			Platform: PlatformOptions{Keys: env.keys, KeyHeader: platHeader, KeyInPath: true}})
		if err != nil {
			t.Fatal(err)
		}
		ls := httptest.NewServer(srv.Handler())
		defer ls.Close()
		const wrong = "wrong-key-Qx7Lm2Vt9Hs4Jd8Zp"
		for _, w := range []webhook{
			{key: wrong, event: EventStock, contract: "P1", eventID: "ev-log-1", body: stockBody("P1", "1")},
			{path: "/" + wrong, event: EventStock, contract: "P1", eventID: "ev-log-2", body: stockBody("P1", "1")},
			{path: "/" + key, event: EventStock, contract: "P1", eventID: "ev-log-3", body: `{"ids":`},
			{key: key, event: EventStock, contract: "P1", eventID: "ev-log-4", body: stockBody("P1", "1")}, // sink fails
			{key: key, event: "pos:products", contract: "P1", eventID: "ev-log-5", body: "{}"},
		} {
			postWebhook(t, ls.URL, w)
		}
		mu.Lock()
		defer mu.Unlock()
		if logs.Len() == 0 {
			t.Fatal("nothing was logged; the check below would prove nothing")
		}
		for _, secret := range []string{key, wrong} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("logs carry a key:\n%s", logs.String())
			}
		}
	})

	t.Run("the simulator's webhooks for a sale reach the right stores over real HTTP", func(t *testing.T) {
		testSimulatorWebhooks(t, env, key)
	})
}

// testSimulatorWebhooks: the simulator (contract P1) rings up a sale at store
// 2 with its webhook setting pointing at the receiver and the key in the
// custom header, and posts every webhook twice; the receiver records, in a
// real inventory store, one edge per event and namespace, and marks only
// store 2's Platform store dirty.
func testSimulatorWebhooks(t *testing.T, env *platformEnv, key string) {
	ctx := context.Background()
	inv, err := boltstore.Open(filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	hs := env.server(t, NewDurableSink(inv, nil), nil)

	sim, err := smaregisim.New(smaregisim.Options{Contract: "P1", Token: "legacy-token", Stores: []string{"1", "2"},
		Products: 5, InitialStock: 10, Seed: 1,
		Platform: smaregisim.PlatformOptions{ClientID: "app", ClientSecret: "secret", WebhookDuplicateRate: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sim.Close() })
	if err := sim.SetWebhookConfig(smaregisim.WebhookConfig{URL: hs.URL + smaregiv1alpha1.PlatformWebhookPath,
		Headers: map[string]string{platHeader: key}}); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Sale("2", []smaregisim.SaleLine{{ProductID: "8000001", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := sim.WaitWebhooksIdle(wctx); err != nil {
		t.Fatal(err)
	}
	hooks := sim.Webhooks()
	var events []string
	for _, h := range hooks {
		events = append(events, h.Event)
		if len(h.Attempts) != 2 {
			t.Fatalf("webhook %s: %d attempts, want the post and its duplicate", h.ID, len(h.Attempts))
		}
		for _, a := range h.Attempts {
			if a.StatusCode != http.StatusOK {
				t.Fatalf("webhook %s (%s) answered %d %s", h.ID, h.Event, a.StatusCode, a.Error)
			}
		}
	}
	if !slices.Contains(events, EventStock) || !slices.Contains(events, EventTransactions) {
		t.Fatalf("simulator sent %v, want pos:transactions and pos:stock", events)
	}
	marks, err := inv.Dirty(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var marked []inventory.StoreKey
	for _, m := range marks {
		marked = append(marked, m.Key)
	}
	if want := []inventory.StoreKey{{Namespace: "shops", Name: "plat-2"}}; !slices.Equal(marked, want) {
		t.Fatalf("dirty %v, want %v", marked, want)
	}
	recs, err := inv.RecentSends(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(hooks) {
		t.Fatalf("%d records for %d webhooks posted twice each, want one each", len(recs), len(hooks))
	}
}
