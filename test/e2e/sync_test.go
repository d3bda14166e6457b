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
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// TestMirrorFollowsTheShop is the inventory sync acceptance run: two stores
// of one contract, sales and returns rung up in the simulator and sent to the
// receiver, lost and duplicated sends, back-office changes nobody sent, and
// the operator killed mid-run. After each phase the mirror (read through the
// hub API) must equal the simulator's stock.
func TestMirrorFollowsTheShop(t *testing.T) {
	const products = 300
	stores := []string{"1", "2"}
	s := newShop(t, "e2esync", stores, products)
	ns := newNamespace(t, "sync")
	cfg := newOperatorConfig(t)
	op := startOperator(t, cfg)

	// The poll interval is the minimum the API allows; sends must do the
	// work in between.
	declareStores(t, ns, s, 10*time.Second, stores...)
	first := waitReady(t, ns, "store-1")
	waitReady(t, ns, "store-2")
	connectSends(t, s, first)
	token := bearerToken(t, ns, "reader", hubapi.StockViewerRole)

	converged := func(what string, timeout time.Duration) {
		t.Helper()
		for _, id := range stores {
			name := "store-" + id
			var diff string
			waitFor(t, timeout, what+": mirror of "+name+" equal to Smaregi", func() bool {
				diff = mirrorDiff(t, op, token, s, ns, name, id)
				return diff == ""
			})
		}
	}
	converged("initial import", 60*time.Second)
	if st := getStore(t, ns, "store-1"); st.Status.Inventory == nil || st.Status.Inventory.SKUs != products {
		t.Fatalf("status.inventory after import: %+v, want %d SKUs", st.Status.Inventory, products)
	}

	t.Run("200 sales and returns reach the mirror through sends", func(t *testing.T) {
		ringUp(t, s, 200, stores, products, 1)
		if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := sendStates(s); st[smaregisim.SendSent] == 0 {
			t.Fatalf("no send reached the receiver: %v", st)
		}
		converged("after 200 sales", 60*time.Second)
		waitFor(t, 30*time.Second, "the send→mirror lag to be reported", func() bool {
			n, ok := metric(t, op, "smaregi_mirror_send_lag_seconds_count")
			return ok && n > 0
		})
		p50, n := histogramQuantile(t, op, "smaregi_mirror_send_lag_seconds", 0.5)
		p99, _ := histogramQuantile(t, op, "smaregi_mirror_send_lag_seconds", 0.99)
		t.Logf("send→mirror lag over %.0f pulls: p50 ≤ %gs, p99 ≤ %gs (bucket bounds)", n, p50, p99)
		// Status writes are rate-limited (a few seconds), so wait for it.
		waitFor(t, 30*time.Second, "status.inventory.lastSendTime", func() bool {
			inv := getStore(t, ns, "store-1").Status.Inventory
			return inv != nil && inv.LastSendTime != nil
		})
	})

	t.Run("dropped and duplicated sends converge by the next poll", func(t *testing.T) {
		if err := s.sim.SetFaults(smaregisim.Faults{DropSendRate: 0.3, DuplicateSendRate: 0.1}); err != nil {
			t.Fatal(err)
		}
		before := sendStates(s)
		ringUp(t, s, 100, stores, products, 2)
		if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		after := sendStates(s)
		if after[smaregisim.SendDropped] == before[smaregisim.SendDropped] || after["duplicate"] == before["duplicate"] {
			t.Fatalf("the faults dropped or duplicated nothing (before %v, after %v)", before, after)
		}
		// What the dropped sends alone announced waits for the next poll,
		// which on a store whose polls found nothing for a while is a
		// stretched one: up to 8 × 10 s (mirror.DefaultPollStretchMax).
		converged("after dropped and duplicated sends", 2*time.Minute)
		if err := s.sim.SetFaults(smaregisim.Faults{}); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("back-office movements nobody sent are found by a full reconcile as drift", func(t *testing.T) {
		// Sending off, and the simulator's clock stepped back an hour so the
		// rows are older than the watermark (and its overlap), as a change
		// committed late in Smaregi would be: no incremental pull can see
		// them, only the full reconcile.
		if err := s.sim.SetSendConfig(smaregisim.SendConfig{Functions: nil}); err != nil {
			t.Fatal(err)
		}
		st := getStore(t, ns, "store-2")
		patch := client.MergeFrom(st.DeepCopy())
		st.Spec.Sync.PollInterval.Duration = time.Hour
		if err := kube.Patch(context.Background(), st, patch); err != nil {
			t.Fatal(err)
		}
		moved := []string{"8000007", "8000008", "8000009"}
		s.lag.Store(int64(time.Hour))
		for _, p := range moved {
			if _, err := s.sim.StockMovement(smaregisim.StockMovement{StoreID: "2", ProductID: p, Amount: 7, StockDivision: "05"}); err != nil {
				t.Fatal(err)
			}
		}
		s.lag.Store(0)
		st = getStore(t, ns, "store-2")
		patch = client.MergeFrom(st.DeepCopy())
		request := time.Now().UTC().Format(time.RFC3339Nano)
		if st.Annotations == nil {
			st.Annotations = map[string]string{}
		}
		st.Annotations[smaregiv1alpha1.ResyncRequestAnnotation] = request
		if err := kube.Patch(context.Background(), st, patch); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 60*time.Second, "the requested full reconcile to finish", func() bool {
			inv := getStore(t, ns, "store-2").Status.Inventory
			return inv != nil && inv.LastHandledResyncRequest == request
		})
		if diff := mirrorDiff(t, op, token, s, ns, "store-2", "2"); diff != "" {
			t.Fatalf("mirror after the full reconcile: %s", diff)
		}
		if drift := getStore(t, ns, "store-2").Status.Inventory.Drift; drift != int64(len(moved)) {
			t.Errorf("drift %d, want %d (the moved rows)", drift, len(moved))
		}
		connectSends(t, s, first)
	})

	t.Run("the operator killed mid-run loses nothing", func(t *testing.T) {
		done := make(chan struct{})
		go func() { // paced, so the kill lands in the middle of it
			defer close(done)
			for i := range 60 {
				ringUp(t, s, 1, stores, products, uint64(100+i))
				time.Sleep(10 * time.Millisecond)
			}
		}()
		time.Sleep(300 * time.Millisecond)
		op.kill()
		<-done
		ringUp(t, s, 40, stores, products, 4) // while it is down: these sends fail
		if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := sendStates(s); st[smaregisim.SendFailed] == 0 {
			t.Logf("no send failed while the operator was down: %v", st)
		}
		op = startOperator(t, cfg) // same inventory file
		converged("after the restart", 60*time.Second)
	})

	// Secrets never leak into status or the operator's log.
	key := readReceiverKey(t, first)
	for _, name := range []string{"store-1", "store-2"} {
		st := getStore(t, ns, name)
		raw, err := json.Marshal(st.Status)
		if err != nil {
			t.Fatal(err)
		}
		if dump := string(raw); strings.Contains(dump, key) || strings.Contains(dump, s.token) {
			t.Errorf("%s status carries a secret", name)
		}
	}
	if log := readFile(op.logPath); strings.Contains(log, key) || strings.Contains(log, s.token) ||
		strings.Contains(log, url.QueryEscape(key)) {
		t.Error("the operator log carries a secret")
	}
}

func readReceiverKey(t *testing.T, st *smaregiv1alpha1.SmaregiStore) string {
	t.Helper()
	ref := st.Status.Receiver.KeySecretRef
	secret := getSecret(t, st.Namespace, ref.Name)
	key := string(secret.Data[ref.Key])
	if key == "" {
		t.Fatal("empty receiver key")
	}
	return key
}
