package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// declarePlatformStore creates the app's credentials Secret (clientID and
// clientSecret, as the setup guide says) and a SmaregiStore with api
// Platform whose API and identity bases are the simulator's.
func declarePlatformStore(t testing.TB, ns, name string, s *shop, storeID string, poll time.Duration) {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-app",
		Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		StringData: map[string]string{smaregiv1alpha1.PlatformClientIDKey: s.clientID,
			smaregiv1alpha1.PlatformClientSecretKey: s.clientSecret + "\n"}}
	if err := kube.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	st := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	st.Spec.API = smaregiv1alpha1.APIPlatform
	st.Spec.ContractID = s.contract
	st.Spec.StoreID = storeID
	st.Spec.Endpoint = s.base
	st.Spec.TokenEndpoint = s.base
	st.Spec.CredentialsRef.Name = secret.Name
	st.Spec.Sync.PollInterval = &metav1.Duration{Duration: poll}
	if err := kube.Create(ctx, st); err != nil {
		t.Fatal(err)
	}
}

// connectWebhooks does what the app's developer does in Smaregi's developer
// console: the webhook URL and the custom header carrying the key, both
// from the store's status.
func connectWebhooks(t testing.TB, s *shop, st *smaregiv1alpha1.SmaregiStore) {
	t.Helper()
	ref := st.Status.Receiver.WebhookKey
	if ref == nil || ref.Header == "" {
		t.Fatalf("status.receiver.webhookKey = %+v, want the key's Secret and header", ref)
	}
	secret := &corev1.Secret{}
	if err := kube.Get(context.Background(), types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, secret); err != nil {
		t.Fatal(err)
	}
	if err := s.sim.SetWebhookConfig(smaregisim.WebhookConfig{URL: st.Status.Receiver.URL,
		Headers: map[string]string{ref.Header: string(secret.Data[ref.Key])}}); err != nil {
		t.Fatal(err)
	}
}

// waitImported waits for the store to be Ready with skus rows imported.
func waitImported(t testing.TB, ns, name string, skus int64) *smaregiv1alpha1.SmaregiStore {
	t.Helper()
	var st *smaregiv1alpha1.SmaregiStore
	waitFor(t, 90*time.Second, name+" to be Ready with its stock imported", func() bool {
		st = getStore(t, ns, name)
		return apimeta.IsStatusConditionTrue(st.Status.Conditions, smaregiv1alpha1.ReadyCondition) &&
			st.Status.Inventory != nil && st.Status.Inventory.SKUs == skus
	})
	return st
}

