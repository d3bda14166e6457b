package webhookserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// FuzzParseParams checks that no params crash the parser and that what it
// returns is consistent with what it counted.
func FuzzParseParams(f *testing.F) {
	for _, seed := range []string{
		stockParams, transactionParams, `{"data":[]}`, `{"data":null}`, `{"data":[{"table_name":"Stock","rows":[null]}]}`,
		`{"data":[{"table_name":"Stock","rows":[{"storeId":1,"x":true,"y":null}]}]}`, `[]`, `"x"`, ``, `{"data":[{}]}`,
		`{"data":[{"table_name":"TransactionDetail","rows":[{"transactionHeadId":"1"},{"transactionHeadId":"1"}]}]}`,
	} {
		f.Add(ProcStockSend, seed)
		f.Add(ProcTransactionSend, seed)
	}
	f.Fuzz(func(t *testing.T, procName, params string) {
		p, err := parseParams(procName, []byte(params), 0)
		if err != nil {
			return
		}
		details := 0
		for _, h := range p.transactions {
			details += len(h.Details)
			for _, d := range h.Details {
				if d.TransactionHeadID != h.TransactionHeadID {
					t.Fatalf("detail of head %q filed under %q", d.TransactionHeadID, h.TransactionHeadID)
				}
			}
		}
		if len(p.stock)+len(p.transactions)+details > p.rows+countSynthesized(p.transactions) {
			t.Fatalf("parsed more rows than counted: %d rows, %+v", p.rows, p)
		}
		for i := 1; i < len(p.storeIDs); i++ {
			if p.storeIDs[i-1] >= p.storeIDs[i] {
				t.Fatalf("storeIDs not sorted and distinct: %q", p.storeIDs)
			}
		}
	})
}

func countSynthesized(heads []TransactionHead) int {
	n := 0
	for _, h := range heads {
		if h.Synthesized {
			n++
		}
	}
	return n
}

// FuzzHandlerBody posts arbitrary bodies and query strings through the whole
// handler: it must never panic, always answer with a known status, and hand
// on only what it answered 200 for.
func FuzzHandlerBody(f *testing.F) {
	f.Add("proc_name=stock_send&goqsystem_key="+keyA+"&params="+strings.ReplaceAll(stockParams, "&", "%26"), "")
	f.Add("proc_name=transaction_send&params=%7B%22data%22%3A%5B%5D%7D", "goqsystem_key="+keyA)
	f.Add("%zz&&==", "a=%")
	f.Add("", "")
	h := newHarness(f, func(o *Options) { o.MaxBodyBytes = 1 << 16 })
	srv := h.srv.Handler()
	f.Fuzz(func(t *testing.T, body, query string) {
		before := h.sink.Len()
		req := httptest.NewRequest(http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix+routeA, strings.NewReader(body))
		req.URL.RawQuery = query
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
		case http.StatusUnauthorized, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if h.sink.Len() != before {
				t.Fatalf("refused with %d but handed on", rec.Code)
			}
		default:
			t.Fatalf("unexpected status %d: %s", rec.Code, rec.Body.String())
		}
		if strings.Contains(rec.Body.String(), keyA) {
			t.Fatalf("answer carries the key: %s", rec.Body.String())
		}
	})
}
