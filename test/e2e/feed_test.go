package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

// feedView is a channel built on pkg/hubclient: a Mirror, plus the checks a
// channel wants: one listing only (it resumed, never relisted) and event
// versions following one another with no gap and no duplicate.
type feedView struct {
	*hubclient.Mirror
	mu       sync.Mutex
	listings int
	last     uint64
	problems []string
}

func (v *feedView) Replace(items []hubclient.Item, rv uint64) {
	v.mu.Lock()
	v.listings++
	v.last = rv
	v.mu.Unlock()
	v.Mirror.Replace(items, rv)
}

func (v *feedView) Apply(e hubclient.Event) {
	v.mu.Lock()
	if e.ResourceVersion != v.last+1 {
		v.problems = append(v.problems, fmt.Sprintf("event %d after %d", e.ResourceVersion, v.last))
	}
	v.last = e.ResourceVersion
	v.mu.Unlock()
	v.Mirror.Apply(e)
}

// poolView is a channel's view of a StockPool built on pkg/hubclient: a
// PoolMirror, plus the checks a channel wants. A pool's resourceVersion is
// opaque (its members' positions), so "no gap" is that the client never had
// to list again (the pool's members and safety stock do not change here),
// and "no duplicate" that no product came twice at one version.
type poolView struct {
	*hubclient.PoolMirror
	mu       sync.Mutex
	listings int
	events   int
	seen     map[string]bool // product@version of the events applied
	problems []string
}

func (v *poolView) Replace(items []hubclient.PoolItem, rv string) {
	v.mu.Lock()
	v.listings++
	v.seen = map[string]bool{}
	v.mu.Unlock()
	v.PoolMirror.Replace(items, rv)
}

func (v *poolView) Apply(e hubclient.PoolEvent) {
	v.mu.Lock()
	v.events++
	if k := e.Item.ProductID + "@" + e.ResourceVersion; v.seen[k] {
		v.problems = append(v.problems, "a second event for "+k)
	} else {
		v.seen[k] = true
	}
	v.mu.Unlock()
	v.PoolMirror.Apply(e)
}