// TestPlatformAndLegacyStoresSideBySide: one operator serves a shop on the
// legacy API and a shop on the Platform API. Both become Ready and import
// 1,000 products; 500 adjustments to each are applied exactly once while
// both Smaregi APIs fail, lose answers and commit late; the mirrors end
// equal to Smaregi and a full reconcile of the Platform store finds no
// drift.
func TestPlatformAndLegacyStoresSideBySide(t *testing.T) {
	const (
		products    = 1000
		adjustments = 500
		hot         = 60 // products the adjustments and sales touch
	)
	legacy := newShopAged(t, "e2elegacy", []string{"1"}, products, time.Hour)
	plat := newShopAged(t, "e2eplat", []string{"1"}, products, time.Hour)
	ns := newNamespace(t, "platform")
	cfg := newOperatorConfig(t)
	// As in TestAdjustmentsAppliedExactlyOnce: the simulator answers in
	// milliseconds, so a 2s request timeout and a 5s settle period are
	// ample, and the late commits (1s after the client gave up) fall
	// inside the settle period as the pusher requires.
	cfg.extraArgs = []string{"--smaregi-request-timeout", "2s", "--push-settle-period", "5s"}
	op := startOperator(t, cfg)
	// Polls an hour apart: a sale shows within the test's waits only
	// through the legacy send or the Platform webhook.
	declareStores(t, ns, legacy, time.Hour, "1")
	declarePlatformStore(t, ns, "plat-1", plat, "1", time.Hour)
	lst := waitImported(t, ns, "store-1", products)
	pst := waitImported(t, ns, "plat-1", products)
	if r := pst.Status.Receiver; r == nil || !strings.HasSuffix(r.URL, smaregiv1alpha1.PlatformWebhookPath) {
		t.Fatalf("Platform store's status.receiver = %+v, want the operator's Platform webhook URL", r)
	}
	connectSends(t, legacy, lst)
	connectWebhooks(t, plat, pst)
	if c := apimeta.FindStatusCondition(pst.Status.Conditions, smaregiv1alpha1.CredentialsValidCondition); c == nil ||
		c.Status != metav1.ConditionTrue {
		t.Fatalf("Platform store CredentialsValid = %+v", c)
	}
	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)
	viewer := bearerToken(t, ns, "dashboard", hubapi.StockViewerRole)
	for name, s := range map[string]*shop{"store-1": legacy, "plat-1": plat} {
		waitFor(t, 30*time.Second, "the mirror of "+name+" to equal Smaregi", func() bool {
			return mirrorDiff(t, op, viewer, s, ns, name, "1") == ""
		})
	}

	// Sales are followed through the send (legacy) and the webhook
	// (Platform): with polls an hour apart nothing else brings them in.
	for _, tg := range []struct {
		name string
		s    *shop
	}{{"store-1", legacy}, {"plat-1", plat}} {
		pid := strconv.Itoa(smaregisim.FirstProductID + products - 1)
		before, err := tg.s.sim.StockOf("1", pid)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := tg.s.sim.Sale("1", []smaregisim.SaleLine{{ProductID: pid, Quantity: 2}}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, tg.name+" to show the sale", func() bool {
			got, _ := hubStock(t, op, viewer, ns, tg.name)
			for _, it := range got.Items {
				if it.ProductID == pid {
					return it.StockAmount == before-2
				}
			}
			return false
		})
		t.Logf("%s: sale visible in the hub API %s after it was rung up", tg.name, time.Since(start).Round(time.Millisecond))
	}

	// A Platform store applies one product per all-or-none write: a
	// two-product adjustment is refused at the door, nothing stored.
	two := adjustmentRequest{ID: "two-products", Lines: []adjustmentLine{
		{ProductID: strconv.Itoa(smaregisim.FirstProductID), Quantity: -1},
		{ProductID: strconv.Itoa(smaregisim.FirstProductID + 1), Quantity: -1}}}
	if code, _, err := postAdjustment(op, adjuster, ns, "plat-1", two); err != nil || code != http.StatusUnprocessableEntity {
		t.Fatalf("two-product adjustment to the Platform store: %d %v, want 422", code, err)
	}
	if code, _ := getAdjustment(op, adjuster, ns, "plat-1", two.ID); code != http.StatusNotFound {
		t.Fatalf("the refused adjustment reads back with %d, want 404", code)
	}

	faults := smaregisim.Faults{ErrorRate: 0.1, LostResponseRate: 0.1, AppliedErrorRate: 0.05,
		LateCommitRate: 0.05, LateCommitDelay: smaregisim.Duration(time.Second), LatencyMs: 2}
	for _, s := range []*shop{legacy, plat} {
		if err := s.sim.SetFaults(faults); err != nil {
			t.Fatal(err)
		}
	}

	type target struct {
		name string
		s    *shop
	}
	targets := []target{{"store-1", legacy}, {"plat-1", plat}}
	var mu sync.Mutex
	expected := map[string]map[string]int64{"store-1": {}, "plat-1": {}}
	adjusted := map[string]map[string]int64{"store-1": {}, "plat-1": {}}
	var wg sync.WaitGroup
	for _, tg := range targets {
		work := make(chan int)
		for range 4 {
			wg.Go(func() {
				for i := range work {
					p := strconv.Itoa(smaregisim.FirstProductID + (i*7)%hot)
					q := int64(i%5 - 2)
					if q == 0 {
						q = 3
					}
					req := adjustmentRequest{ID: fmt.Sprintf("order-%04d", i), Reason: "online order",
						Lines: []adjustmentLine{{ProductID: p, Quantity: q}}}
					for {
						code, _, err := postAdjustment(op, adjuster, ns, tg.name, req)
						if err == nil && code == http.StatusAccepted {
							break
						}
						if err == nil && code != http.StatusServiceUnavailable {
							t.Errorf("%s POST %s: %d", tg.name, req.ID, code)
							return
						}
						time.Sleep(100 * time.Millisecond)
					}
					mu.Lock()
					expected[tg.name][p] += q
					adjusted[tg.name][p] += q
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			defer close(work)
			for i := range adjustments {
				work <- i
			}
		})
		// Sales in the shop while the adjustments run.
		wg.Go(func() {
			for i := range 40 {
				p := strconv.Itoa(smaregisim.FirstProductID + (i*13)%hot)
				if _, err := tg.s.sim.Sale("1", []smaregisim.SaleLine{{ProductID: p, Quantity: 1}}); err != nil {
					t.Errorf("sale: %v", err)
					return
				}
				mu.Lock()
				expected[tg.name][p]--
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()

	// Every adjustment applied, read through the hub API (status counts
	// are written periodically and may lag); a cursor per store keeps each
	// poll to the adjustments not yet seen applied.
	next := map[string]int{}
	var waiting string
	t.Cleanup(func() {
		if t.Failed() && waiting != "" {
			t.Logf("last adjustment not applied: %s", waiting)
		}
	})
	waitFor(t, 4*time.Minute, "every adjustment of both stores to be applied", func() bool {
		for _, tg := range targets {
			for next[tg.name] < adjustments {
				id := fmt.Sprintf("order-%04d", next[tg.name])
				code, st := getAdjustment(op, adjuster, ns, tg.name, id)
				if code == http.StatusOK && st.State == "failed" {
					t.Fatalf("%s adjustment %s failed: %+v", tg.name, id, st)
				}
				if code != http.StatusOK || st.State != "applied" {
					waiting = fmt.Sprintf("%s %s: %d %+v", tg.name, id, code, st)
					return false
				}
				next[tg.name]++
			}
		}
		waiting = ""
		return true
	})
	for _, s := range []*shop{legacy, plat} {
		if err := s.sim.SetFaults(smaregisim.Faults{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the late commits to land", func() bool {
		return legacy.sim.LateCommitsPending() == 0 && plat.sim.LateCommitsPending() == 0
	})
	for _, tg := range targets {
		for i := range adjustments {
			id := fmt.Sprintf("order-%04d", i)
			if code, st := getAdjustment(op, adjuster, ns, tg.name, id); code != http.StatusOK || st.State != "applied" {
				t.Fatalf("%s adjustment %s: %d %q, want applied", tg.name, id, code, st.State)
			}
		}
		assertAppliedOnce(t, tg.s, "1", hot, adjusted[tg.name])
		for p := range hot {
			pid := strconv.Itoa(smaregisim.FirstProductID + p)
			got, err := tg.s.sim.StockOf("1", pid)
			if err != nil {
				t.Fatal(err)
			}
			if want := 100 + expected[tg.name][pid]; got != want {
				t.Errorf("%s product %s: Smaregi has %d, want %d", tg.name, pid, got, want)
			}
		}
		waitFor(t, 60*time.Second, "the mirror of "+tg.name+" to show the adjustments", func() bool {
			return mirrorDiff(t, op, viewer, tg.s, ns, tg.name, "1") == ""
		})
	}

	// A full reconcile of the Platform store: the operator's own writes
	// came back (as pulls), never as drift.
	kubectlAnnotate(t, ns, "plat-1", smaregiv1alpha1.ResyncRequestAnnotation, "after-adjustments")
	waitFor(t, 60*time.Second, "the requested full reconcile of plat-1", func() bool {
		inv := getStore(t, ns, "plat-1").Status.Inventory
		return inv != nil && inv.LastHandledResyncRequest == "after-adjustments"
	})
	if inv := getStore(t, ns, "plat-1").Status.Inventory; inv.Drift != 0 {
		t.Errorf("full reconcile of the Platform store found drift %d, want 0", inv.Drift)
	}
	t.Logf("%d adjustments applied exactly once to a legacy and a Platform store under faults", adjustments)
}
