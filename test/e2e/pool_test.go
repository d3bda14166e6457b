/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

func poolRequest(op *operator, method, token, ns, pool, rest string, body any) (int, []byte, error) {
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	r, _ := http.NewRequest(method, fmt.Sprintf("http://%s/api/v1/namespaces/%s/stockpools/%s%s", op.apiAddr, ns, pool, rest), rd)
	r.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var buf bytes.Buffer
	_, err = buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes(), err
}

// TestPoolOrdersAllocatedAndAppliedOnce is the StockPool acceptance run:
// 500 orders to a pool of three shops, more than the pool has of some
// products, while Smaregi fails 20% of calls and loses 10% of answers after
// applying the change, and the operator is killed and restarted half-way.
// Every accepted order must be allocated once and applied once (Smaregi's
// history shows each member's part exactly once), the members' parts add
// up to what the pool accepted, no member's stock goes below zero, and an
// order beyond the pool's availability gets 422.
func TestPoolOrdersAllocatedAndAppliedOnce(t *testing.T) {
	t.Run("bbolt", func(t *testing.T) { testPoolOrders(t, "") })
	// Two replicas serve the hub API on one database: the pool's lock must
	// hold across them.
	t.Run("PostgreSQL, two replicas", func(t *testing.T) { testPoolOrders(t, e2eDatabase(t)) })
}

