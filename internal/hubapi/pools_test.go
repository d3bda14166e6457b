package hubapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/stockpool"
)

// poolFixture is a fixture with a real bbolt store, three member stores
// (shibuya from the fixture, umeda and namba) and a pool "kanto" over the
// stores labelled pool=kanto: shibuya (priority 10), umeda, and namba, which
// is Stalled (its credentials were refused) and so takes no orders.
type poolFixture struct {
	*fixture
	inv  *boltstore.Store
	pool *smaregiv1alpha1.StockPool
}

func newPoolFixture(t *testing.T, policy smaregiv1alpha1.AllocationPolicy, poolSafety int64) *poolFixture {
	t.Helper()
	inv, err := boltstore.Open(filepath.Join(t.TempDir(), "inventory.db"))
	must(t, err)
	t.Cleanup(func() { _ = inv.Close() })
	f := newFixture(t, fixtureOpts{store: inv, safetyStock: 1})
	ctx := context.Background()
	member := func(st *smaregiv1alpha1.SmaregiStore, ready bool) {
		if st.ResourceVersion == "" {
			must(t, k8s.Create(ctx, st))
		} else {
			st.Labels = map[string]string{"pool": "kanto"}
			must(t, k8s.Update(ctx, st))
		}
		status := metav1.ConditionFalse
		if ready {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&st.Status.Conditions, metav1.Condition{Type: smaregiv1alpha1.ReadyCondition, Status: status, Reason: "Test"})
		if !ready {
			meta.SetStatusCondition(&st.Status.Conditions, metav1.Condition{Type: smaregiv1alpha1.StalledCondition, Status: metav1.ConditionTrue, Reason: "Test"})
		}
		must(t, k8s.Status().Update(ctx, st))
	}
	member(f.store, true)
	for _, m := range []struct {
		name  string
		ready bool
	}{{"umeda", true}, {"namba", false}} {
		member(&smaregiv1alpha1.SmaregiStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: m.name, Labels: map[string]string{"pool": "kanto"}},
			Spec: smaregiv1alpha1.SmaregiStoreSpec{ContractID: "sb12345", StoreID: "2", Endpoint: "http://127.0.0.1:1/access/",
				CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: "smaregi-credentials"}},
		}, m.ready)
	}
	pool := &smaregiv1alpha1.StockPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "kanto"},
		Spec: smaregiv1alpha1.StockPoolSpec{
			StoreSelector:    metav1.LabelSelector{MatchLabels: map[string]string{"pool": "kanto"}},
			MemberPriorities: []smaregiv1alpha1.MemberPriority{{Store: "shibuya", Priority: 10}},
			SafetyStock:      poolSafety, AllocationPolicy: policy,
		},
	}
	must(t, k8s.Create(ctx, pool))
	// shibuya keeps 1 back (its spec.safetyStock), umeda and namba none.
	pull := func(store string, rows ...inventory.Row) {
		_, err := inv.ApplyPull(ctx, inventory.StoreKey{Namespace: f.ns, Name: store}, rows, t0)
		must(t, err)
	}
	pull("shibuya", inventory.Row{ProductID: "1", StockAmount: 4, UpdDateTime: t0}, inventory.Row{ProductID: "3", StockAmount: 2, UpdDateTime: t0})
	pull("umeda", inventory.Row{ProductID: "1", StockAmount: 5, UpdDateTime: t0}, inventory.Row{ProductID: "2", StockAmount: 7, UpdDateTime: t0})
	pull("namba", inventory.Row{ProductID: "1", StockAmount: 100, UpdDateTime: t0})
	return &poolFixture{fixture: f, inv: inv, pool: pool}
}

func (f *poolFixture) poolPath(rest string) string {
	return f.base + "/api/v1/namespaces/" + f.ns + "/stockpools/" + f.pool.Name + rest
}

func (f *poolFixture) stock() PoolStockResponse {
	f.t.Helper()
	res := f.do(http.MethodGet, f.poolPath("/stock"), f.viewer, nil)
	if res.code != http.StatusOK {
		f.t.Fatalf("GET pool stock: %d %s", res.code, res.body)
	}
	var out PoolStockResponse
	must(f.t, json.Unmarshal(res.body, &out))
	return out
}

