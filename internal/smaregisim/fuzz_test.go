package smaregisim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzAccessBody posts arbitrary form bodies: the server must never panic
// and must answer either 200 or a protocol error with a known code.
func FuzzAccessBody(f *testing.F) {
	for _, seed := range []string{
		"proc_name=stock_ref&params=%7B%22table_name%22%3A%22Stock%22%7D",
		"proc_name=stock_upd&params=" + strings.ReplaceAll(relUpd, `"`, "%22"),
		"proc_name=stock_ref&params=%7B",
		"%zz=1&&&=",
		"proc_name=&params=",
		"proc_name=product_ref&params=[]",
	} {
		f.Add(seed)
	}
	s, err := New(Options{Contract: testContract, Token: testToken, Products: 5, InitialStock: 1, Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest(http.MethodPost, "/access/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r.Header.Set("X_contract_id", testContract)
		r.Header.Set("X_access_token", testToken)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		checkAnswer(t, w)
	})
}

// FuzzParams feeds arbitrary params JSON to every function.
func FuzzParams(f *testing.F) {
	for _, seed := range []string{
		`{"table_name":"Stock","fields":["storeId"],"conditions":[{"storeId":"1","updDateTime >=":"2026-01-01 00:00:00"}],"order":["updDateTime asc"],"limit":1000,"page":1}`,
		`{"table_name":"StockHistory","conditions":{"id >":"0"},"order":"id desc"}`,
		`{"table_name":"Product","conditions":[{"productName like":"%商品_"}]}`,
		relUpd,
		`{"proc_info":{"proc_division":"U","proc_detail_division":1},"data":[{"table_name":"Stock","rows":[{}]}]}`,
		`{"table_name":"Stock","limit":"1e9","page":-1}`,
		`{"conditions":[{"stockAmount <":"x"}]}`,
		`null`, `[]`, `"x"`, `{"table_name":1}`,
	} {
		f.Add(seed)
	}
	s, err := New(Options{Contract: testContract, Token: testToken, Products: 5, InitialStock: 1, Seed: 1})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	f.Fuzz(func(t *testing.T, params string) {
		for _, proc := range []string{"stock_ref", "product_ref", "stock_upd"} {
			form := "proc_name=" + proc + "&params=" + urlEscape(params)
			r := httptest.NewRequest(http.MethodPost, "/access/", strings.NewReader(form))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("X-Contract-Id", testContract)
			r.Header.Set("X-Access-Token", testToken)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			checkAnswer(t, w)
		}
	})
}

func urlEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			b.WriteByte(c)
		} else {
			b.WriteString("%" + string(hexDigits[c>>4]) + string(hexDigits[c&15]))
		}
	}
	return b.String()
}

var knownCodes = map[string]bool{"11": true, "15": true, "31": true, "32": true, "33": true, "41": true}

func checkAnswer(t *testing.T, w *httptest.ResponseRecorder) {
	t.Helper()
	a := answer{status: w.Code, ctype: w.Header().Get("Content-Type"), body: w.Body.Bytes()}
	m := a.json(t) // must be JSON either way
	if a.status == http.StatusOK {
		if _, ok := m["error_code"]; ok {
			t.Fatalf("200 with an error: %s", a.body)
		}
		return
	}
	if a.status != http.StatusBadRequest || !knownCodes[a.errorCode(t)] {
		t.Fatalf("answer %d %s", a.status, a.body)
	}
}
