package mirror

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

func TestCanonicalStoreID(t *testing.T) {
	for in, want := range map[string]string{
		"1": "1", "01": "1", "0001": "1", "10": "10", "010": "10",
		"0": "0", "00": "0", "": "",
		"a1": "a1", "01a": "01a", " 1": " 1",
	} {
		if got := smaregi.CanonicalStoreID(in); got != want {
			t.Errorf("CanonicalStoreID(%q) = %q, want %q", in, got, want)
		}
	}
}

// A Smaregi answering storeId "01" for store 1 names the store asked for:
// its rows go into the mirror; a row of another store still does not.
func TestReaderComparesStoreIDsAsNumbers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"total_count":"4","result":[` +
			`{"storeId":"01","productId":"8000001","stockAmount":"3","layawayStockAmount":"0","updDateTime":"2026-11-26 09:00:00"},` +
			`{"storeId":"001","productId":"8000002","stockAmount":"4","layawayStockAmount":"0","updDateTime":"2026-11-26 09:00:01"},` +
			`{"storeId":"1","productId":"8000003","stockAmount":"5","layawayStockAmount":"0","updDateTime":"2026-11-26 09:00:02"},` +
			`{"storeId":"2","productId":"8000004","stockAmount":"6","layawayStockAmount":"0","updDateTime":"2026-11-26 09:00:03"}]}`))
	}))
	defer srv.Close()
	r, err := DefaultReaders(storeaccess.NewClients(smaregi.NewLimiterRegistry(0, 1), nil), storeaccess.Tune{MaxReadAttempts: 1})(
		storeaccess.Target{Endpoint: srv.URL + "/access/", ContractID: testContract, Credentials: storeaccess.Credentials{AccessToken: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := r.ReadStock(context.Background(), StockQuery{StoreID: "1"}, func(page []inventory.Row) error {
		for _, row := range page {
			got = append(got, row.ProductID)
		}
		return nil
	}); err != nil {
		t.Fatalf("ReadStock: %v", err)
	}
	if want := []string{"8000001", "8000002", "8000003"}; !slices.Equal(got, want) {
		t.Fatalf("rows %v, want %v (store 1's rows, whatever the zeros, and not store 2's)", got, want)
	}
}
