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

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"

	"github.com/stocksync/smaregi-operator/internal/hubapi"
)

type adjustmentLine struct {
	ProductID string `json:"productId"`
	Quantity  int64  `json:"quantity"`
}

type adjustmentRequest struct {
	ID     string           `json:"id"`
	Reason string           `json:"reason"`
	Lines  []adjustmentLine `json:"lines"`
}

type adjustmentState struct {
	ID        string     `json:"id"`
	State     string     `json:"state"`
	AppliedAt *time.Time `json:"appliedAt"`
}

func postAdjustment(op *operator, token, ns, store string, req adjustmentRequest) (int, adjustmentState, error) {
	body, _ := json.Marshal(req)
	r, _ := http.NewRequest(http.MethodPost,
		fmt.Sprintf("http://%s/api/v1/namespaces/%s/smaregistores/%s/adjustments", op.apiAddr, ns, store), bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	r.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, adjustmentState{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	var out adjustmentState
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out, nil
}

func getAdjustment(op *operator, token, ns, store, id string) (int, adjustmentState) {
	r, _ := http.NewRequest(http.MethodGet,
		fmt.Sprintf("http://%s/api/v1/namespaces/%s/smaregistores/%s/adjustments/%s", op.apiAddr, ns, store, id), nil)
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		return 0, adjustmentState{}
	}
	defer func() { _ = resp.Body.Close() }()
	var out adjustmentState
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestAdjustmentsAppliedExactlyOnce is the hub API acceptance run: 1,000
// adjustments over three stores while Smaregi fails 20% of calls, loses 10%
// of answers after applying the change and is slow, with sales in the shop
// at the same time and the operator killed and restarted half-way. Every
// adjustment must end applied, and Smaregi's history and stock must show
// each exactly once.
func TestAdjustmentsAppliedExactlyOnce(t *testing.T) {
	const (
		products    = 50
		adjustments = 1000
		initial     = 100
	)
	stores := []string{"1", "2", "3"}
	s := newShop(t, "e2eadj", stores, products)
	ns := newNamespace(t, "adjust")
	cfg := newOperatorConfig(t)
	// An attempt open when the operator is killed is resent only after the
	// settle period (default 5m, for real servers that commit late); the
	// simulator answers in milliseconds, so seconds are enough here.
	cfg.extraArgs = []string{"--smaregi-request-timeout", "2s", "--push-settle-period", "5s"}
	op := startOperator(t, cfg)
	declareStores(t, ns, s, 10*time.Second, stores...)
	for _, id := range stores {
		waitReady(t, ns, "store-"+id)
	}
	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)
	viewer := bearerToken(t, ns, "dashboard", hubapi.StockViewerRole)

	t.Run("a token without the create verb is refused and nothing is stored", func(t *testing.T) {
		req := adjustmentRequest{ID: "forbidden-1", Lines: []adjustmentLine{{ProductID: "8000001", Quantity: -1}}}
		code, _, err := postAdjustment(op, viewer, ns, "store-1", req)
		if err != nil || code != http.StatusForbidden {
			t.Fatalf("viewer POST: %d %v, want 403", code, err)
		}
		if code, _ := getAdjustment(op, adjuster, ns, "store-1", "forbidden-1"); code != http.StatusNotFound {
			t.Fatalf("the refused adjustment reads back with %d, want 404", code)
		}
	})

	if err := s.sim.SetFaults(smaregisim.Faults{ErrorRate: 0.2, LostResponseRate: 0.1, LatencyMs: 5}); err != nil {
		t.Fatal(err)
	}

	// expected[store][product] is the stock change the test made: sales and
	// adjustments; adjusted[store][product] the adjustments alone.
	var mu sync.Mutex
	expected := map[string]map[string]int64{}
	adjusted := map[string]map[string]int64{}
	for _, id := range stores {
		expected[id], adjusted[id] = map[string]int64{}, map[string]int64{}
	}
	requests := make([]adjustmentRequest, adjustments)
	storeOf := make([]string, adjustments)
	for i := range requests {
		store := stores[i%len(stores)]
		p := strconv.Itoa(smaregisim.FirstProductID + (i*7)%products)
		q := int64(i%5 - 2)
		if q == 0 {
			q = 3
		}
		requests[i] = adjustmentRequest{ID: fmt.Sprintf("order-%04d", i), Reason: "online order",
			Lines: []adjustmentLine{{ProductID: p, Quantity: q}}}
		storeOf[i] = store
		expected[store][p] += q
		adjusted[store][p] += q
	}

	// submit posts until the operator accepts; a retry after a restart
	// replays the same id and body, which must not add a second adjustment.
	var replays, accepted, retried atomic.Int64
	var current atomic.Pointer[operator]
	current.Store(op)
	submit := func(i int) {
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				retried.Add(1)
			}
			code, st, err := postAdjustment(current.Load(), adjuster, ns, "store-"+storeOf[i], requests[i])
			if err == nil && (code == http.StatusAccepted || code == http.StatusOK) {
				if st.ID != requests[i].ID {
					t.Errorf("adjustment %s answered as %q", requests[i].ID, st.ID)
				}
				if code == http.StatusOK {
					replays.Add(1)
				}
				accepted.Add(1)
				return
			}
			if err == nil && code != http.StatusServiceUnavailable {
				t.Errorf("POST %s: %d", requests[i].ID, code)
				return
			}
			time.Sleep(100 * time.Millisecond) // the operator is restarting
		}
	}
	post := func(from, to int) {
		var wg sync.WaitGroup
		work := make(chan int)
		for range 8 {
			wg.Go(func() {
				for i := range work {
					submit(i)
				}
			})
		}
		for i := from; i < to; i++ {
			work <- i
		}
		close(work)
		wg.Wait()
	}
	sell := func(n int, seed int) {
		for i := range n {
			store := stores[(i+seed)%len(stores)]
			p := strconv.Itoa(smaregisim.FirstProductID + (i*13+seed)%products)
			if _, err := s.sim.Sale(store, []smaregisim.SaleLine{{ProductID: p, Quantity: 1}}); err != nil {
				t.Errorf("sale: %v", err)
				return
			}
			mu.Lock()
			expected[store][p]--
			mu.Unlock()
		}
	}

	var shopping sync.WaitGroup
	shopping.Go(func() { sell(50, 1) })
	// The clients hold back the last tenth until the kill, so that some
	// POSTs meet the stopped operator however fast the others went.
	posted, killed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(posted)
		post(0, adjustments*9/10)
		<-killed
		post(adjustments*9/10, adjustments)
	}()
	// Kill the operator while clients are posting and the pusher has
	// attempts in flight; clients retry against the restarted one.
	waitFor(t, 60*time.Second, "a third of the adjustments to be accepted", func() bool {
		return accepted.Load() >= adjustments/3
	})
	op.kill()
	close(killed)
	time.Sleep(500 * time.Millisecond)
	op = startOperator(t, cfg)
	current.Store(op)
	shopping.Go(func() { sell(50, 2) })
	<-posted
	shopping.Wait()
	if retried.Load() == 0 {
		t.Error("no POST had to be retried: the restart did not happen while clients were posting")
	}

	// The same id and body again: the existing adjustment, nothing new.
	for i := 0; i < 20; i++ {
		before := replays.Load()
		submit(i)
		if replays.Load() != before+1 {
			t.Fatalf("replaying %s did not return the existing adjustment", requests[i].ID)
		}
	}
	// The same id with another body is a conflict.
	conflicting := requests[0]
	conflicting.Lines = []adjustmentLine{{ProductID: conflicting.Lines[0].ProductID, Quantity: conflicting.Lines[0].Quantity + 1}}
	if code, _, err := postAdjustment(op, adjuster, ns, "store-"+storeOf[0], conflicting); err != nil || code != http.StatusConflict {
		t.Fatalf("same id, other body: %d %v, want 409", code, err)
	}

	waitFor(t, 3*time.Minute, "every adjustment to be applied", func() bool {
		for _, id := range stores {
			st := getStore(t, ns, "store-"+id)
			if st.Status.Inventory == nil || st.Status.Inventory.PendingAdjustments != 0 {
				return false
			}
		}
		for i := range requests {
			if code, st := getAdjustment(op, adjuster, ns, "store-"+storeOf[i], requests[i].ID); code != http.StatusOK || st.State != "applied" {
				return false
			}
		}
		return true
	})
	if err := s.sim.SetFaults(smaregisim.Faults{}); err != nil {
		t.Fatal(err)
	}

	for _, id := range stores {
		assertAppliedOnce(t, s, id, products, adjusted[id])
		for p := range products {
			pid := strconv.Itoa(smaregisim.FirstProductID + p)
			got, err := s.sim.StockOf(id, pid)
			if err != nil {
				t.Fatal(err)
			}
			if want := initial + expected[id][pid]; got != want {
				t.Errorf("store %s product %s: Smaregi has %d, want initial %d + sales and adjustments %d", id, pid, got, initial, expected[id][pid])
			}
		}
	}
	t.Logf("%d adjustments applied exactly once across a restart; %d POSTs retried, %d answered as replays",
		adjustments, retried.Load(), replays.Load())

	// The mirror catches up with what the pusher did (it asks for a pull).
	reader := viewer
	for _, id := range stores {
		name := "store-" + id
		waitFor(t, 60*time.Second, "the mirror of "+name+" to show the adjustments", func() bool {
			return mirrorDiff(t, op, reader, s, ns, name, id) == ""
		})
	}
}

func getSecret(t *testing.T, ns, name string) *corev1.Secret {
	t.Helper()
	secret := &corev1.Secret{}
	if err := kube.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, secret); err != nil {
		t.Fatal(err)
	}
	return secret
}
