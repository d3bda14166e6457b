package mirror

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/util/workqueue"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
)

const (
	testContract = "skmirror"
	testToken    = "mirror-secret-token-value"
)

var testKey = inventory.StoreKey{Namespace: "shop", Name: "store-1"}

// simClock is a settable clock for the simulator, so tests choose the
// updDateTime values Smaregi hands out.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *simClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is a simulator behind real HTTP on 127.0.0.1 and a bbolt inventory
// in a temporary directory.
type harness struct {
	sim      *smaregisim.Server
	clk      *simClock
	endpoint string
	inv      inventory.Store
	// refCalls counts stock_ref requests that reached the simulator.
	refCalls atomic.Int64
	// onRef, when set, runs before each stock_ref is served (to hold a
	// pull in flight).
	onRef atomic.Pointer[func()]
}

// simStart is 09:00:00 in Tokyo.
var simStart = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

func newHarness(t testing.TB, mod func(*smaregisim.Options)) *harness {
	t.Helper()
	return newHarnessAt(t, simStart, mod)
}

// newHarnessAt starts the simulator's clock at start: its initial stock rows
// carry that updDateTime.
func newHarnessAt(t testing.TB, start time.Time, mod func(*smaregisim.Options)) *harness {
	t.Helper()
	h := &harness{clk: &simClock{t: start}}
	o := smaregisim.Options{Contract: testContract, Token: testToken, Stores: []string{"1", "2"},
		Products: 50, InitialStock: 10, Seed: 7, Clock: h.clk.Now}
	if mod != nil {
		mod(&o)
	}
	sim, err := smaregisim.New(o)
	if err != nil {
		t.Fatalf("smaregisim.New: %v", err)
	}
	h.sim = sim
	inner := sim.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/access/" {
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			if q, _ := url.ParseQuery(string(b)); q.Get("proc_name") == smaregi.ProcStockRef {
				h.refCalls.Add(1)
				if f := h.onRef.Load(); f != nil {
					(*f)()
				}
			}
		}
		inner.ServeHTTP(w, r)
	}))
	h.endpoint = hs.URL + "/access/"
	inv, err := boltstore.Open(filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatalf("boltstore.Open: %v", err)
	}
	h.inv = inv
	t.Cleanup(func() {
		hs.Close()
		_ = sim.Close()
		_ = inv.Close()
	})
	return h
}

// readers reads with the real smaregi client; one attempt per read, so
// counts at the simulator are counts of pulls' calls.
func (h *harness) readers() ReaderFactory {
	return DefaultReaders(storeaccess.NewClients(smaregi.NewLimiterRegistry(0, 1), nil), storeaccess.Tune{MaxReadAttempts: 1})
}

func (h *harness) reader(t testing.TB) StockReader {
	t.Helper()
	r, err := h.readers()(storeaccess.Target{Endpoint: h.endpoint, ContractID: testContract, Credentials: storeaccess.Credentials{AccessToken: testToken}})
	if err != nil {
		t.Fatalf("building reader: %v", err)
	}
	return r
}

func (h *harness) config() storeregistry.StoreConfig {
	return storeregistry.StoreConfig{
		Key: testKey, Generation: 1, ContractID: testContract, StoreID: "1", Endpoint: h.endpoint,
		CredentialsSecret: "smaregi-credentials", CredentialsKey: "accessToken",
		PollInterval: time.Hour, FullResyncInterval: 24 * time.Hour,
	}
}

// mirrorRows returns the mirror as productID → row.
func mirrorRows(t testing.TB, inv inventory.Store, key inventory.StoreKey) map[string]inventory.Row {
	t.Helper()
	out := map[string]inventory.Row{}
	if err := inv.Rows(context.Background(), key, func(r inventory.Row) error {
		out[r.ProductID] = r
		return nil
	}); err != nil {
		t.Fatalf("reading mirror rows: %v", err)
	}
	return out
}