func testPoolOrders(t *testing.T, dsn string) {
	const (
		products   = 4
		orders     = 500
		initial    = 100
		poolSafety = 5
	)
	stores := []string{"1", "2", "3"}
	s := newShop(t, "e2epool", stores, products)
	ns := newNamespace(t, "pool")
	args := []string{"--smaregi-request-timeout", "2s", "--push-settle-period", "5s"}
	var cfgs []operatorConfig
	if dsn == "" {
		cfg := newOperatorConfig(t)
		cfg.extraArgs = args
		cfgs = append(cfgs, cfg)
	} else {
		for range 2 {
			cfg := newOperatorConfig(t)
			cfg.inventory = dsn
			cfg.extraArgs = append(append([]string(nil), args...), "--leader-elect")
			cfgs = append(cfgs, cfg)
		}
	}
	replicas := make([]atomic.Pointer[operator], len(cfgs))
	for i, cfg := range cfgs {
		replicas[i].Store(startOperator(t, cfg))
	}
	op := replicas[len(replicas)-1].Load() // never killed: reads go there
	declareStores(t, ns, s, 10*time.Second, stores...)
	ctx := context.Background()
	for _, id := range stores {
		waitReady(t, ns, "store-"+id)
		st := getStore(t, ns, "store-"+id)
		st.Labels = map[string]string{"pool": "web"}
		if err := kube.Update(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	pool := &smaregiv1alpha1.StockPool{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: smaregiv1alpha1.StockPoolSpec{
			StoreSelector:    metav1.LabelSelector{MatchLabels: map[string]string{"pool": "web"}},
			MemberPriorities: []smaregiv1alpha1.MemberPriority{{Store: "store-2", Priority: 10}},
			SafetyStock:      poolSafety,
		},
	}
	if err := kube.Create(ctx, pool); err != nil {
		t.Fatal(err)
	}
	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)
	viewer := bearerToken(t, ns, "dashboard", hubapi.StockViewerRole)

	waitFor(t, 60*time.Second, "the pool's status to show 3 active members and the products", func() bool {
		p := &smaregiv1alpha1.StockPool{}
		if err := kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: "web"}, p); err != nil {
			t.Fatal(err)
		}
		return p.Status.ActiveMembers == 3 && p.Status.SKUs == products &&
			apimeta.IsStatusConditionTrue(p.Status.Conditions, smaregiv1alpha1.ReadyCondition)
	})
	full := int64(len(stores)*initial - poolSafety)
	waitFor(t, 60*time.Second, "the pool to list every product", func() bool {
		code, body, err := poolRequest(op, http.MethodGet, viewer, ns, "web", "/stock", nil)
		var l hubapi.PoolStockResponse
		if err != nil || code != http.StatusOK || json.Unmarshal(body, &l) != nil || len(l.Items) != products {
			return false
		}
		for _, it := range l.Items {
			if it.Available != full {
				return false
			}
		}
		return true
	})

	t.Run("an order beyond the pool's availability gets 422 with what there is", func(t *testing.T) {
		pid := strconv.Itoa(smaregisim.FirstProductID)
		code, body, err := poolRequest(op, http.MethodPost, adjuster, ns, "web", "/adjustments",
			adjustmentRequest{ID: "too-much", Lines: []adjustmentLine{{ProductID: pid, Quantity: -(full + 1)}}})
		var short hubapi.PoolShortage
		if err != nil || code != http.StatusUnprocessableEntity || json.Unmarshal(body, &short) != nil || short.Available[pid] != full {
			t.Fatalf("POST beyond availability: %d %s %v", code, body, err)
		}
		if code, _, _ := poolRequest(op, http.MethodGet, adjuster, ns, "web", "/adjustments/too-much", nil); code != http.StatusNotFound {
			t.Fatalf("the refused order reads back with %d, want 404", code)
		}
		if code, _, _ := poolRequest(op, http.MethodPost, viewer, ns, "web", "/adjustments",
			adjustmentRequest{ID: "viewer", Lines: []adjustmentLine{{ProductID: pid, Quantity: -1}}}); code != http.StatusForbidden {
			t.Fatalf("a viewer's order: %d, want 403", code)
		}
	})

	if err := s.sim.SetFaults(smaregisim.Faults{ErrorRate: 0.2, LostResponseRate: 0.1, LatencyMs: 5}); err != nil {
		t.Fatal(err)
	}

	// 1 to 4 units of one of 4 products: about 312 units wanted per product
	// against 295 in the pool, so the last orders of each product are
	// refused.
	requests := make([]adjustmentRequest, orders)
	for i := range requests {
		requests[i] = adjustmentRequest{ID: fmt.Sprintf("web-%04d", i), Reason: "web order",
			Lines: []adjustmentLine{{ProductID: strconv.Itoa(smaregisim.FirstProductID + (i*3)%products), Quantity: -int64(1 + i%4)}}}
	}
	var (
		mu       sync.Mutex
		answers  = make([]hubapi.PoolOrderResponse, orders)
		ok       = make([]bool, orders)
		refused  atomic.Int64
		accepted atomic.Int64
		retried  atomic.Int64
	)
	submit := func(i int) {
		r := i % len(replicas)
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				retried.Add(1)
				r = (r + 1) % len(replicas) // another replica, or the same one restarted
			}
			code, body, err := poolRequest(replicas[r].Load(), http.MethodPost, adjuster, ns, "web", "/adjustments", requests[i])
			switch {
			case err == nil && (code == http.StatusAccepted || code == http.StatusOK):
				var o hubapi.PoolOrderResponse
				if err := json.Unmarshal(body, &o); err != nil || o.ID != requests[i].ID {
					t.Errorf("order %s answered %s", requests[i].ID, body)
				}
				mu.Lock()
				answers[i], ok[i] = o, true
				mu.Unlock()
				accepted.Add(1)
				return
			case err == nil && code == http.StatusUnprocessableEntity:
				refused.Add(1)
				return
			case err == nil && code != http.StatusServiceUnavailable:
				t.Errorf("POST %s: %d %s", requests[i].ID, code, body)
				return
			}
			time.Sleep(100 * time.Millisecond) // the operator is restarting
		}
	}
	posted := make(chan struct{})
	go func() {
		defer close(posted)
		var wg sync.WaitGroup
		work := make(chan int)
		for range 8 {
			wg.Go(func() {
				for i := range work {
					submit(i)
				}
			})
		}
		for i := range orders {
			work <- i
		}
		close(work)
		wg.Wait()
	}()
	waitFor(t, 120*time.Second, "a third of the orders to be answered", func() bool {
		return accepted.Load()+refused.Load() >= orders/3
	})
	// Kill the first replica (the only one on bbolt) while orders are
	// being allocated and pushed, and start it again.
	replicas[0].Load().kill()
	time.Sleep(500 * time.Millisecond)
	replicas[0].Store(startOperator(t, cfgs[0]))
	op = replicas[len(replicas)-1].Load()
	<-posted
	if refused.Load() == 0 {
		t.Error("no order was refused: the run never reached the pool's limits")
	}

	// Every accepted order applied; its answer is the allocation.
	waitFor(t, 3*time.Minute, "every accepted pool order to be applied", func() bool {
		for i := range requests {
			if !ok[i] {
				continue
			}
			code, body, err := poolRequest(op, http.MethodGet, adjuster, ns, "web", "/adjustments/"+requests[i].ID, nil)
			var o hubapi.PoolOrderResponse
			if err != nil || code != http.StatusOK || json.Unmarshal(body, &o) != nil || o.State != hubapi.AdjustmentApplied {
				return false
			}
			answers[i] = o
		}
		return true
	})
	if err := s.sim.SetFaults(smaregisim.Faults{}); err != nil {
		t.Fatal(err)
	}

	// What the pool accepted, per product, and what each member took.
	poolTook := map[string]int64{}
	memberTook := map[string]map[string]int64{}
	for _, id := range stores {
		memberTook[id] = map[string]int64{}
	}
	for i := range requests {
		if !ok[i] {
			continue
		}
		for _, l := range requests[i].Lines {
			poolTook[l.ProductID] += l.Quantity
		}
		var sum int64
		for _, a := range answers[i].Allocations {
			for _, l := range a.Lines {
				memberTook[a.Store[len("store-"):]][l.ProductID] += l.Quantity
				sum += l.Quantity
			}
		}
		if sum != requests[i].Lines[0].Quantity {
			t.Errorf("order %s of %d was allocated %d: %+v", requests[i].ID, requests[i].Lines[0].Quantity, sum, answers[i].Allocations)
		}
	}
	for p := range products {
		pid := strconv.Itoa(smaregisim.FirstProductID + p)
		var members int64
		for _, id := range stores {
			members += memberTook[id][pid]
		}
		if members != poolTook[pid] {
			t.Errorf("product %s: the members took %d, the pool accepted %d", pid, members, poolTook[pid])
		}
		if -poolTook[pid] > full {
			t.Errorf("product %s: the pool accepted %d, more than its %d", pid, -poolTook[pid], full)
		}
	}
	for _, id := range stores {
		assertAppliedOnce(t, s, id, products, memberTook[id])
		for p := range products {
			pid := strconv.Itoa(smaregisim.FirstProductID + p)
			got, err := s.sim.StockOf(id, pid)
			if err != nil {
				t.Fatal(err)
			}
			if want := initial + memberTook[id][pid]; got != want || got < 0 {
				t.Errorf("store %s product %s: Smaregi has %d, want initial %d + pool orders %d, never below 0", id, pid, got, initial, memberTook[id][pid])
			}
		}
	}
	t.Logf("%d replica(s): %d pool orders accepted and applied exactly once, %d refused as beyond availability; %d POSTs retried across a restart", len(replicas),
		accepted.Load(), refused.Load(), retried.Load())
}
