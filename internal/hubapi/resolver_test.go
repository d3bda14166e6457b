package hubapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// simShop runs the Smaregi simulator on a loopback port and stores its
// token in the fixture namespace's credentials Secret.
func simShop(t *testing.T) (*smaregisim.Server, string) {
	t.Helper()
	sim, err := smaregisim.New(smaregisim.Options{Contract: "sb12345", Token: "sim-access-token", Products: 20, Seed: 7})
	must(t, err)
	hs := httptest.NewServer(sim.Handler())
	t.Cleanup(func() { hs.Close(); _ = sim.Close() })
	return sim, hs.URL + "/access/"
}

func putCredentials(t *testing.T, f *fixture, token string) {
	t.Helper()
	must(t, k8s.Create(context.Background(), &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: "smaregi-credentials", Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		Data:       map[string][]byte{"accessToken": []byte(token)},
	}))
}

func TestProductCodesResolveThroughSmaregi(t *testing.T) {
	sim, endpoint := simShop(t)
	clk := testingclock.NewFakeClock(t0)
	f := newFixture(t, fixtureOpts{endpoint: endpoint, apiReader: true, clock: clk})
	putCredentials(t, f, "sim-access-token")
	products := sim.Products()
	p1, p2 := products[0], products[1]

	body := AdjustmentRequest{ID: "order-7", Reason: "EC order", Lines: []RequestLine{
		{ProductCode: p1.ProductCode, Quantity: -1},
		{ProductID: p2.ProductID, Quantity: -2},
	}}
	a := decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster, body), http.StatusAccepted)
	if len(a.Lines) != 2 || a.Lines[0] != (ResponseLine{p1.ProductID, -1}) || a.Lines[1] != (ResponseLine{p2.ProductID, -2}) {
		t.Fatalf("resolved lines: %+v, want %s and %s", a.Lines, p1.ProductID, p2.ProductID)
	}

	// With product_ref switched off, a replay is still answered from the
	// store and a cached code still resolves; an uncached one cannot.
	must(t, sim.SetAccount(smaregisim.Account{DisabledFunctions: []string{"product_ref"}}))
	decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster, body), http.StatusOK)
	cached := AdjustmentRequest{ID: "order-8", Lines: []RequestLine{{ProductCode: p1.ProductCode, Quantity: -1}}}
	decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster, cached), http.StatusAccepted)

	uncached := AdjustmentRequest{ID: "order-9", Lines: []RequestLine{{ProductCode: products[2].ProductCode, Quantity: -1}}}
	r := f.do("POST", f.path("/adjustments"), f.adjuster, uncached)
	if r.code != http.StatusUnprocessableEntity {
		t.Fatalf("productCode with product_ref disabled: want 422, got %d %s", r.code, r.body)
	}
	if e := r.errorBody(t); !strings.Contains(e.Message, "productId") || !strings.Contains(e.Message, "商品情報参照") {
		t.Fatalf("the 422 must tell the caller to use productId or switch on 商品情報参照: %q", e.Message)
	}
	if _, found, _ := f.mem.GetAdjustment(context.Background(), f.key, "order-9"); found {
		t.Fatal("an unresolvable adjustment was stored")
	}

	// After the TTL the cached code is asked again, and refused.
	clk.Step(DefaultCodeTTL + time.Second)
	again := AdjustmentRequest{ID: "order-10", Lines: []RequestLine{{ProductCode: p1.ProductCode, Quantity: -1}}}
	if r := f.do("POST", f.path("/adjustments"), f.adjuster, again); r.code != http.StatusUnprocessableEntity {
		t.Fatalf("expired cache entry: want 422, got %d %s", r.code, r.body)
	}

	// Switched back on: unknown codes and codes naming a product twice are
	// refused line by line.
	must(t, sim.SetAccount(smaregisim.Account{}))
	bad := AdjustmentRequest{ID: "order-11", Lines: []RequestLine{
		{ProductCode: "0000000000000", Quantity: -1},
		{ProductCode: p2.ProductCode, Quantity: -1},
		{ProductID: p2.ProductID, Quantity: 1},
	}}
	r = f.do("POST", f.path("/adjustments"), f.adjuster, bad)
	if r.code != http.StatusUnprocessableEntity {
		t.Fatalf("unknown code and duplicate: want 422, got %d %s", r.code, r.body)
	}
	e := r.errorBody(t)
	fields := map[string]bool{}
	for _, d := range e.Details {
		fields[d.Field] = true
	}
	if !fields["lines[0].productCode"] || !fields["lines[2]"] {
		t.Fatalf("want details for lines[0].productCode and lines[2]: %s", r.body)
	}
	if n := f.mem.count(f.key); n != 2 {
		t.Fatalf("want 2 stored adjustments (order-7, order-8), have %d", n)
	}
}

func TestProductCodeWithBrokenCredentials(t *testing.T) {
	_, endpoint := simShop(t)
	f := newFixture(t, fixtureOpts{endpoint: endpoint, apiReader: true})
	body := AdjustmentRequest{ID: "order-1", Lines: []RequestLine{{ProductCode: "4900000000000", Quantity: -1}}}
	// No Secret yet.
	r := f.do("POST", f.path("/adjustments"), f.adjuster, body)
	if r.code != http.StatusBadGateway || !strings.Contains(r.errorBody(t).Message, "smaregi-credentials") {
		t.Fatalf("missing Secret: want 502 naming the Secret, got %d %s", r.code, r.body)
	}
	putCredentials(t, f, "wrong-token")
	r = f.do("POST", f.path("/adjustments"), f.adjuster, body)
	if r.code != http.StatusBadGateway {
		t.Fatalf("rejected token: want 502, got %d %s", r.code, r.body)
	}
	if strings.Contains(string(r.body), "wrong-token") {
		t.Fatal("the Smaregi access token leaked into an answer")
	}
	if n := f.mem.count(f.key); n != 0 {
		t.Fatalf("stored %d adjustments", n)
	}
}
