package webhookserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestRowCap: a send with more rows than MaxRows (over all its tables) is
// refused with 413 and a message naming the limit, and hands on nothing;
// a send at the cap is accepted (issue 9 §4).
func TestRowCap(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxRows = 3 })
	rows := func(n int) string {
		r := make([]string, n)
		for i := range r {
			r[i] = `{"storeId":"1","productId":"8000001","amount":"-1"}`
		}
		return strings.Join(r, ",")
	}
	over := `{"data":[{"table_name":"Stock","rows":[` + rows(2) + `]},{"table_name":"Other","rows":[` + rows(2) + `]}]}`
	got := postForm(t, h.url(routeA), sendForm(ProcStockSend, over, "goqsystem_key", keyA))
	if got.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("4 rows with a cap of 3: status %d (%s), want 413", got.status, got.body)
	}
	var resp response
	if err := json.Unmarshal([]byte(got.body), &resp); err != nil || resp.Result != ResultTooLarge || !strings.Contains(resp.Message, "3 rows") {
		t.Fatalf("answer %q: want result %q and a message naming the limit", got.body, ResultTooLarge)
	}
	if n := h.sink.Len(); n != 0 {
		t.Fatalf("sink holds %d sends after a refusal", n)
	}
	atCap := `{"data":[{"table_name":"Stock","rows":[` + rows(3) + `]}]}`
	if got := postForm(t, h.url(routeA), sendForm(ProcStockSend, atCap, "goqsystem_key", keyA)); got.status != http.StatusOK {
		t.Fatalf("3 rows with a cap of 3: status %d (%s), want 200", got.status, got.body)
	}
	if s := h.sink.Sends(); len(s) != 1 || s[0].Rows != 3 || len(s[0].Stock) != 3 {
		t.Fatalf("sink holds %+v, want one send of 3 Stock rows", s)
	}
}

// TestDefaultRowCap: the cap is on by default.
func TestDefaultRowCap(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBodyBytes = 64 << 20 })
	got := postForm(t, h.url(routeA), sendForm(ProcStockSend, tinyRowsParams("Stock", 8*(DefaultMaxRows+10)), "goqsystem_key", keyA))
	if got.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("over %d tiny rows: status %d, want 413", DefaultMaxRows, got.status)
	}
}