func (f *poolFixture) order(id string, lines ...RequestLine) response {
	f.t.Helper()
	return f.do(http.MethodPost, f.poolPath("/adjustments"), f.adjuster, AdjustmentRequest{ID: id, Reason: "web order", Lines: lines})
}

func decodeOrder(t *testing.T, res response) PoolOrderResponse {
	t.Helper()
	var o PoolOrderResponse
	must(t, json.Unmarshal(res.body, &o))
	return o
}

func TestPoolStockListing(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationPriority, 2)
	got := f.stock()
	wantMembers := []PoolMemberInfo{{"namba", 0, false, false}, {"shibuya", 10, true, true}, {"umeda", 0, true, true}}
	if len(got.Members) != 3 || got.Members[0] != wantMembers[0] || got.Members[1] != wantMembers[1] || got.Members[2] != wantMembers[2] {
		t.Fatalf("members = %+v, want %+v", got.Members, wantMembers)
	}
	// Product 1: shibuya 4-1=3, umeda 5, namba Stalled; pool 8-2=6.
	// Product 2: umeda 7 → 5. Product 3: shibuya 2-1=1 → 0.
	want := map[string]int64{"1": 6, "2": 5, "3": 0}
	if len(got.Items) != 3 {
		t.Fatalf("items = %+v", got.Items)
	}
	for i, it := range got.Items {
		if it.Available != want[it.ProductID] || (i > 0 && got.Items[i-1].ProductID >= it.ProductID) {
			t.Errorf("item %+v, want available %d, in product order", it, want[it.ProductID])
		}
	}
	if m := got.Items[0].Members; len(m) != 2 || m[0] != (PoolMemberStock{"shibuya", 3}) || m[1] != (PoolMemberStock{"umeda", 5}) {
		t.Errorf("breakdown of product 1 = %+v", m)
	}
	res := f.do(http.MethodGet, f.poolPath("/stock?productId=2"), f.viewer, nil)
	var one PoolStockResponse
	must(t, json.Unmarshal(res.body, &one))
	if res.code != http.StatusOK || len(one.Items) != 1 || one.Items[0].Available != 5 {
		t.Errorf("?productId=2: %d %s", res.code, res.body)
	}
	if res := f.do(http.MethodGet, f.poolPath("/stock"), f.nobody, nil); res.code != http.StatusForbidden {
		t.Errorf("a caller without the role: %d, want 403", res.code)
	}
}

