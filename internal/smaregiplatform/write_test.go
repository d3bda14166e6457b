package smaregiplatform_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// TestAddWithMemoThenHistoryFindsIt: the history entry AddStock returns is
// the one FindChanges finds by store, product, window and memo.
func TestAddWithMemoThenHistoryFindsIt(t *testing.T) {
	e := startSim(t, nil)
	cl := newClient(t, e, nil)
	ctx := context.Background()
	sent := e.clock.Now()
	e.clock.Advance(time.Second)
	if _, err := cl.AddStock(ctx, smaregi.StockUpdate{StoreID: "1", ProductID: "8000002", Amount: 2, Memo: "adj-other"}); err != nil {
		t.Fatal(err)
	}
	h, err := cl.AddStock(ctx, smaregi.StockUpdate{StoreID: "1", ProductID: "8000002", Amount: -3, Memo: "adj-42 在庫調整"})
	if err != nil {
		t.Fatalf("AddStock: %v", err)
	}
	if h.ID == "" || h.Amount != -3 || h.StockAmount != 9 || h.StockDivision != smaregi.DefaultStockDivision || h.Memo != "adj-42 在庫調整" {
		t.Fatalf("entry %+v", h)
	}
	found, err := cl.FindChanges(ctx, smaregiplatform.ChangesQuery{StoreID: "1", ProductID: "8000002", From: sent, Memo: "adj-42 在庫調整"})
	if err != nil || len(found) != 1 || found[0].ID != h.ID || found[0].Amount != -3 || found[0].UpdDateTime.IsZero() {
		t.Fatalf("FindChanges = %+v, %v; want the entry %s", found, err, h.ID)
	}
	none, err := cl.FindChanges(ctx, smaregiplatform.ChangesQuery{StoreID: "2", ProductID: "8000002", From: sent, Memo: "adj-42 在庫調整"})
	if err != nil || len(none) != 0 {
		t.Fatalf("another store's history: %+v, %v", none, err)
	}
	for _, bad := range []smaregi.StockUpdate{
		{StoreID: "1", ProductID: "8000002", Amount: 1, Memo: strings.Repeat("x", 101)},
		{StoreID: "x", ProductID: "8000002", Amount: 1},
		{StoreID: "1", ProductID: "8000002", Amount: 1, StockDivision: "05"},
	} {
		if _, err := cl.AddStock(ctx, bad); err == nil {
			t.Errorf("AddStock(%+v) accepted", bad)
		}
	}
	if _, err := cl.FindChanges(ctx, smaregiplatform.ChangesQuery{StoreID: "1", From: sent, To: sent.Add(32 * 24 * time.Hour)}); err == nil {
		t.Error("a 32-day history window was accepted")
	}
}

// TestAmbiguousWritesAreResolvedByMemo: an add whose answer is lost, or
// that fails with a 5xx before or after being applied, is ambiguous (never
// resent); the history by memo tells which happened. Reads through the
// same faults are retried.
func TestAmbiguousWritesAreResolvedByMemo(t *testing.T) {
	cases := []struct {
		name    string
		faults  smaregisim.Faults
		applied bool
	}{
		{"lost answer", smaregisim.Faults{LostResponseRate: 1}, true},
		{"5xx after applying", smaregisim.Faults{AppliedErrorRate: 1}, true},
		{"5xx before applying", smaregisim.Faults{ErrorRate: 1}, false},
		{"HTML 502", smaregisim.Faults{HTMLErrorRate: 1}, false},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := startSim(t, nil)
			cl := newClient(t, e, func(o *smaregiplatform.Options) { o.RequestTimeout = 5 * time.Second })
			ctx := context.Background()
			listAll(t, cl, "1") // a token before the faults
			sent := e.clock.Now()
			if err := e.sim.SetFaults(c.faults); err != nil {
				t.Fatal(err)
			}
			memo := fmt.Sprintf("adj-amb-%d", i)
			before := e.apiCalls.Load()
			_, err := cl.AddStock(ctx, smaregi.StockUpdate{StoreID: "1", ProductID: "8000009", Amount: -4, Memo: memo})
			if !smaregiplatform.IsAmbiguous(err) || smaregiplatform.IsTransient(err) || smaregiplatform.IsConfigError(err) {
				t.Fatalf("err = %v: want ambiguous only", err)
			}
			if n := e.apiCalls.Load() - before; n != 1 {
				t.Fatalf("the ambiguous write was sent %d times", n)
			}
			if err := e.sim.SetFaults(smaregisim.Faults{}); err != nil {
				t.Fatal(err)
			}
			found, err := cl.FindChanges(ctx, smaregiplatform.ChangesQuery{StoreID: "1", ProductID: "8000009", From: sent, Memo: memo})
			if err != nil || (len(found) == 1) != c.applied || len(found) > 1 {
				t.Fatalf("history by memo: %+v, %v; applied %v", found, err, c.applied)
			}
		})
	}
	t.Run("reads retried", func(t *testing.T) {
		e := startSim(t, nil)
		cl := newClient(t, e, func(o *smaregiplatform.Options) { o.MaxAttempts = 3 })
		listAll(t, cl, "1")
		if err := e.sim.SetFaults(smaregisim.Faults{ErrorRate: 1}); err != nil {
			t.Fatal(err)
		}
		before := e.apiCalls.Load()
		err := cl.ListStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return nil })
		var ae *smaregiplatform.APIError
		if !errors.As(err, &ae) || ae.HTTPStatus != http.StatusServiceUnavailable || ae.Title != "Service Unavailable" ||
			!strings.Contains(ae.Detail, "injected") || !smaregiplatform.IsTransient(err) || smaregiplatform.IsAmbiguous(err) {
			t.Fatalf("err = %v, want a transient 503 problem", err)
		}
		if n := e.apiCalls.Load() - before; n != 3 {
			t.Fatalf("%d attempts, want 3", n)
		}
	})
}

