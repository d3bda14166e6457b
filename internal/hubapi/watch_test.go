package hubapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

// recorder is a hubclient.Handler that keeps a Mirror and checks, as a
// channel would want, that event versions follow the listing's with no gap
// and no duplicate.
type recorder struct {
	*hubclient.Mirror
	mu       sync.Mutex
	replaces int
	last     uint64
	problems []string
}

func newRecorder() *recorder { return &recorder{Mirror: hubclient.NewMirror()} }

func (r *recorder) Replace(items []hubclient.Item, rv uint64) {
	r.mu.Lock()
	r.replaces++
	r.last = rv
	r.mu.Unlock()
	r.Mirror.Replace(items, rv)
}

func (r *recorder) Apply(e hubclient.Event) {
	r.mu.Lock()
	if e.ResourceVersion != r.last+1 {
		r.problems = append(r.problems, fmt.Sprintf("event %d after %d", e.ResourceVersion, r.last))
	}
	r.last = e.ResourceVersion
	r.mu.Unlock()
	r.Mirror.Apply(e)
}

// waitFor polls cond; the bound only stops a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

func openBolt(t testing.TB, path string) *boltstore.Store {
	t.Helper()
	st, err := boltstore.Open(path)
	must(t, err)
	return st
}

// serve runs a second Server like the fixture's on addr, over st.
func serve(t *testing.T, f *fixture, st Store, addr string) (stop func()) {
	t.Helper()
	srv, err := New(Options{BindAddress: addr, Reader: k8s, Authn: clientset.AuthenticationV1().TokenReviews(),
		Authz: clientset.AuthorizationV1().SubjectAccessReviews(), Store: st, WatchBookmarkInterval: 200 * time.Millisecond})
	must(t, err)
	var ln net.Listener
	// The old listener's port may take a moment to be free again.
	waitFor(t, "the port to be free", func() bool { ln, err = net.Listen("tcp", addr); return err == nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	return func() {
		cancel()
		must(t, <-done)
	}
}

func TestWatchListThenWatchAcrossRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	inv := openBolt(t, path)
	f := newFixture(t, fixtureOpts{safetyStock: 1})
	ctx := context.Background()
	pull := func(st inventory.Store, rows ...inventory.Row) {
		t.Helper()
		_, err := st.ApplyPull(ctx, f.key, rows, t0)
		must(t, err)
	}
	pull(inv, inventory.Row{ProductID: "8000001", StockAmount: 10, UpdDateTime: t0}, inventory.Row{ProductID: "8000002", StockAmount: 3, UpdDateTime: t0})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	_ = ln.Close()
	stop := serve(t, f, inv, addr)

	c := &hubclient.Client{BaseURL: "http://" + addr, Token: f.viewer, Backoff: 50 * time.Millisecond}
	rec := newRecorder()
	sctx, cancel := context.WithCancel(ctx)
	synced := make(chan error, 1)
	go func() { synced <- c.Sync(sctx, f.ns, f.store.Name, rec) }()
	defer func() {
		cancel()
		<-synced
	}()
	caughtUp := func(st inventory.Store) func() bool {
		return func() bool {
			v, err := st.StoreVersion(ctx, f.key)
			_, have := rec.Snapshot()
			return err == nil && have == v
		}
	}
	waitFor(t, "the first listing", caughtUp(inv))

	// Sales, an adjustment, a product added.
	pull(inv, inventory.Row{ProductID: "8000001", StockAmount: 8, UpdDateTime: t0.Add(time.Minute)})
	_, _, err = inv.SubmitAdjustment(ctx, Adjustment{Key: f.key, ID: "o1", Lines: []AdjustmentLine{{ProductID: "8000002", Quantity: -2}}})
	must(t, err)
	pull(inv, inventory.Row{ProductID: "8000003", StockAmount: 4, UpdDateTime: t0.Add(time.Minute)})
	waitFor(t, "the events", caughtUp(inv))
	if it, _ := rec.Get("8000002"); it.PendingAdjustment != -2 || it.Available != 0 {
		t.Fatalf("after the adjustment the channel sees %+v, want pending -2, available 0", it)
	}

	// The operator restarts; changes happen while it is down.
	stop()
	must(t, inv.Close())
	inv = openBolt(t, path)
	defer inv.Close()
	pull(inv, inventory.Row{ProductID: "8000003", StockAmount: 1, UpdDateTime: t0.Add(2 * time.Minute)})
	// The safety stock controller records spec.safetyStock and an override
	// (its first record: an event for every product).
	_, err = inv.SetSafetyStock(ctx, f.key, inventory.SafetyStock{Default: 1, Overrides: map[string]int64{"8000003": 0}})
	must(t, err)
	stop = serve(t, f, inv, addr)
	defer stop()
	pull(inv, inventory.Row{ProductID: "8000001", StockAmount: 7, UpdDateTime: t0.Add(3 * time.Minute)})
	// An override changed: one event.
	_, err = inv.SetSafetyStock(ctx, f.key, inventory.SafetyStock{Default: 1, Overrides: map[string]int64{"8000003": 0, "8000001": 4}})
	must(t, err)
	waitFor(t, "the events after the restart", caughtUp(inv))
	if it, _ := rec.Get("8000001"); it.SafetyStock != 4 || it.Available != 3 {
		t.Fatalf("with the override 4 the channel sees %+v, want available 3", it)
	}
	if it, _ := rec.Get("8000003"); it.SafetyStock != 0 || it.Available != 1 {
		t.Fatalf("with the override 0 the channel sees %+v, want available 1", it)
	}

	fresh, err := c.List(ctx, f.ns, f.store.Name)
	must(t, err)
	got, rv := rec.Snapshot()
	want := map[string]hubclient.Item{}
	for _, it := range fresh.Items {
		want[it.ProductID] = it
	}
	if !reflect.DeepEqual(got, want) || rv != fresh.ResourceVersion {
		t.Fatalf("the channel's view at %d:\n%+v\na fresh listing at %d:\n%+v", rv, got, fresh.ResourceVersion, want)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.replaces != 1 || len(rec.problems) > 0 {
		t.Fatalf("listed %d times (want 1: resumed, not relisted); version problems: %v", rec.replaces, rec.problems)
	}
}

func TestWatchAuthorisationAndGone(t *testing.T) {
	inv := openBolt(t, filepath.Join(t.TempDir(), "inventory.db"))
	defer inv.Close()
	f := newFixture(t, fixtureOpts{store: inv})
	ctx := context.Background()
	rows := make([]inventory.Row, inventory.ChangeLogSize+5)
	for i := range rows {
		rows[i] = inventory.Row{ProductID: fmt.Sprint(10000000 + i), StockAmount: 1, UpdDateTime: t0}
	}
	_, err := inv.ApplyPull(ctx, f.key, rows, t0)
	must(t, err)

	if r := f.do("GET", f.path("/stock?watch=true&resourceVersion=100"), f.nobody, nil); r.code != http.StatusForbidden {
		t.Fatalf("a caller without watch: %d %s", r.code, r.body)
	}
	r := f.do("GET", f.path("/stock?watch=true&resourceVersion=1"), f.viewer, nil)
	if r.code != http.StatusGone || r.errorBody(t).Error != reasonGone {
		t.Fatalf("a watch from a version no longer kept: %d %s", r.code, r.body)
	}
	if r := f.do("GET", f.path("/stock?watch=true"), f.viewer, nil); r.code != http.StatusBadRequest {
		t.Fatalf("a watch without resourceVersion: %d %s", r.code, r.body)
	}
	c := &hubclient.Client{BaseURL: f.base, Token: f.viewer}
	if _, err := c.Watch(ctx, f.ns, f.store.Name, 99_999_999); !errors.Is(err, hubclient.ErrGone) {
		t.Fatalf("a watch from a future version: %v, want ErrGone", err)
	}
	st, err := c.List(ctx, f.ns, f.store.Name)
	must(t, err)
	if st.ResourceVersion != uint64(len(rows)) {
		t.Fatalf("listing resourceVersion %d, want %d", st.ResourceVersion, len(rows))
	}
}

// TestSlowWatcherIsCutOff: a client that stops reading is cut off once its
// writes stall, and the watch releases everything it held.
func TestSlowWatcherIsCutOff(t *testing.T) {
	inv := openBolt(t, filepath.Join(t.TempDir(), "inventory.db"))
	defer inv.Close()
	f := newFixture(t, fixtureOpts{store: inv})
	f.srv.opts.WatchWriteTimeout = 200 * time.Millisecond
	f.srv.opts.WatchRing = 64
	ctx := context.Background()
	before := testutil.ToFloat64(watchersGauge)

	req, err := http.NewRequest("GET", f.path("/stock?watch=true&resourceVersion=0"), nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+f.viewer)
	resp, err := (&http.Client{}).Do(req)
	must(t, err)
	defer resp.Body.Close() // never read: the client stalls
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("watch: %d", resp.StatusCode)
	}
	waitFor(t, "the watch to start", func() bool { return testutil.ToFloat64(watchersGauge) == before+1 })
	// Far more events than socket buffers hold.
	for i := 0; i < 10; i++ {
		rows := make([]inventory.Row, 2000)
		for j := range rows {
			rows[j] = inventory.Row{ProductID: fmt.Sprint(10000000 + j), StockAmount: int64(i + 1), UpdDateTime: t0}
		}
		_, err := inv.ApplyPull(ctx, f.key, rows, t0)
		must(t, err)
	}
	waitFor(t, "the stalled watcher to be cut off", func() bool { return testutil.ToFloat64(watchersGauge) == before })
	f.srv.watches.mu.Lock()
	feeds := len(f.srv.watches.feeds)
	f.srv.watches.mu.Unlock()
	if feeds != 0 {
		t.Fatalf("%d feeds left running without watchers", feeds)
	}
}
