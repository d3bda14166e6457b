package smaregisim

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// setStock gives store 1 distinct amounts so conditions have something to
// tell apart: product 8000001+i gets i.
func setStock(t *testing.T, s *Server, clk *fakeClock) {
	t.Helper()
	for i := range 20 {
		clk.Advance(time.Second)
		if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: fmt.Sprint(FirstProductID + i),
			Amount: int64(i), Absolute: true, StockDivision: "08"}); err != nil {
			t.Fatal(err)
		}
	}
}

func ids(rows []map[string]string) string {
	var b []string
	for _, r := range rows {
		b = append(b, strings.TrimPrefix(r["productId"], "80000"))
	}
	return strings.Join(b, ",")
}

func TestConditionOperators(t *testing.T) {
	s, hs, clk := startSim(t, nil)
	setStock(t, s, clk)
	cases := map[string]string{
		`"stockAmount":"3"`:          "04",
		`"stockAmount <":"3"`:        "01,02,03",
		`"stockAmount <=":"2"`:       "01,02,03",
		`"stockAmount >":"17"`:       "19,20",
		`"stockAmount >=":18`:        "19,20",
		`"productId like":"800001%"`: "10,11,12,13,14,15,16,17,18,19",
		`"productId like":"80000_1"`: "01,11",
	}
	for c, want := range cases {
		a := call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1",`+c+`}]}`)
		if _, rows := refRows(t, a); ids(rows) != want {
			t.Errorf("%s: got %s, want %s", c, ids(rows), want)
		}
	}
}

func TestUpdDateTimeConditionAndOrder(t *testing.T) {
	s, hs, clk := startSim(t, nil)
	setStock(t, s, clk) // product i changed at 09:00:(i+1) Tokyo time
	a := call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1","updDateTime >=":"2026-11-26 09:00:18"}],"order":["updDateTime asc"]}`)
	total, rows := refRows(t, a)
	if total != "3" || ids(rows) != "18,19,20" || rows[0]["updDateTime"] != "2026-11-26 09:00:18" {
		t.Fatalf("got total %s rows %v", total, rows)
	}
	// A product changed again moves to the end of updDateTime order.
	clk.Advance(time.Second)
	if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000018", Amount: 1, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	_, rows = refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1","updDateTime >=":"2026-11-26 09:00:18"}],"order":["updDateTime asc"]}`))
	if ids(rows) != "19,20,18" {
		t.Errorf("after re-change: %s, want 19,20,18", ids(rows))
	}
	_, rows = refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1","updDateTime >":"2026-11-26 09:00:19"}],"order":["updDateTime desc"]}`))
	if ids(rows) != "18,20" {
		t.Errorf("desc: %s, want 18,20", ids(rows))
	}
}

func TestLimitDefaultAndPaging(t *testing.T) {
	_, hs, _ := startSim(t, func(o *Options) { o.Products = 250 })
	total, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1"}]}`))
	if total != "250" || len(rows) != DefaultLimit {
		t.Fatalf("default page: total %s, %d rows", total, len(rows))
	}
	total, rows = refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1"}],"limit":"100","page":"3"}`))
	if total != "250" || len(rows) != 50 || rows[0]["productId"] != "8000201" {
		t.Fatalf("page 3: total %s, %d rows, first %v", total, len(rows), rows[0])
	}
	_, rows = refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1"}],"page":4}`))
	if len(rows) != 0 {
		t.Errorf("page past the end has %d rows", len(rows))
	}
}

func TestLimitOverMaxClampOption(t *testing.T) {
	_, hs, _ := startSim(t, func(o *Options) {
		o.Products = 600
		o.Behaviour.LimitOverMax = LimitOverMaxClamp
	})
	total, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock","limit":5000}`))
	if total != "1200" || len(rows) != MaxLimit {
		t.Fatalf("clamp: total %s, %d rows", total, len(rows))
	}
}