func TestPoolOrderAllocatesDurablyAndOnce(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationPriority, 0)
	ctx := context.Background()
	// Product 1 has 3 (shibuya, priority 10) + 5 (umeda): 4 is split.
	res := f.order("order-1", RequestLine{ProductID: "1", Quantity: -4}, RequestLine{ProductID: "2", Quantity: -1})
	if res.code != http.StatusAccepted {
		t.Fatalf("POST: %d %s", res.code, res.body)
	}
	o := decodeOrder(t, res)
	if o.State != AdjustmentPending || len(o.Allocations) != 2 ||
		o.Allocations[0].Store != "shibuya" || o.Allocations[0].Lines[0] != (ResponseLine{"1", -3}) ||
		o.Allocations[1].Store != "umeda" || len(o.Allocations[1].Lines) != 2 {
		t.Fatalf("order = %+v", o)
	}
	id := stockpool.MemberAdjustmentID("kanto", "order-1")
	for store, want := range map[string]int{"shibuya": 1, "umeda": 2} {
		a, found, err := f.inv.GetAdjustment(ctx, inventory.StoreKey{Namespace: f.ns, Name: store}, id)
		if err != nil || !found || len(a.Lines) != want {
			t.Fatalf("member adjustment of %s: %+v %v %v", store, a, found, err)
		}
	}
	// The pool now has 4 of product 1: a replay changes nothing, and a
	// different body under the id is a conflict.
	if res := f.order("order-1", RequestLine{ProductID: "2", Quantity: -1}, RequestLine{ProductID: "1", Quantity: -4}); res.code != http.StatusOK ||
		decodeOrder(t, res).Allocations[0].Lines[0] != (ResponseLine{"1", -3}) {
		t.Fatalf("replay: %d %s", res.code, res.body)
	}
	if res := f.order("order-1", RequestLine{ProductID: "1", Quantity: -1}); res.code != http.StatusConflict {
		t.Fatalf("another body under the id: %d %s", res.code, res.body)
	}
	if got := f.stock().Items[0]; got.Available != 4 {
		t.Fatalf("product 1 after the order: %+v, want 4 available", got)
	}
	// Beyond availability: 422 with what there is, nothing stored.
	res = f.order("order-2", RequestLine{ProductID: "1", Quantity: -5})
	var short PoolShortage
	must(t, json.Unmarshal(res.body, &short))
	if res.code != http.StatusUnprocessableEntity || short.Available["1"] != 4 {
		t.Fatalf("order beyond availability: %d %s", res.code, res.body)
	}
	if res := f.do(http.MethodGet, f.poolPath("/adjustments/order-2"), f.adjuster, nil); res.code != http.StatusNotFound {
		t.Fatalf("a refused order was stored: %d %s", res.code, res.body)
	}
	// The state follows the members' adjustments.
	for _, store := range []string{"shibuya", "umeda"} {
		markApplied(t, f.inv, inventory.StoreKey{Namespace: f.ns, Name: store}, id)
	}
	res = f.do(http.MethodGet, f.poolPath("/adjustments/order-1"), f.adjuster, nil)
	if o := decodeOrder(t, res); res.code != http.StatusOK || o.State != AdjustmentApplied || o.Allocations[1].AppliedAt == nil {
		t.Fatalf("GET after both parts applied: %d %s", res.code, res.body)
	}
	// Positive lines and product codes are refused; a store's own id may
	// not take the pool's prefix.
	if res := f.order("order-3", RequestLine{ProductID: "1", Quantity: 1}); res.code != http.StatusUnprocessableEntity {
		t.Errorf("a positive pool line: %d", res.code)
	}
	if res := f.do(http.MethodPost, f.path("/adjustments"), f.adjuster, AdjustmentRequest{ID: "spool:kanto:x", Lines: []RequestLine{{ProductID: "1", Quantity: -1}}}); res.code != http.StatusUnprocessableEntity {
		t.Errorf("a store adjustment with a reserved id: %d", res.code)
	}
	if res := f.do(http.MethodPost, f.poolPath("/adjustments"), f.viewer, AdjustmentRequest{ID: "o", Lines: []RequestLine{{ProductID: "1", Quantity: -1}}}); res.code != http.StatusForbidden {
		t.Errorf("a viewer ordering from the pool: %d, want 403", res.code)
	}
}

// markApplied settles an adjustment as the pusher does when Smaregi applied it.
func markApplied(t *testing.T, st inventory.Store, key inventory.StoreKey, id string) {
	t.Helper()
	ctx := context.Background()
	at := inventory.Attempt{Key: key, ID: "attempt-" + id, AdjustmentIDs: []string{id}, StartedAt: t0}
	must(t, st.BeginAttempt(ctx, at))
	must(t, st.FinishAttempt(ctx, key, at.ID, inventory.AttemptResult{Applied: true, At: t0}))
}

// TestPoolOrdersNeverOversell: concurrent orders for the last units; the
// pool lock lets exactly as many through as there are.
func TestPoolOrdersNeverOversell(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationMostAvailable, 0)
	const orders = 20 // product 1: 3 + 5 available
	codes := make([]int, orders)
	var wg sync.WaitGroup
	for i := range orders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = f.order("race-"+string(rune('a'+i)), RequestLine{ProductID: "1", Quantity: -1}).code
		}()
	}
	wg.Wait()
	accepted := 0
	for _, c := range codes {
		switch c {
		case http.StatusAccepted:
			accepted++
		case http.StatusUnprocessableEntity:
		default:
			t.Fatalf("answers %v", codes)
		}
	}
	if accepted != 8 {
		t.Fatalf("%d orders accepted for 8 units: %v", accepted, codes)
	}
	if got := f.stock().Items[0]; got.Available != 0 || got.Members[0].Available != 0 || got.Members[1].Available != 0 {
		t.Fatalf("product 1 after selling out: %+v", got)
	}
}