// TestBulkAddAndCallback: a bulk add answers a request ID at once; the
// callback the simulator posts later decodes into each row's outcome.
func TestBulkAddAndCallback(t *testing.T) {
	e := startSim(t, nil)
	cl := newClient(t, e, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan *smaregiplatform.BulkCallback, 1)
	errs := make(chan error, 1)
	cb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := smaregiplatform.DecodeBulkCallback(r.Body)
		if err != nil {
			errs <- err
			http.Error(w, "bad", http.StatusBadRequest)
			return
		}
		got <- body
	}))
	defer cb.Close()
	rows := []smaregi.StockUpdate{
		{StoreID: "1", ProductID: "8000001", Amount: 4, Memo: "bulk-1"},
		{StoreID: "2", ProductID: "8000002", Amount: -2, Memo: "bulk-2"},
		{StoreID: "1", ProductID: "8999999", Amount: 1, Memo: "bulk-3"}, // no such product
	}
	reqID, err := cl.AddStockBulk(ctx, cb.URL+"/callbacks/platform/bulk", rows)
	if err != nil || reqID == "" {
		t.Fatalf("AddStockBulk = %q, %v", reqID, err)
	}
	var body *smaregiplatform.BulkCallback
	select {
	case body = <-got:
	case err := <-errs:
		t.Fatalf("callback: %v", err)
	case <-ctx.Done():
		t.Fatal("no callback")
	}
	if body.RequestID != reqID || body.ContractID != testContract || body.Status != smaregiplatform.BulkCompleted || len(body.Results) != 3 {
		t.Fatalf("callback %+v", body)
	}
	for i, r := range body.Results[:2] {
		if r.Index != i || r.Status != smaregiplatform.BulkRowSucceeded || r.StockHistoryID == "" || r.ProductID != rows[i].ProductID {
			t.Fatalf("result %d: %+v", i, r)
		}
		found, err := cl.FindChanges(ctx, smaregiplatform.ChangesQuery{StoreID: rows[i].StoreID, ProductID: rows[i].ProductID, Memo: rows[i].Memo})
		if err != nil || len(found) != 1 || found[0].ID != r.StockHistoryID {
			t.Fatalf("history of row %d: %+v, %v", i, found, err)
		}
	}
	if r := body.Results[2]; r.Status != smaregiplatform.BulkRowFailed || r.Detail == "" || r.StockHistoryID != "" {
		t.Fatalf("result 2: %+v", r)
	}

	// Checked before sending: too many rows, a zero amount, a bad URL.
	before := e.apiCalls.Load()
	many := make([]smaregi.StockUpdate, smaregiplatform.MaxBulkRows+1)
	for i := range many {
		many[i] = smaregi.StockUpdate{StoreID: "1", ProductID: "8000001", Amount: 1}
	}
	for name, call := range map[string]func() error{
		"101 rows": func() error { _, err := cl.AddStockBulk(ctx, cb.URL, many); return err },
		"zero": func() error {
			_, err := cl.AddStockBulk(ctx, cb.URL, []smaregi.StockUpdate{{StoreID: "1", ProductID: "8000001"}})
			return err
		},
		"url": func() error { _, err := cl.AddStockBulk(ctx, "/relative", rows[:1]); return err },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if e.apiCalls.Load() != before {
		t.Error("an invalid bulk request was sent")
	}
}

func TestDecodeBulkCallbackRefusesMalformedBodies(t *testing.T) {
	for name, body := range map[string]string{
		"not json":         `<html>`,
		"no request id":    `{"status":"completed","results":[]}`,
		"bad index":        `{"requestId":"r","results":[{"index":"x","status":"succeeded","stockHistoryId":"1"}]}`,
		"unknown status":   `{"requestId":"r","results":[{"index":"0","status":"maybe"}]}`,
		"success, no id":   `{"requestId":"r","results":[{"index":0,"status":"succeeded"}]}`,
		"index past limit": `{"requestId":"r","results":[{"index":100,"status":"failed"}]}`,
	} {
		if _, err := smaregiplatform.DecodeBulkCallback(strings.NewReader(body)); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
	cb, err := smaregiplatform.DecodeBulkCallback(strings.NewReader(
		`{"requestId":"r1","contractId":"c","status":"completed","results":[{"index":1,"storeId":1,"productId":"8000001","status":"succeeded","stockHistoryId":77}]}`))
	if err != nil || cb.Results[0].Index != 1 || cb.Results[0].StockHistoryID != "77" || cb.Results[0].StoreID != "1" {
		t.Fatalf("numbers as numbers: %+v, %v", cb, err)
	}
}