func TestConditionObjectsOrByDefaultAndOption(t *testing.T) {
	params := `{"table_name":"Stock","conditions":[{"storeId":"1","productId":"8000001"},{"storeId":"2","productId":"8000002"}]}`
	_, hs, _ := startSim(t, nil)
	if total, _ := refRows(t, call(t, hs, "stock_ref", params)); total != "2" {
		t.Errorf("or: total %s, want 2", total)
	}
	_, hs, _ = startSim(t, func(o *Options) { o.Behaviour.ConditionObjects = ConditionsAnd })
	if total, _ := refRows(t, call(t, hs, "stock_ref", params)); total != "0" {
		t.Errorf("and: total %s, want 0", total)
	}
}

func TestOrderByStockAmountDesc(t *testing.T) {
	s, hs, clk := startSim(t, nil)
	setStock(t, s, clk)
	_, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1"}],"order":["stockAmount desc"],"limit":3}`))
	if ids(rows) != "20,19,18" {
		t.Errorf("got %s", ids(rows))
	}
}

func TestTimesAreTokyoWithoutZone(t *testing.T) {
	s, _, _ := startSim(t, nil)
	h, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: 1, StockDivision: "05"})
	if err != nil {
		t.Fatal(err)
	}
	if h.UpdDateTime != "2026-11-26 09:00:00" { // clockStart is 00:00 UTC
		t.Errorf("updDateTime %q", h.UpdDateTime)
	}
}

func TestNoRowUntilFirstChange(t *testing.T) {
	s, hs, _ := startSim(t, func(o *Options) { o.InitialStock = 0 })
	if total, _ := refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock"}`)); total != "0" {
		t.Fatalf("rows exist before any change: %s", total)
	}
	if _, err := s.Sale("2", []SaleLine{{ProductID: "8000005", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	total, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"Stock"}`))
	if total != "1" || rows[0]["stockAmount"] != "-1" || rows[0]["storeId"] != "2" {
		t.Errorf("after a sale: %s %v", total, rows)
	}
}

func TestStockHistoryRecordsAPIWrites(t *testing.T) {
	_, hs, clk := startSim(t, nil)
	clk.Advance(90 * time.Second)
	a := call(t, hs, "stock_upd", `{"proc_info":{"proc_division":"U","proc_detail_division":"2"},"data":[{"table_name":"Stock","rows":[{"storeId":"1","productId":"8000003","stockAmount":"-4","stockDivision":"15","memo":"order A-1"}]}]}`)
	if a.status != http.StatusOK {
		t.Fatalf("%d %s", a.status, a.body)
	}
	total, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"StockHistory","conditions":[{"storeId":"1","productId":"8000003"}]}`))
	want := map[string]string{"id": "1", "updDateTime": "2026-11-26 09:01:30", "targetDateTime": "2026-11-26 09:01:30",
		"productId": "8000003", "storeId": "1", "amount": "-4", "stockAmount": "6", "stockDivision": "15",
		"fromStoreId": "", "toStoreId": "", "memo": "order A-1"}
	if total != "1" || fmt.Sprint(rows[0]) != fmt.Sprint(want) {
		t.Errorf("history: %s %v", total, rows)
	}
}