// TestPoolOrderRecordedButNotSubmitted: a process that died after recording
// an allocation, before submitting its member adjustments. The retry
// submits the recorded allocation (not a new one, although availability
// changed meanwhile), and another order first completes it, so it never
// counts the recorded units as available.
func TestPoolOrderRecordedButNotSubmitted(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationPriority, 0)
	ctx := context.Background()
	key := inventory.StoreKey{Namespace: f.ns, Name: "kanto"}
	req := AdjustmentRequest{ID: "crashed", Reason: "web order", Lines: []RequestLine{{ProductID: "1", Quantity: -6}}}
	id := stockpool.MemberAdjustmentID("kanto", "crashed")
	_, _, err := f.inv.RecordPoolOrder(ctx, inventory.PoolOrder{
		Pool: key, ID: req.ID, Reason: req.Reason, Fingerprint: req.fingerprint(),
		Lines: []inventory.AdjustmentLine{{ProductID: "1", Quantity: -6}},
		Allocations: []inventory.PoolAllocation{
			{Store: "shibuya", AdjustmentID: id, Lines: []inventory.AdjustmentLine{{ProductID: "1", Quantity: -3}}},
			{Store: "umeda", AdjustmentID: id, Lines: []inventory.AdjustmentLine{{ProductID: "1", Quantity: -3}}},
		},
	})
	must(t, err)
	// Of 8, 6 are recorded for "crashed": a new order for 3 must fail.
	res := f.order("next", RequestLine{ProductID: "1", Quantity: -3})
	if res.code != http.StatusUnprocessableEntity {
		t.Fatalf("an order counting the unsubmitted allocation as available: %d %s", res.code, res.body)
	}
	if _, found, _ := f.inv.GetAdjustment(ctx, inventory.StoreKey{Namespace: f.ns, Name: "umeda"}, id); !found {
		t.Fatal("the next order did not complete the recorded one first")
	}
	res = f.do(http.MethodPost, f.poolPath("/adjustments"), f.adjuster, req)
	o := decodeOrder(t, res)
	if res.code != http.StatusOK || len(o.Allocations) != 2 || o.Allocations[1].Lines[0].Quantity != -3 {
		t.Fatalf("retry of the recorded order: %d %s", res.code, res.body)
	}
	if got := f.stock().Items[0]; got.Available != 2 {
		t.Fatalf("product 1: %+v, want 2 available", got)
	}
}

// poolWatchEvent is one line of a pool watch.
type poolWatchEvent struct {
	Type   string `json:"type"`
	Object struct {
		PoolStockItem
		ResourceVersion string `json:"resourceVersion"`
		Code            int    `json:"code"`
	} `json:"object"`
}

// watchPool opens a pool watch and returns its events as they come.
func (f *poolFixture) watchPool(rv string) (<-chan poolWatchEvent, func()) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.poolPath("/stock?watch=true&resourceVersion="+url.QueryEscape(rv)), nil)
	must(f.t, err)
	req.Header.Set("Authorization", "Bearer "+f.viewer)
	resp, err := http.DefaultClient.Do(req)
	must(f.t, err)
	if resp.StatusCode != http.StatusOK {
		cancel()
		f.t.Fatalf("pool watch: %d", resp.StatusCode)
	}
	out := make(chan poolWatchEvent, 100)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var e poolWatchEvent
			if dec.Decode(&e) != nil {
				return
			}
			out <- e
		}
	}()
	return out, cancel
}

func nextEvent(t *testing.T, ch <-chan poolWatchEvent, skipBookmarks bool) poolWatchEvent {
	t.Helper()
	for {
		select {
		case e, ok := <-ch:
			if !ok {
				t.Fatal("the watch ended")
			}
			if skipBookmarks && e.Type == "BOOKMARK" {
				continue
			}
			return e
		case <-time.After(30 * time.Second): // only stops a broken test from hanging
			t.Fatal("no event")
		}
	}
}

