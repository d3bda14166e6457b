package smaregisim

import (
	"encoding/json"
	"net/http"
	"testing"
)

func TestStockRefBothHeaderSpellings(t *testing.T) {
	_, hs, _ := startSim(t, nil)
	params := `{"table_name":"Stock","conditions":[{"storeId":"1","productId":"8000001"}]}`
	for _, hyphen := range []bool{false, true} {
		a := post(t, hs, req{hyphen: hyphen, proc: "stock_ref", params: params})
		total, rows := refRows(t, a)
		if total != "1" || len(rows) != 1 || rows[0]["stockAmount"] != "10" {
			t.Errorf("hyphen=%v: total %s rows %v", hyphen, total, rows)
		}
	}
}

func TestStockRefValuesAreStringsInFieldOrder(t *testing.T) {
	_, hs, _ := startSim(t, nil)
	a := call(t, hs, "stock_ref", `{"table_name":"Stock","fields":["productId","stockAmount"],"conditions":[{"storeId":"2"}],"limit":3}`)
	want := `{"total_count":"20","result":[{"productId":"8000001","stockAmount":"10"},{"productId":"8000002","stockAmount":"10"},{"productId":"8000003","stockAmount":"10"}]}`
	if string(a.body) != want {
		t.Fatalf("got  %s\nwant %s", a.body, want)
	}
	if a.ctype != "application/json; charset=UTF-8" {
		t.Errorf("content type %q", a.ctype)
	}
}

func TestStockUpdRelativeAndAbsolute(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	rel := `{"proc_info":{"proc_division":"U","proc_detail_division":"2"},"data":[{"table_name":"Stock","rows":[{"storeId":"1","productId":"8000001","stockAmount":"-3","stockDivision":"15"}]}]}`
	a := call(t, hs, "stock_upd", rel)
	if a.status != http.StatusOK || string(a.body) != `{"result":{"Stock":1}}` {
		t.Fatalf("relative: %d %s", a.status, a.body)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 7 {
		t.Fatalf("after relative -3: %d, want 7", n)
	}
	abs := `{"proc_info":{"proc_division":"U","proc_detail_division":"1"},"data":[{"table_name":"Stock","rows":[{"storeId":"1","productId":"8000001","stockAmount":"4","stockDivision":"15"},{"storeId":"2","productId":"8000002","stockAmount":25,"stockDivision":"15"}]}]}`
	a = call(t, hs, "stock_upd", abs)
	var res struct {
		Result map[string]any `json:"result"`
	}
	if err := json.Unmarshal(a.body, &res); err != nil || res.Result["Stock"] != float64(2) {
		t.Fatalf("absolute: %d %s", a.status, a.body)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 4 {
		t.Errorf("after absolute 4: %d", n)
	}
	if n, _ := s.StockOf("2", "8000002"); n != 25 {
		t.Errorf("after absolute 25: %d", n)
	}
}

func TestErrorCodes(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	upd := func(pd, pdd, table, row string) string {
		return `{"proc_info":{"proc_division":"` + pd + `","proc_detail_division":"` + pdd + `"},"data":[{"table_name":"` + table + `","rows":[` + row + `]}]}`
	}
	goodRow := `{"storeId":"1","productId":"8000001","stockAmount":"1","stockDivision":"15"}`
	cases := []struct {
		name string
		r    req
		code string
	}{
		{"missing auth", req{contract: "-", proc: "stock_ref", params: `{"table_name":"Stock"}`}, "21"},
		{"wrong contract", req{contract: "other", token: testToken, proc: "stock_ref", params: `{"table_name":"Stock"}`}, "14"},
		{"wrong token", req{contract: testContract, token: "nope", proc: "stock_ref", params: `{"table_name":"Stock"}`}, "13"},
		{"unknown proc_name", req{proc: "stock_delete", params: `{}`}, "15"},
		{"missing proc_name", req{proc: "", params: `{}`}, "11"},
		{"params not JSON", req{proc: "stock_ref", params: `{table_name`}, "11"},
		{"bad table_name ref", req{proc: "stock_ref", params: `{"table_name":"Customer"}`}, "31"},
		{"bad table_name upd", req{proc: "stock_upd", params: upd("U", "2", "Product", goodRow)}, "31"},
		{"bad proc_division", req{proc: "stock_upd", params: upd("D", "2", "Stock", goodRow)}, "32"},
		{"bad proc_detail_division", req{proc: "stock_upd", params: upd("U", "3", "Stock", goodRow)}, "33"},
		{"unknown product", req{proc: "stock_upd", params: upd("U", "2", "Stock", `{"storeId":"1","productId":"9","stockAmount":"1","stockDivision":"15"}`)}, "41"},
		{"no stockDivision", req{proc: "stock_upd", params: upd("U", "2", "Stock", `{"storeId":"1","productId":"8000001","stockAmount":"1"}`)}, "41"},
		{"bad amount", req{proc: "stock_upd", params: upd("U", "2", "Stock", `{"storeId":"1","productId":"8000001","stockAmount":"x","stockDivision":"15"}`)}, "41"},
		{"unknown field", req{proc: "stock_ref", params: `{"table_name":"Stock","fields":["price"]}`}, "41"},
		{"limit over 1000", req{proc: "stock_ref", params: `{"table_name":"Stock","limit":1001}`}, "41"},
		{"page 0", req{proc: "stock_ref", params: `{"table_name":"Stock","page":0}`}, "41"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := post(t, hs, c.r)
			if a.status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", a.status)
			}
			if got := a.errorCode(t); got != c.code {
				t.Errorf("error_code %s, want %s (%s)", got, c.code, a.body)
			}
		})
	}
	if n, _ := s.StockOf("1", "8000001"); n != 10 {
		t.Errorf("a rejected call changed stock to %d", n)
	}
}
