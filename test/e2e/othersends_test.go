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
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// TestOtherSendKindsReachTheMirror: a layaway and a transfer made in the
// simulator, announced only by sends of other kinds (no stock_send), reach
// the mirror of the stores they name while the poll interval is an hour, so
// that only the sends can have triggered the pulls; the receiver counts them
// as kind "other" that pulled stores.
func TestOtherSendKindsReachTheMirror(t *testing.T) {
	stores := []string{"1", "2"}
	s := newShop(t, "e2eothersends", stores, 20)
	ns := newNamespace(t, "othersends")
	op := startOperator(t, newOperatorConfig(t))
	declareStores(t, ns, s, time.Hour, stores...)
	first := waitReady(t, ns, "store-1")
	waitReady(t, ns, "store-2")

	ref := first.Status.Receiver.KeySecretRef
	secret := &corev1.Secret{}
	if err := kube.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: ref.Name}, secret); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.SetSendConfig(smaregisim.SendConfig{URL: first.Status.Receiver.URL,
		Params:    map[string]string{first.Status.Receiver.ParameterName: string(secret.Data[ref.Key])},
		Functions: []string{"layaway_send", "stock_move_send"}}); err != nil {
		t.Fatal(err)
	}
	token := bearerToken(t, ns, "reader", hubapi.StockViewerRole)
	converged := func(what string) {
		t.Helper()
		for _, id := range stores {
			name := "store-" + id
			var diff string
			waitFor(t, 60*time.Second, what+": mirror of "+name+" equal to Smaregi", func() bool {
				diff = mirrorDiff(t, op, token, s, ns, name, id)
				return diff == ""
			})
		}
	}
	converged("initial import")
	const series = `smaregi_receiver_sends_total{kind="other",pull="stores"}`
	before, _ := metric(t, op, series)

	movements := []smaregisim.StockMovement{
		// A layaway in store 1 (the simulator moves stock; the send names the store only).
		{StoreID: "1", ProductID: "8000001", Amount: -3, StockDivision: "05", SendAs: "layaway_send"},
		// A transfer 1 → 2: 出庫 in store 1, 入庫 in store 2.
		{StoreID: "1", ProductID: "8000002", Amount: -2, StockDivision: "05", FromStoreID: "1", ToStoreID: "2", SendAs: "stock_move_send"},
		{StoreID: "2", ProductID: "8000002", Amount: 2, StockDivision: "05", FromStoreID: "1", ToStoreID: "2", SendAs: "stock_move_send"},
	}
	for _, m := range movements {
		if _, err := s.sim.StockMovement(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := sendStates(s); st[smaregisim.SendSent] != len(movements) {
		t.Fatalf("send states %v, want %d sent", st, len(movements))
	}
	converged("after a layaway and a transfer announced by sends of other kinds")
	after, ok := metric(t, op, series)
	if !ok || after-before != float64(len(movements)) {
		t.Errorf("%s went from %v to %v (present %v), want +%d", series, before, after, ok, len(movements))
	}
}