func TestMemoBehaviours(t *testing.T) {
	const withMemo = `{"proc_info":{"proc_division":"U","proc_detail_division":"2"},"data":[{"table_name":"Stock","rows":[{"storeId":"1","productId":"8000003","stockAmount":"-4","stockDivision":"15","memo":"order A-1"}]}]}`
	const history = `{"table_name":"StockHistory","conditions":[{"storeId":"1","productId":"8000003"}]}`
	t.Run("ignored", func(t *testing.T) {
		s, hs, _ := startSim(t, func(o *Options) { o.Behaviour.Memo = MemoIgnored })
		if a := call(t, hs, "stock_upd", withMemo); a.status != http.StatusOK {
			t.Fatalf("%d %s", a.status, a.body)
		}
		_, rows := refRows(t, call(t, hs, "stock_ref", history))
		if len(rows) != 1 || rows[0]["amount"] != "-4" || rows[0]["memo"] != "" {
			t.Errorf("history %v, want the change without its memo", rows)
		}
		if n, _ := s.StockOf("1", "8000003"); n != 6 {
			t.Errorf("stock %d, want 6", n)
		}
	})
	t.Run("rejected", func(t *testing.T) {
		s, hs, _ := startSim(t, func(o *Options) { o.Behaviour.Memo = MemoRejected })
		a := call(t, hs, "stock_upd", withMemo)
		if a.status != http.StatusBadRequest || a.errorCode(t) != "41" || !strings.Contains(string(a.body), "unknown field memo") {
			t.Fatalf("memo row: %d %s, want error 41", a.status, a.body)
		}
		if n, _ := s.StockOf("1", "8000003"); n != 10 {
			t.Errorf("stock %d after a rejected call, want 10", n)
		}
		if a := call(t, hs, "stock_upd", strings.Replace(withMemo, `,"memo":"order A-1"`, "", 1)); a.status != http.StatusOK {
			t.Fatalf("row without memo: %d %s", a.status, a.body)
		}
		_, rows := refRows(t, call(t, hs, "stock_ref", history))
		if _, ok := rows[0]["memo"]; len(rows) != 1 || ok {
			t.Errorf("history %v, want one row without a memo column", rows)
		}
		if a := call(t, hs, "stock_ref", `{"table_name":"StockHistory","fields":["id","memo"]}`); a.errorCode(t) != "41" {
			t.Errorf("memo column asked for: %d %s, want error 41", a.status, a.body)
		}
	})
	if _, err := New(Options{Contract: "c", Token: "t", Behaviour: Behaviour{Memo: "sometimes"}}); err == nil {
		t.Error("an unknown memo behaviour was accepted")
	}
}

func TestProductRefByCode(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	p := s.Products()[6]
	if len(p.ProductCode) != 13 || janCheckDigit(p.ProductCode[:12]) != int(p.ProductCode[12]-'0') {
		t.Fatalf("product code %q is not a valid JAN-13", p.ProductCode)
	}
	_, rows := refRows(t, call(t, hs, "product_ref", `{"table_name":"Product","fields":["productId","productCode","productName"],"conditions":[{"productCode":"`+p.ProductCode+`"}]}`))
	if len(rows) != 1 || rows[0]["productId"] != "8000007" || rows[0]["productName"] != "テスト商品7" {
		t.Errorf("got %v", rows)
	}
}

func TestProductCodesUniqueAndDeterministic(t *testing.T) {
	a, _, _ := startSim(t, func(o *Options) { o.Products = 5000 })
	b, _, _ := startSim(t, func(o *Options) { o.Products = 5000 })
	seen := map[string]bool{}
	pa, pb := a.Products(), b.Products()
	for i := range pa {
		if seen[pa[i].ProductCode] {
			t.Fatalf("duplicate code %s", pa[i].ProductCode)
		}
		seen[pa[i].ProductCode] = true
		if pa[i] != pb[i] {
			t.Fatalf("same seed, different product %d: %v %v", i, pa[i], pb[i])
		}
	}
}

func TestUnicodeEscapedByDefaultRawOption(t *testing.T) {
	params := `{"table_name":"Product","fields":["productName"],"limit":1}`
	_, hs, _ := startSim(t, nil)
	if a := call(t, hs, "product_ref", params); !strings.Contains(string(a.body), `\u30c6\u30b9\u30c8`) {
		t.Errorf("not escaped: %s", a.body)
	}
	_, hs, _ = startSim(t, func(o *Options) { o.Behaviour.RawUnicode = true })
	if a := call(t, hs, "product_ref", params); !strings.Contains(string(a.body), `テスト商品1`) {
		t.Errorf("not raw: %s", a.body)
	}
}