// TestFeedAcrossOperatorRestart: a channel lists and watches a store, and a
// StockPool of it, while sales ring up in the shop and adjustments arrive,
// and the operator is restarted in the middle (both watches end and resume).
// At the end the channel's views equal fresh listings, and it never had to
// list again nor skip or repeat a version.
func TestFeedAcrossOperatorRestart(t *testing.T) {
	const products = 20
	s := newShop(t, "e2efeed", []string{"1"}, products)
	ns := newNamespace(t, "feed")
	cfg := newOperatorConfig(t)
	op := startOperator(t, cfg)
	declareStores(t, ns, s, 10*time.Second, "1")
	st := waitReady(t, ns, "store-1")
	connectSends(t, s, st)
	viewer := bearerToken(t, ns, "channel", hubapi.StockViewerRole)
	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)

	c := &hubclient.Client{BaseURL: "http://" + op.apiAddr, Token: viewer, Backoff: 100 * time.Millisecond}
	view := &feedView{Mirror: hubclient.NewMirror()}
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan error, 1)
	go func() { synced <- c.Sync(ctx, ns, "store-1", view) }()
	createFeedPool(t, ns, "web", []string{"1"})
	waitFor(t, 60*time.Second, "the pool to list its member active and every product", func() bool {
		l, err := c.ListPool(context.Background(), ns, "web")
		return err == nil && len(l.Members) == 1 && l.Members[0].Active && len(l.Items) == products
	})
	pv := &poolView{PoolMirror: hubclient.NewPoolMirror()}
	pooled := make(chan error, 1)
	go func() { pooled <- c.SyncPool(ctx, ns, "web", pv) }()
	defer func() {
		cancel()
		<-synced
		<-pooled
	}()

	activity := func(round int) {
		ringUp(t, s, 30, []string{"1"}, products, uint64(round+1))
		for i := 0; i < 10; i++ {
			req := adjustmentRequest{ID: fmt.Sprintf("r%d-%d", round, i), Reason: "online order",
				Lines: []adjustmentLine{{ProductID: strconv.Itoa(smaregisim.FirstProductID + (i*3)%products), Quantity: -1}}}
			deadline := time.Now().Add(60 * time.Second)
			for {
				code, _, err := postAdjustment(op, adjuster, ns, "store-1", req)
				if err == nil && code < 300 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("POST %s: %d %v for 60s", req.ID, code, err)
				}
				time.Sleep(100 * time.Millisecond) // the operator is restarting
			}
		}
	}
	activity(0)
	op.stop()
	op = startOperator(t, cfg)
	activity(1)

	// Converged: the view equals a fresh listing at the same version, and
	// that listing matches Smaregi.
	fresh := func() (*hubclient.Stock, error) {
		lc := &hubclient.Client{BaseURL: "http://" + op.apiAddr, Token: viewer}
		return lc.List(context.Background(), ns, "store-1")
	}
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last difference: %s", last)
		}
	})
	waitFor(t, 120*time.Second, "the channel's view to equal a fresh listing with Smaregi's stock", func() bool {
		if diff := mirrorDiff(t, op, viewer, s, ns, "store-1", "1"); diff != "" {
			last = "mirror: " + diff
			return false
		}
		l, err := fresh()
		if err != nil {
			last = err.Error()
			return false
		}
		got, rv := view.Snapshot()
		want := map[string]hubclient.Item{}
		for _, it := range l.Items {
			want[it.ProductID] = it
		}
		if rv != l.ResourceVersion || !reflect.DeepEqual(got, want) {
			last = fmt.Sprintf("view at %d, listing at %d", rv, l.ResourceVersion)
			return false
		}
		return true
	})
	view.mu.Lock()
	if view.listings != 1 || len(view.problems) > 0 {
		t.Errorf("the channel listed %d times (want 1); version problems: %v", view.listings, view.problems)
	}
	t.Logf("the channel followed %d versions across the restart with one listing", view.last)
	view.mu.Unlock()

	waitFor(t, 120*time.Second, "the channel's view of the pool to equal a fresh pool listing", func() bool {
		lc := &hubclient.Client{BaseURL: "http://" + op.apiAddr, Token: viewer}
		l, err := lc.ListPool(context.Background(), ns, "web")
		if err != nil {
			last = err.Error()
			return false
		}
		got, rv := pv.Snapshot()
		want := map[string]hubclient.PoolItem{}
		for _, it := range l.Items {
			want[it.ProductID] = it
		}
		if rv != l.ResourceVersion || !reflect.DeepEqual(got, want) {
			last = fmt.Sprintf("pool view at %s, listing at %s", rv, l.ResourceVersion)
			return false
		}
		return true
	})
	pv.mu.Lock()
	defer pv.mu.Unlock()
	if pv.listings != 1 || len(pv.problems) > 0 {
		t.Errorf("pool: the channel listed %d times (want 1); problems: %v", pv.listings, pv.problems)
	}
	t.Logf("pool: the channel applied %d events across the restart with one listing", pv.events)
}

