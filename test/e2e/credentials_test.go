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
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// TestTokenWithTrailingNewline is the Secret `kubectl create secret
// generic --from-file=accessToken=token.txt` makes: the token followed by a
// newline. Every path that talks to Smaregi reads it the same way
// (internal/storeaccess), so the credential check, the pulls, a push and a
// productCode lookup through the real hub API all work with it. Before
// that, the store turned Ready while every productCode adjustment answered
// 502 "settings are invalid".
func TestTokenWithTrailingNewline(t *testing.T) {
	const products = 20
	s := newShop(t, "e2enewline", []string{"1"}, products)
	ns := newNamespace(t, "newline")
	op := startOperator(t, newOperatorConfig(t))
	ctx := context.Background()

	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-file", Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		Data: map[string][]byte{"accessToken": []byte(s.token + "\n")}}
	if err := kube.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	st := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shop"}}
	st.Spec.ContractID, st.Spec.StoreID, st.Spec.Endpoint = s.contract, "1", s.url
	st.Spec.CredentialsRef.Name = secret.Name
	if err := kube.Create(ctx, st); err != nil {
		t.Fatal(err)
	}

	// The credential check and the initial import (a pull).
	waitReady(t, ns, "shop")
	viewer := bearerToken(t, ns, "dashboard", hubapi.StockViewerRole)
	waitFor(t, 30*time.Second, "the initial import", func() bool {
		l, code := hubStock(t, op, viewer, ns, "shop")
		return code == http.StatusOK && l.SKUs == products
	})

	// A productCode lookup and a push.
	p := s.sim.Products()[3]
	before, err := s.sim.StockOf("1", p.ProductID)
	if err != nil {
		t.Fatal(err)
	}
	adjuster := bearerToken(t, ns, "online-shop", hubapi.AdjusterRole)
	body, _ := json.Marshal(map[string]any{"id": "order-newline", "reason": "online order",
		"lines": []map[string]any{{"productCode": p.ProductCode, "quantity": -2}}})
	req, _ := http.NewRequest(http.MethodPost,
		fmt.Sprintf("http://%s/api/v1/namespaces/%s/smaregistores/shop/adjustments", op.apiAddr, ns), bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+adjuster)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var answer bytes.Buffer
	_, _ = answer.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST with productCode: %d %s", resp.StatusCode, answer.String())
	}
	waitFor(t, 30*time.Second, "the adjustment to be applied", func() bool {
		_, a := getAdjustment(op, adjuster, ns, "shop", "order-newline")
		return a.State == "applied"
	})
	if after, err := s.sim.StockOf("1", p.ProductID); err != nil || after != before-2 {
		t.Fatalf("Smaregi stock of %s: %d → %d (%v), want −2", p.ProductID, before, after, err)
	}

	// A later pull brings a sale into the mirror.
	if _, err := s.sim.Sale("1", []smaregisim.SaleLine{{ProductID: p.ProductID, Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	kubectlAnnotate(t, ns, "shop", smaregiv1alpha1.ResyncRequestAnnotation, time.Now().Format(time.RFC3339Nano))
	waitFor(t, 30*time.Second, "the sale to reach the mirror", func() bool {
		l, code := hubStock(t, op, viewer, ns, "shop")
		if code != http.StatusOK {
			return false
		}
		for _, it := range l.Items {
			if it.ProductID == p.ProductID {
				return it.StockAmount == before-3
			}
		}
		return false
	})
}

// kubectlAnnotate sets an annotation on a SmaregiStore, as kubectl annotate
// --overwrite does.
func kubectlAnnotate(t *testing.T, ns, name, key, value string) {
	t.Helper()
	st := getStore(t, ns, name)
	if st.Annotations == nil {
		st.Annotations = map[string]string{}
	}
	st.Annotations[key] = value
	if err := kube.Update(context.Background(), st); err != nil {
		t.Fatal(err)
	}
}

// TestNothingLeavesForForeignEndpointsOrUnlabelledSecrets: a namespace
// editor cannot make the operator send a Secret's value to a server of
// their choosing. An endpoint outside --allowed-endpoints (the harness
// allows http://127.0.0.1; localhost is another host) and a Secret without
// the credentials label each stall the store with a precise reason, and
// not one request reaches the server.
func TestNothingLeavesForForeignEndpointsOrUnlabelledSecrets(t *testing.T) {
	ctx := context.Background()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		http.Error(w, "should never be called", http.StatusTeapot)
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	ns := newNamespace(t, "allowlist")
	startOperator(t, newOperatorConfig(t))
	labelled := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "smaregi",
		Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		StringData: map[string]string{"accessToken": "tok"}}
	dbCreds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db-creds"},
		StringData: map[string]string{"password": "hunter2"}}
	for _, s := range []*corev1.Secret{labelled, dbCreds} {
		if err := kube.Create(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	stores := map[string]struct {
		endpoint, secret, key, reason string
	}{
		"foreign":    {"http://localhost:" + port + "/access/", "smaregi", "accessToken", smaregiv1alpha1.ReasonEndpointNotAllowed},
		"unlabelled": {"http://127.0.0.1:" + port + "/access/", "db-creds", "password", smaregiv1alpha1.ReasonSecretNotLabelled},
	}
	for name, c := range stores {
		st := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		st.Spec.ContractID, st.Spec.StoreID, st.Spec.Endpoint = "sk1", "1", c.endpoint
		st.Spec.CredentialsRef.Name, st.Spec.CredentialsRef.Key = c.secret, c.key
		if err := kube.Create(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	for name, c := range stores {
		waitFor(t, 30*time.Second, name+" to stall with "+c.reason, func() bool {
			st := getStore(t, ns, name)
			cv := apimeta.FindStatusCondition(st.Status.Conditions, smaregiv1alpha1.CredentialsValidCondition)
			return cv != nil && cv.Reason == c.reason &&
				apimeta.IsStatusConditionTrue(st.Status.Conditions, smaregiv1alpha1.StalledCondition)
		})
	}
	// The engine's pulls were refused as well, on their own schedule.
	for name, c := range stores {
		waitFor(t, 30*time.Second, name+" InventorySynced "+c.reason, func() bool {
			cv := apimeta.FindStatusCondition(getStore(t, ns, name).Status.Conditions, smaregiv1alpha1.InventorySyncedCondition)
			return cv != nil && cv.Reason == c.reason
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("%d requests reached the server", n)
	}
	for name := range stores {
		for _, cond := range getStore(t, ns, name).Status.Conditions {
			if strings.Contains(cond.Message, "hunter2") {
				t.Errorf("%s: condition %s carries the Secret's value", name, cond.Type)
			}
		}
	}
}