// mirrorDiff compares the mirror with the simulator's stock of a store and
// returns a description of the first few differences ("" when equal).
func mirrorDiff(t testing.TB, h *harness, key inventory.StoreKey, storeID string) string {
	t.Helper()
	want, err := h.sim.Stock(storeID)
	if err != nil {
		t.Fatalf("sim.Stock: %v", err)
	}
	got := mirrorRows(t, h.inv, key)
	var b bytes.Buffer
	n := 0
	report := func(s string) {
		if n < 5 {
			b.WriteString(s)
			b.WriteString("; ")
		}
		n++
	}
	for _, w := range want {
		g, ok := got[w.ProductID]
		switch {
		case !ok:
			report("missing " + w.ProductID)
		case g.StockAmount != w.StockAmount || g.LayawayStockAmount != w.LayawayStockAmount:
			report("product " + w.ProductID + " differs")
		case smaregisim.FormatTime(g.UpdDateTime) != w.UpdDateTime:
			report("product " + w.ProductID + " updDateTime " + smaregisim.FormatTime(g.UpdDateTime) + " != " + w.UpdDateTime)
		}
		delete(got, w.ProductID)
	}
	for id := range got {
		report("extra " + id)
	}
	return b.String()
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// staticTokens is a TokenSource for engine tests that need no Kubernetes.
type staticTokens struct {
	token   string
	forgets atomic.Int64
}

func (s *staticTokens) Credentials(context.Context, storeaccess.CredentialsRef) (storeaccess.Credentials, error) {
	return storeaccess.Credentials{AccessToken: s.token}, nil
}
func (s *staticTokens) Forget(storeaccess.CredentialsRef) { s.forgets.Add(1) }

// recordingStatus is a StatusWriter that keeps what would have been applied.
type recordingStatus struct {
	mu      sync.Mutex
	updates []StatusUpdate
}

func (r *recordingStatus) WriteStatus(_ context.Context, u StatusUpdate) error {
	r.mu.Lock()
	r.updates = append(r.updates, u)
	r.mu.Unlock()
	return nil
}

func (r *recordingStatus) all() []StatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]StatusUpdate(nil), r.updates...)
}

func (r *recordingStatus) last() (StatusUpdate, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.updates) == 0 {
		return StatusUpdate{}, false
	}
	return r.updates[len(r.updates)-1], true
}

// newEngine builds an engine on the harness with fast timings.
func newEngine(t testing.TB, h *harness, mod func(*Options)) (*Engine, *recordingStatus) {
	t.Helper()
	st := &recordingStatus{}
	o := Options{
		Inventory: h.inv, Readers: h.readers(), Tokens: &staticTokens{token: testToken},
		Status: st, Workers: 2, Tick: 20 * time.Millisecond, StatusInterval: 50 * time.Millisecond,
		RetryBase: 50 * time.Millisecond, RetryMax: time.Second,
	}
	if mod != nil {
		mod(&o)
	}
	e, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e, st
}

// run starts the engine and stops it when the test ends.
func run(t testing.TB, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("engine Start returned %v", err)
		}
	})
}

// probeNamespace names the keys drain queues: no store has them, so a
// worker's sync of one returns at once and touches nothing.
const probeNamespace = "drain-probe"

// drainQueue wraps an engine's workqueue so that a test can wait for its
// workers to finish what was queued, instead of sleeping and hoping a
// pull that should not happen would have shown up by then.
type drainQueue struct {
	workqueue.TypedRateLimitingInterface[inventory.StoreKey]
	mu    sync.Mutex
	round *drainRound
}

// drainRound holds every worker that finishes a probe until all probes of
// the round are finished, so that each worker takes exactly one.
type drainRound struct {
	left  int
	all   chan struct{} // closed when every probe is finished
	abort chan struct{} // closed to let the workers go on a timeout
}

// withDrain installs a drainQueue in e; call it before run.
func withDrain(t testing.TB, e *Engine) *drainQueue {
	t.Helper()
	if e.started.Load() {
		t.Fatal("withDrain after Start")
	}
	q := &drainQueue{TypedRateLimitingInterface: e.queue}
	e.queue = q
	return q
}

func (q *drainQueue) Done(key inventory.StoreKey) {
	if key.Namespace == probeNamespace {
		q.mu.Lock()
		r := q.round
		r.left--
		if r.left == 0 {
			close(r.all)
		}
		q.mu.Unlock()
		select {
		case <-r.all:
		case <-r.abort:
		}
	}
	q.TypedRateLimitingInterface.Done(key)
}

// queueProbes queues one probe per worker behind everything queued so far.
// The round ends (r.all is closed) only when each of the workers has taken
// one: the queue hands keys out in order, so each worker has by then
// finished the keys queued before the probes.
func (q *drainQueue) queueProbes(workers int) *drainRound {
	r := &drainRound{left: workers, all: make(chan struct{}), abort: make(chan struct{})}
	q.mu.Lock()
	q.round = r
	q.mu.Unlock()
	for i := range workers {
		q.Add(inventory.StoreKey{Namespace: probeNamespace, Name: strconv.Itoa(i)})
	}
	return r
}

// wait waits for the round to end; on a timeout it lets the workers go and
// fails the test.
func (r *drainRound) wait(t testing.TB, what string) {
	t.Helper()
	select {
	case <-r.all:
	case <-time.After(10 * time.Second):
		close(r.abort)
		t.Fatalf("timed out waiting for the workers to finish %s", what)
	}
}

// drain returns once all of e's workers have finished every pull queued
// before the call and every pull those queued again on finishing (the
// workqueue re-queues a key triggered while it was being processed when it
// is done): two rounds of probes, the second queued after the first's
// workers finished.
func drain(t testing.TB, e *Engine, q *drainQueue) {
	t.Helper()
	for range 2 {
		q.queueProbes(e.opts.Workers).wait(t, "the queued pulls")
	}
}