// TestPoolWatch: list, then watch: a member's stock change and a pool
// order each show as the product's pooled item now; a watch resumed from
// an event's resourceVersion repeats nothing; a change of the active
// members ends the watch with 410.
func TestPoolWatch(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationPriority, 0)
	ctx := context.Background()
	list := f.stock()
	if list.ResourceVersion == "" {
		t.Fatal("the pool listing has no resourceVersion")
	}
	events, stop := f.watchPool(list.ResourceVersion)
	defer stop()

	// umeda sells 2 of product 1: 3 + 3 = 6.
	_, err := f.inv.ApplyPull(ctx, inventory.StoreKey{Namespace: f.ns, Name: "umeda"}, []inventory.Row{{ProductID: "1", StockAmount: 3, UpdDateTime: t0.Add(time.Minute)}}, t0.Add(time.Minute))
	must(t, err)
	e := nextEvent(t, events, true)
	if e.Type != "MODIFIED" || e.Object.ProductID != "1" || e.Object.Available != 6 || len(e.Object.Members) != 2 {
		t.Fatalf("event after umeda's change: %+v", e)
	}
	afterPull := e.Object.ResourceVersion
	// A pool order of 4 takes shibuya's 3 and 1 of umeda's: 2 left.
	if res := f.order("watch-1", RequestLine{ProductID: "1", Quantity: -4}); res.code != http.StatusAccepted {
		t.Fatalf("POST: %d %s", res.code, res.body)
	}
	// Events carry the product as it is when sent, so the last one (at the
	// listing's version now) shows 2.
	now := f.stock().ResourceVersion
	var last poolWatchEvent
	for last.Object.ResourceVersion != now {
		last = nextEvent(t, events, true)
		if last.Type != "MODIFIED" || last.Object.ProductID != "1" {
			t.Fatalf("event after the order: %+v", last)
		}
	}
	if last.Object.Available != 2 {
		t.Fatalf("last event after the order: %+v, want 2 available", last)
	}
	stop()

	// Resumed from the first event: the order's changes again, not the pull.
	resumed, stop2 := f.watchPool(afterPull)
	defer stop2()
	if e := nextEvent(t, resumed, true); e.Object.ProductID != "1" || e.Object.Available != 2 {
		t.Fatalf("resumed watch: %+v", e)
	}
	// From the last event: nothing until the members change; then 410.
	stop2()
	latest, stop3 := f.watchPool(last.Object.ResourceVersion)
	defer stop3()
	namba := &smaregiv1alpha1.SmaregiStore{}
	must(t, k8s.Get(ctx, types.NamespacedName{Namespace: f.ns, Name: "namba"}, namba))
	meta.SetStatusCondition(&namba.Status.Conditions, metav1.Condition{Type: smaregiv1alpha1.StalledCondition, Status: metav1.ConditionFalse, Reason: "Test"})
	must(t, k8s.Status().Update(ctx, namba))
	if e := nextEvent(t, latest, true); e.Type != "ERROR" || e.Object.Code != http.StatusGone {
		t.Fatalf("after namba became active: %+v, want a 410 ERROR", e)
	}
	if res := f.do(http.MethodGet, f.poolPath("/stock?watch=true&resourceVersion="+url.QueryEscape(last.Object.ResourceVersion)), f.viewer, nil); res.code != http.StatusGone {
		t.Fatalf("watching from a version of other members: %d, want 410", res.code)
	}
}

// A member's per-product safety stock (its overrides ConfigMap, recorded in
// the inventory) holds stock back in the pool as in the member's own
// listing: the pool lists, watches and allocates with the member's rule.
func TestPoolHonoursMembersSafetyStockOverrides(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationPriority, 0)
	ctx := context.Background()
	// umeda holds back 4 of product 1 (it has 5) and nothing else.
	_, err := f.inv.SetSafetyStock(ctx, inventory.StoreKey{Namespace: f.ns, Name: "umeda"},
		inventory.SafetyStock{Default: 0, Overrides: map[string]int64{"1": 4}})
	must(t, err)
	got := f.stock()
	for _, it := range got.Items {
		if it.ProductID != "1" {
			continue
		}
		// shibuya 4-1=3, umeda 5-4=1: 4 in the pool.
		if it.Available != 4 || len(it.Members) != 2 || it.Members[1] != (PoolMemberStock{"umeda", 1}) {
			t.Fatalf("product 1 = %+v, want 4 available with umeda at 1", it)
		}
	}
	if res := f.order("over", RequestLine{ProductID: "1", Quantity: -5}); res.code != http.StatusUnprocessableEntity {
		t.Fatalf("an order for 5 of 4 pooled: %d %s, want 422", res.code, res.body)
	}
	if res := f.order("fits", RequestLine{ProductID: "1", Quantity: -4}); res.code != http.StatusAccepted && res.code != http.StatusCreated {
		t.Fatalf("an order for 4 of 4 pooled: %d %s", res.code, res.body)
	}
}

