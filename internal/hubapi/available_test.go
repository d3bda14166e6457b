package hubapi

import (
	"context"
	"math"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// TestAvailableSaturates: values at the edges of int64 must never wrap
// into a huge availability (issue 9 §8).
func TestAvailableSaturates(t *testing.T) {
	const maxI, minI = math.MaxInt64, math.MinInt64
	cases := []struct {
		name                      string
		stock, layaway, safety, p int64
		want                      int64
	}{
		{"plain", 10, 2, 3, -1, 4},
		{"safety near MaxInt64 with negative stock", -5, 0, maxI, 0, 0},
		{"layaway MaxInt64 with negative stock", -1, maxI, 0, 0, 0},
		{"stock MinInt64", minI, 1, 1, -1, 0},
		{"pending MinInt64", 10, 0, 0, minI, 0},
		{"layaway MinInt64 gives stock, capped", 5, minI, 0, 0, maxI},
		{"stock MaxInt64 less nothing", maxI, 0, 0, 0, maxI},
		{"stock MaxInt64 with negative layaway", maxI, -10, 0, 0, maxI},
	}
	for _, tc := range cases {
		got := Available(inventory.Row{StockAmount: tc.stock, LayawayStockAmount: tc.layaway}, tc.safety, tc.p)
		if got != tc.want {
			t.Errorf("%s: Available = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestSafetyStockHasAMaximum: the API server refuses a safetyStock above
// 1e9 (the CRD's maximum), so no store can carry one near overflow.
func TestSafetyStockHasAMaximum(t *testing.T) {
	ctx := context.Background()
	st := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "huge-safety"},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{
			ContractID: "sb12345", StoreID: "1",
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: "smaregi-credentials"},
			SafetyStock:    math.MaxInt64 - 1,
		},
	}
	err := k8s.Create(ctx, st)
	if !apierrors.IsInvalid(err) {
		t.Fatalf("create with safetyStock near MaxInt64: got %v, want Invalid", err)
	}
	st.Spec.SafetyStock = 1_000_000_000
	must(t, k8s.Create(ctx, st))
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), st) })
}
