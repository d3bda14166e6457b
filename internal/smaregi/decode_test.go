package smaregi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

func TestFlexDecodesStringsAndNumbers(t *testing.T) {
	var v struct {
		A, B, C, D, E, F smaregi.Flex
	}
	in := `{"A":"12","B":12,"C":"-3","D":null,"E":"\u30c6\u30b9\u30c8","F":2.0}`
	if err := json.Unmarshal([]byte(in), &v); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		f    smaregi.Flex
		want int64
	}{{v.A, 12}, {v.B, 12}, {v.C, -3}, {v.D, 0}, {v.F, 2}} {
		if n, err := c.f.Int64(); err != nil || n != c.want {
			t.Fatalf("%q.Int64() = %d, %v; want %d", c.f, n, err, c.want)
		}
	}
	if v.E != "テスト" {
		t.Fatalf("escaped text = %q", v.E)
	}
	if _, err := smaregi.Flex("1.5").Int64(); err == nil {
		t.Fatal("1.5 accepted as an integer")
	}
	if err := json.Unmarshal([]byte(`{"A":{"x":1}}`), &v); err == nil {
		t.Fatal("an object accepted as a value")
	}
}

func TestParseAndFormatTime(t *testing.T) {
	tm, err := smaregi.ParseTime("2026-11-26 09:01:21")
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 11, 26, 0, 1, 21, 0, time.UTC); !tm.Equal(want) {
		t.Fatalf("ParseTime = %v, want %v", tm.UTC(), want)
	}
	// Midnight in Tokyo is the previous day in UTC.
	tm, _ = smaregi.ParseTime("2027-01-01 00:00:00")
	if got := tm.UTC().Format(time.RFC3339); got != "2026-12-31T15:00:00Z" {
		t.Fatalf("new year in Tokyo = %s UTC", got)
	}
	if got := smaregi.FormatTime(time.Date(2026, 6, 30, 23, 59, 59, 999e6, time.UTC)); got != "2026-07-01 08:59:59" {
		t.Fatalf("FormatTime = %s", got)
	}
	for _, bad := range []string{"", "2026-02-30 10:00:00", "2026-11-26T09:01:21", "2026-11-26 24:00:00", "2026-1-26 09:01:21"} {
		if _, err := smaregi.ParseTime(bad); err == nil {
			t.Fatalf("ParseTime(%q) accepted", bad)
		}
	}
}

// TestNumbersWhereStringsAreExpected uses a narrow fake: the protocol says
// every value is a string, but a client must not break if one is a number.
func TestNumbersWhereStringsAreExpected(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if r.PostForm.Get("proc_name") == "stock_upd" {
			_, _ = w.Write([]byte(`{"result":{"Stock":"2"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"total_count":2,"result":[` +
			`{"storeId":1,"productId":8000001,"stockAmount":-3,"layawayStockAmount":"1","updDateTime":"2026-11-26 09:01:21"},` +
			`{"storeId":"1","productId":"8000002","stockAmount":"7","layawayStockAmount":0,"updDateTime":"2026-11-26 09:01:22"}]}`))
	}))
	defer hs.Close()
	c := newClient(t, hs.URL+"/access/", nil)
	rows, _, err := collectStock(t, c, smaregi.StockQuery{StoreID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].ProductID != "8000001" || rows[0].StockAmount != -3 || rows[0].LayawayStockAmount != 1 ||
		rows[1].StockAmount != 7 || rows[0].StoreID != "1" {
		t.Fatalf("rows = %+v", rows)
	}
	res, err := c.UpdateStock(context.Background(), smaregi.Relative, []smaregi.StockUpdate{{StoreID: "1", ProductID: "8000001", Amount: 1}, {StoreID: "1", ProductID: "8000002", Amount: 1}})
	if err != nil || res.Rows != 2 {
		t.Fatalf("update result %+v, %v", res, err)
	}
}

// TestShortPageIsAnError uses a narrow fake whose pages are smaller than the
// limit asked for while total_count says more rows exist.
func TestShortPageIsAnError(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"total_count":"250","result":[{"storeId":"1","productId":"8000001","stockAmount":"1","layawayStockAmount":"0","updDateTime":"2026-11-26 09:01:21"}]}`))
	}))
	defer hs.Close()
	c := newClient(t, hs.URL+"/access/", nil)
	if _, _, err := collectStock(t, c, smaregi.StockQuery{StoreID: "1"}); err == nil {
		t.Fatal("a short page with more rows remaining was taken as the end")
	}
}