// TestFeedAcrossFailover: on PostgreSQL with two replicas, a channel built
// on pkg/hubclient lists and watches two stores (through the follower) and
// a StockPool of both (as through a Service: the leader, then the follower)
// while 600 sales and adjustments and 20 pool orders run, and the leader is
// killed in the middle (the follower takes over the sync engine and the
// pusher; the pool's watch resumes there). At the end each view equals a
// fresh listing; the channel never listed again nor skipped or repeated a
// version: the versions are the database's, so a fail-over moves no counter.
func TestFeedAcrossFailover(t *testing.T) {
	dsn := e2eDatabase(t)
	const products = 40
	stores := []string{"1", "2"}
	ns := newNamespace(t, "feed-ha")
	s := newShop(t, "e2efeedha", stores, products)
	newReplica := func(name string) *haReplica {
		cfg := newOperatorConfig(t)
		cfg.inventory = dsn
		cfg.extraArgs = []string{"--leader-elect"}
		return &haReplica{name: name, cfg: cfg}
	}
	a, b := newReplica("A"), newReplica("B")
	a.start(t)
	b.start(t)
	el := &election{ns: a.cfg.install.namespace, identities: map[string]string{}}
	leader := el.waitLeader(t, a, b)
	follower := a
	if leader == a {
		follower = b
	}
	declareStores(t, ns, s, 10*time.Second, stores...)
	first := waitReady(t, ns, "store-1")
	waitReady(t, ns, "store-2")
	// Smaregi sends to the follower, which survives: the shop's sends keep
	// arriving while the leader dies (a Service would do the same).
	haSendTo(t, s, first, "http://"+follower.cfg.receiverAddr+"/smaregi/v1/"+first.Status.Receiver.RouteID)
	viewer := bearerToken(t, ns, "channel", hubapi.StockViewerRole)
	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)
	const pool = "web"
	createFeedPool(t, ns, pool, stores)

	c := &hubclient.Client{BaseURL: "http://" + follower.cfg.apiAddr, Token: viewer, Backoff: 100 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	views := map[string]*feedView{}
	var syncs sync.WaitGroup
	for _, id := range stores {
		v := &feedView{Mirror: hubclient.NewMirror()}
		views["store-"+id] = v
		syncs.Go(func() { _ = c.Sync(ctx, ns, "store-"+id, v) })
	}
	// The pool's members are both stores and stay active (neither is
	// suspended nor Stalled): its watch must never end with 410.
	waitFor(t, 60*time.Second, "the follower to list the pool with both members active and every product", func() bool {
		l, err := c.ListPool(context.Background(), ns, pool)
		if err != nil || len(l.Members) != len(stores) || len(l.Items) != products {
			return false
		}
		for _, m := range l.Members {
			if !m.Active {
				return false
			}
		}
		return true
	})
	// The pool's watch goes to the leader while it lives, then to the
	// follower, as through a Service: the kill cuts it, and it resumes on
	// the other replica from the same version.
	var poolErrors atomic.Int64
	service := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		if conn, err := d.DialContext(ctx, network, leader.cfg.apiAddr); err == nil {
			return conn, nil
		}
		return d.DialContext(ctx, network, follower.cfg.apiAddr)
	}}}
	pc := &hubclient.Client{BaseURL: "http://hub", Token: viewer, HTTP: service, Backoff: 100 * time.Millisecond,
		OnError: func(error) { poolErrors.Add(1) }}
	pv := &poolView{PoolMirror: hubclient.NewPoolMirror()}
	syncs.Go(func() { _ = pc.SyncPool(ctx, ns, pool, pv) })
	defer func() {
		cancel()
		syncs.Wait()
	}()

	// 600 operations: 200 sales and 100 adjustments per phase, the leader
	// killed between the two phases while the follower takes over.
	activity := func(round int) {
		ringUp(t, s, 200, stores, products, uint64(round+1))
		for i := 0; i < 100; i++ {
			store := "store-" + stores[i%len(stores)]
			req := adjustmentRequest{ID: fmt.Sprintf("r%d-%d", round, i), Reason: "online order",
				Lines: []adjustmentLine{{ProductID: strconv.Itoa(smaregisim.FirstProductID + (i*3)%products), Quantity: -1}}}
			deadline := time.Now().Add(60 * time.Second)
			for {
				code, _, err := postAdjustment(follower.op, adjuster, ns, store, req)
				if err == nil && code < 300 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("POST %s: %d %v for 60s", req.ID, code, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		for i := 0; i < 10; i++ {
			req := adjustmentRequest{ID: fmt.Sprintf("p%d-%d", round, i), Reason: "web order",
				Lines: []adjustmentLine{{ProductID: strconv.Itoa(smaregisim.FirstProductID + (i*7)%products), Quantity: -1}}}
			deadline := time.Now().Add(60 * time.Second)
			for {
				code, body, err := poolRequest(follower.op, http.MethodPost, adjuster, ns, pool, "/adjustments", req)
				if err == nil && (code == http.StatusAccepted || code == http.StatusOK) {
					break
				}
				if err == nil && code != http.StatusServiceUnavailable || time.Now().After(deadline) {
					t.Fatalf("POST pool order %s: %d %s %v", req.ID, code, body, err)
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	activity(0)
	leader.op.kill()
	el.waitLeader(t, follower)
	activity(1)

	lc := &hubclient.Client{BaseURL: "http://" + follower.cfg.apiAddr, Token: viewer}
	for _, id := range stores {
		name := "store-" + id
		view := views[name]
		var last string
		waitFor(t, 120*time.Second, "the channel's view of "+name+" to equal a fresh listing with Smaregi's stock", func() bool {
			if diff := mirrorDiff(t, follower.op, viewer, s, ns, name, id); diff != "" {
				last = "mirror: " + diff
				return false
			}
			l, err := lc.List(context.Background(), ns, name)
			if err != nil {
				last = err.Error()
				return false
			}
			got, rv := view.Snapshot()
			want := map[string]hubclient.Item{}
			for _, it := range l.Items {
				want[it.ProductID] = it
			}
			if rv != l.ResourceVersion || !reflect.DeepEqual(got, want) {
				last = fmt.Sprintf("view at %d, listing at %d", rv, l.ResourceVersion)
				return false
			}
			return true
		})
		if t.Failed() {
			t.Logf("%s: last difference: %s", name, last)
		}
		view.mu.Lock()
		if view.listings != 1 || len(view.problems) > 0 {
			t.Errorf("%s: the channel listed %d times (want 1); version problems: %v", name, view.listings, view.problems)
		}
		t.Logf("%s: the channel followed %d versions across the fail-over with one listing", name, view.last)
		view.mu.Unlock()
	}

	// The pool's view equals a fresh pool listing, at the same version.
	var last string
	waitFor(t, 120*time.Second, "the channel's view of the pool to equal a fresh pool listing", func() bool {
		l, err := lc.ListPool(context.Background(), ns, pool)
		if err != nil {
			last = err.Error()
			return false
		}
		got, rv := pv.Snapshot()
		want := map[string]hubclient.PoolItem{}
		for _, it := range l.Items {
			want[it.ProductID] = it
		}
		if rv != l.ResourceVersion || !reflect.DeepEqual(got, want) {
			last = fmt.Sprintf("view at %s, listing at %s", rv, l.ResourceVersion)
			return false
		}
		return true
	})
	if t.Failed() {
		t.Logf("pool: last difference: %s", last)
	}
	pv.mu.Lock()
	defer pv.mu.Unlock()
	if pv.listings != 1 || len(pv.problems) > 0 {
		t.Errorf("pool: the channel listed %d times (want 1); problems: %v", pv.listings, pv.problems)
	}
	t.Logf("pool: the channel applied %d events across the fail-over with one listing (%d errors recovered from while the leader died)", pv.events, poolErrors.Load())
}

// createFeedPool labels the stores and creates a StockPool of them, with a
// safety stock of 2.
func createFeedPool(t *testing.T, ns, name string, stores []string) {
	t.Helper()
	ctx := context.Background()
	for _, id := range stores {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			st := getStore(t, ns, "store-"+id)
			if st.Labels == nil {
				st.Labels = map[string]string{}
			}
			st.Labels["pool"] = name
			return kube.Update(ctx, st)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	pool := &smaregiv1alpha1.StockPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: smaregiv1alpha1.StockPoolSpec{
			StoreSelector: metav1.LabelSelector{MatchLabels: map[string]string{"pool": name}},
			SafetyStock:   2,
		},
	}
	if err := kube.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
}