// poolOverrides creates the ConfigMap "pool-safety" (labelled when
// labelled) and names it in the pool's spec.safetyStockOverridesRef.
func (f *poolFixture) poolOverrides(data map[string]string, labelled bool) *corev1.ConfigMap {
	f.t.Helper()
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "pool-safety"}, Data: data}
	if labelled {
		cm.Labels = map[string]string{smaregiv1alpha1.SafetyStockOverridesLabel: "true"}
	}
	must(f.t, k8s.Create(ctx, cm))
	f.updatePool(func(p *smaregiv1alpha1.StockPool) {
		p.Spec.SafetyStockOverridesRef = &smaregiv1alpha1.ConfigMapReference{Name: cm.Name}
	})
	return cm
}

func (f *poolFixture) updatePool(change func(*smaregiv1alpha1.StockPool)) {
	f.t.Helper()
	must(f.t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p := &smaregiv1alpha1.StockPool{}
		if err := k8s.Get(context.Background(), types.NamespacedName{Namespace: f.ns, Name: f.pool.Name}, p); err != nil {
			return err
		}
		change(p)
		return k8s.Update(context.Background(), p)
	}))
}

func itemsByID(items []PoolStockItem) map[string]PoolStockItem {
	out := map[string]PoolStockItem{}
	for _, it := range items {
		out[it.ProductID] = it
	}
	return out
}

// TestPoolSafetyStockOverrides: the pool's overrides ConfigMap sets what it
// holds back per product, in the listing and at order acceptance; bad
// entries are ignored, and an unlabelled ConfigMap is not read.
func TestPoolSafetyStockOverrides(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationPriority, 2)
	ctx := context.Background()
	cm := f.poolOverrides(map[string]string{"1": "5", "3": "0", "2": "x", "abc": "1"}, false)
	// Unlabelled: spec.safetyStock (2) for every product.
	// Product 1: 3 + 5 - 2 = 6; product 2: 7 - 2 = 5; product 3: 1 - 2 → 0.
	got := itemsByID(f.stock().Items)
	if got["1"].SafetyStock != 2 || got["1"].Available != 6 || got["3"].Available != 0 {
		t.Fatalf("with an unlabelled ConfigMap: %+v", got)
	}

	cm.Labels = map[string]string{smaregiv1alpha1.SafetyStockOverridesLabel: "true"}
	must(t, k8s.Update(ctx, cm))
	list := f.stock()
	got = itemsByID(list.Items)
	for id, want := range map[string]PoolStockItem{
		"1": {SafetyStock: 5, Available: 3}, // 8 - 5
		"2": {SafetyStock: 2, Available: 5}, // "x" is ignored: spec.safetyStock
		"3": {SafetyStock: 0, Available: 1}, // shibuya's 2 - its own 1
	} {
		if got[id].SafetyStock != want.SafetyStock || got[id].Available != want.Available {
			t.Errorf("product %s = %+v, want safetyStock %d, available %d", id, got[id], want.SafetyStock, want.Available)
		}
	}
	if list.SafetyStock != 2 {
		t.Errorf("the listing's safetyStock %d, want spec.safetyStock 2", list.SafetyStock)
	}
	if res := f.do(http.MethodGet, f.poolPath("/stock?productId=1"), f.viewer, nil); res.code != http.StatusOK {
		t.Fatalf("?productId=1: %d %s", res.code, res.body)
	} else {
		var one PoolStockResponse
		must(t, json.Unmarshal(res.body, &one))
		if len(one.Items) != 1 || one.Items[0].SafetyStock != 5 || one.Items[0].Available != 3 {
			t.Errorf("?productId=1: %s", res.body)
		}
	}

	// Orders stop at the new limit.
	res := f.order("over", RequestLine{ProductID: "1", Quantity: -4})
	var short PoolShortage
	must(t, json.Unmarshal(res.body, &short))
	if res.code != http.StatusUnprocessableEntity || short.Available["1"] != 3 {
		t.Fatalf("an order for 4 of 3: %d %s", res.code, res.body)
	}
	if res := f.order("fits", RequestLine{ProductID: "1", Quantity: -3}, RequestLine{ProductID: "3", Quantity: -1}); res.code != http.StatusAccepted {
		t.Fatalf("an order for 3 of 3 and 1 of 1: %d %s", res.code, res.body)
	}
	got = itemsByID(f.stock().Items)
	if got["1"].Available != 0 || got["3"].Available != 0 {
		t.Fatalf("after the order: %+v", got)
	}
}