func TestErrorFormatOptions(t *testing.T) {
	_, hs, _ := startSim(t, nil)
	a := post(t, hs, req{contract: testContract, token: "bad", proc: "stock_ref", params: `{}`})
	m := a.json(t)
	if m["error_code"] != float64(13) || m["error"] == "" || m["error_description"] == nil {
		t.Errorf("default error body %s", a.body)
	}
	if strings.Contains(string(a.body), "bad") || strings.Contains(string(a.body), testToken) {
		t.Errorf("error leaks a token: %s", a.body)
	}
	_, hs, _ = startSim(t, func(o *Options) {
		o.Behaviour.ErrorCodeAsString = true
		o.Behaviour.ErrorStatus = http.StatusUnauthorized
	})
	a = post(t, hs, req{contract: testContract, token: "bad", proc: "stock_ref", params: `{}`})
	if a.status != http.StatusUnauthorized || a.json(t)["error_code"] != "13" {
		t.Errorf("options: %d %s", a.status, a.body)
	}
}

func TestMaxUpdateRows(t *testing.T) {
	_, hs, _ := startSim(t, nil)
	row := `{"storeId":"1","productId":"8000001","stockAmount":"1","stockDivision":"15"}`
	rows := strings.TrimSuffix(strings.Repeat(row+",", 501), ",")
	a := call(t, hs, "stock_upd", `{"proc_info":{"proc_division":"U","proc_detail_division":"2"},"data":[{"table_name":"Stock","rows":[`+rows+`]}]}`)
	if a.status != http.StatusBadRequest || a.errorCode(t) != "41" {
		t.Errorf("501 rows: %d %s", a.status, a.body)
	}
}

// TestIndexedPagingMatchesScan pages the operator's listing order
// (updDateTime, productId) through the index, whose pages are slices of a
// cached suffix, and through the row-by-row scan (forced by a condition the
// index does not answer, true of every row): both must give the same total
// and the same rows on every page, before and after rows change.
func TestIndexedPagingMatchesScan(t *testing.T) {
	s, hs, clk := startSim(t, func(o *Options) { o.Products = 250 })
	listing := func(extra string, page int) (string, string) {
		a := call(t, hs, "stock_ref", fmt.Sprintf(`{"table_name":"Stock","conditions":[{"storeId":"1","updDateTime >=":"2026-11-26 09:00:05"%s}],"order":["updDateTime asc","productId asc"],"limit":40,"page":%d}`, extra, page))
		total, rows := refRows(t, a)
		return total, ids(rows)
	}
	compare := func(when string) {
		t.Helper()
		for page := 1; page <= 8; page++ {
			gotTotal, got := listing("", page)
			wantTotal, want := listing(`,"stockAmount >=":"-1000000"`, page)
			if gotTotal != wantTotal || got != want {
				t.Fatalf("%s, page %d: index gave total %s rows %s; scan gave total %s rows %s", when, page, gotTotal, got, wantTotal, want)
			}
		}
	}
	clk.Advance(10 * time.Second) // the initial rows lie before the bound
	for i := range 60 {
		if i%3 == 0 {
			clk.Advance(time.Second) // several rows share each second
		}
		if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: fmt.Sprint(FirstProductID + (i*37)%250),
			Amount: 1, StockDivision: "05"}); err != nil {
			t.Fatal(err)
		}
	}
	compare("after 60 changes")
	if total, _ := listing("", 1); total == "0" {
		t.Fatal("the listing is empty: the comparison shows nothing")
	}
	clk.Advance(time.Second)
	if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: fmt.Sprint(FirstProductID), Amount: 1, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	compare("after one more change")
}

// TestRepeatedIndexConditionsAreAllApplied: two lower bounds on updDateTime
// in AND-combined objects both hold (the index answers one bound only, so
// such a query is scanned).
func TestRepeatedIndexConditionsAreAllApplied(t *testing.T) {
	s, hs, clk := startSim(t, func(o *Options) { o.Behaviour.ConditionObjects = ConditionsAnd })
	setStock(t, s, clk) // product i changed at 09:00:(i+1) Tokyo time
	a := call(t, hs, "stock_ref", `{"table_name":"Stock","conditions":[{"storeId":"1","updDateTime >=":"2026-11-26 09:00:10"},{"updDateTime >=":"2026-11-26 09:00:18"}],"order":["updDateTime asc","productId asc"]}`)
	if total, rows := refRows(t, a); total != "3" || ids(rows) != "18,19,20" {
		t.Fatalf("got total %s rows %s, want 3: 18,19,20", total, ids(rows))
	}
}