// TestPoolWatchEndsWhenSafetyStockChanges: the pool's own safety stock is
// not in any member's feed, so a change of it (the ConfigMap's values or
// spec.safetyStock) ends the pool's watches with 410, and a watch from a
// listing made before it answers 410; an edit that changes no value keeps
// the resourceVersion. Events carry each product's safety stock.
func TestPoolWatchEndsWhenSafetyStockChanges(t *testing.T) {
	f := newPoolFixture(t, smaregiv1alpha1.AllocationPriority, 0)
	ctx := context.Background()
	cm := f.poolOverrides(map[string]string{"1": "1"}, true)
	list := f.stock()
	events, stop := f.watchPool(list.ResourceVersion)
	defer stop()
	// umeda sells 2 of product 1: 3 + 3 - 1 = 5.
	_, err := f.inv.ApplyPull(ctx, inventory.StoreKey{Namespace: f.ns, Name: "umeda"}, []inventory.Row{{ProductID: "1", StockAmount: 3, UpdDateTime: t0.Add(time.Minute)}}, t0.Add(time.Minute))
	must(t, err)
	e := nextEvent(t, events, true)
	if e.Type != "MODIFIED" || e.Object.ProductID != "1" || e.Object.SafetyStock != 1 || e.Object.Available != 5 {
		t.Fatalf("event after umeda's change: %+v", e)
	}

	// A bad entry added changes no value: the same version, a watch from
	// it starts.
	before := f.stock().ResourceVersion
	cm.Data["abc"] = "1"
	must(t, k8s.Update(ctx, cm))
	if after := f.stock().ResourceVersion; after != before {
		t.Fatalf("an edit that changes no value moved the version %q → %q", before, after)
	}
	_, stop2 := f.watchPool(before)
	stop2()

	// A value changed: the open watch ends with 410, and so does a watch
	// from a version before it.
	cm.Data["1"] = "2"
	must(t, k8s.Update(ctx, cm))
	if e := nextEvent(t, events, true); e.Type != "ERROR" || e.Object.Code != http.StatusGone {
		t.Fatalf("after the ConfigMap's change: %+v, want a 410 ERROR", e)
	}
	if res := f.do(http.MethodGet, f.poolPath("/stock?watch=true&resourceVersion="+url.QueryEscape(before)), f.viewer, nil); res.code != http.StatusGone {
		t.Fatalf("watching from before the change: %d %s, want 410", res.code, res.body)
	}

	// spec.safetyStock too (the watch reads the pool again).
	list = f.stock()
	if got := itemsByID(list.Items)["1"]; got.SafetyStock != 2 || got.Available != 4 {
		t.Fatalf("product 1 after the change: %+v", got)
	}
	events, stop3 := f.watchPool(list.ResourceVersion)
	defer stop3()
	f.updatePool(func(p *smaregiv1alpha1.StockPool) { p.Spec.SafetyStock = 3 })
	if e := nextEvent(t, events, true); e.Type != "ERROR" || e.Object.Code != http.StatusGone {
		t.Fatalf("after spec.safetyStock's change: %+v, want a 410 ERROR", e)
	}
}
