package smaregisim

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const relUpd = `{"proc_info":{"proc_division":"U","proc_detail_division":"2"},"data":[{"table_name":"Stock","rows":[{"storeId":"1","productId":"8000001","stockAmount":"-1","stockDivision":"15"}]}]}`

func TestAccountSettings(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	ref := `{"table_name":"Stock","limit":1}`
	check := func(proc, params, want string) {
		t.Helper()
		a := call(t, hs, proc, params)
		if want == "" {
			if a.status != http.StatusOK {
				t.Errorf("%s: %d %s", proc, a.status, a.body)
			}
			return
		}
		if got := a.errorCode(t); got != want {
			t.Errorf("%s: error_code %s, want %s", proc, got, want)
		}
	}
	mustSet := func(a Account) {
		t.Helper()
		if err := s.SetAccount(a); err != nil {
			t.Fatal(err)
		}
	}
	mustSet(Account{DisabledFunctions: []string{"stock_upd"}})
	check("stock_upd", relUpd, "23")
	check("stock_ref", ref, "")
	mustSet(Account{Locked: true})
	check("stock_ref", ref, "22")
	mustSet(Account{AllowedIPs: []string{"10.1.2.3"}})
	check("stock_ref", ref, "24")
	mustSet(Account{AllowedIPs: []string{"127.0.0.0/8"}})
	check("stock_ref", ref, "")
	if err := s.SetToken("new-token"); err != nil {
		t.Fatal(err)
	}
	check("stock_ref", ref, "13")
	if a := post(t, hs, req{contract: testContract, token: "new-token", proc: "stock_ref", params: ref}); a.status != http.StatusOK {
		t.Errorf("re-issued token refused: %s", a.body)
	}
}

func TestInjectedErrorsApplyNothing(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	if err := s.SetFaults(Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	a := call(t, hs, "stock_upd", relUpd)
	if a.status/100 != 5 || a.errorCode(t) == "" {
		t.Errorf("error fault: %d %s", a.status, a.body)
	}
	if err := s.SetFaults(Faults{HTMLErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	a = call(t, hs, "stock_upd", relUpd)
	if a.status != http.StatusBadGateway || !strings.HasPrefix(a.ctype, "text/html") || !bytes.Contains(a.body, []byte("<html>")) {
		t.Errorf("html fault: %d %s %s", a.status, a.ctype, a.body)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 10 {
		t.Errorf("a failed call changed stock to %d", n)
	}
}

func TestLostResponseStillApplies(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	if err := s.SetFaults(Faults{LostResponseRate: 1}); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"proc_name": {"stock_upd"}, "params": {relUpd}}
	r, _ := http.NewRequest(http.MethodPost, hs.URL+"/access/", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("X_contract_id", testContract)
	r.Header.Set("X_access_token", testToken)
	resp, err := hs.Client().Do(r)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d, want a lost response", resp.StatusCode)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 9 {
		t.Errorf("stock %d, want 9: the change must be applied", n)
	}
	// The history tells the caller what happened.
	_ = s.SetFaults(Faults{})
	_, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"StockHistory","conditions":[{"productId":"8000001"}]}`))
	if len(rows) != 1 || rows[0]["amount"] != "-1" {
		t.Errorf("history %v", rows)
	}
}

// appliedErrorRate applies the call and then answers a coded 5xx; set
// through the control API as documented.
func TestAppliedErrorStillApplies(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	r, _ := http.NewRequest(http.MethodPut, hs.URL+"/_sim/faults", strings.NewReader(`{"appliedErrorRate":1}`))
	resp, err := hs.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || s.Faults().AppliedErrorRate != 1 {
		t.Fatalf("PUT /_sim/faults: %d, faults %+v", resp.StatusCode, s.Faults())
	}
	a := call(t, hs, "stock_upd", relUpd)
	if a.status != http.StatusServiceUnavailable || a.errorCode(t) != "43" {
		t.Errorf("applied-error fault: %d %s", a.status, a.body)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 9 {
		t.Errorf("stock %d, want 9: the change must be applied", n)
	}
	// A rejected call stays rejected (and unapplied) under the fault.
	a = call(t, hs, "stock_upd", strings.Replace(relUpd, `"stockDivision":"15"`, `"stockDivision":"99"`, 1))
	if a.status != http.StatusBadRequest || a.errorCode(t) != "41" {
		t.Errorf("invalid call under the fault: %d %s", a.status, a.body)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 9 {
		t.Errorf("stock %d after a rejected call, want 9", n)
	}
}

func TestLatency(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	_ = s.SetFaults(Faults{LatencyMs: 300})
	c := *hs.Client()
	c.Timeout = 50 * time.Millisecond
	form := url.Values{"proc_name": {"stock_ref"}, "params": {`{"table_name":"Stock"}`}}
	r, _ := http.NewRequest(http.MethodPost, hs.URL+"/access/", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := c.Do(r); err == nil {
		resp.Body.Close()
		t.Errorf("a 300ms-late answer beat a 50ms client timeout")
	}
}

// A write whose client gives up during the latency is never applied: a
// test can hold a pusher with a latency longer than its timeout and know
// that nothing it sent lands later. Closing the server waits for every
// handler, so the check below sees what the handler did, even if it ran
// on to the end of the latency.
func TestLatencyAbandonedWriteIsNotApplied(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	if err := s.SetFaults(Faults{LatencyMs: 3000}); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"proc_name": {"stock_upd"}, "params": {relUpd}}
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/access/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X_contract_id", testContract)
	req.Header.Set("X_access_token", testToken)
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d through 3s of latency", resp.StatusCode)
	}
	hs.Close() // waits for the handler: at once, or when the latency ends
	if n, _ := s.StockOf("1", "8000001"); n != 10 {
		t.Errorf("stock %d after a write abandoned during the latency, want 10 (nothing applied)", n)
	}
	if h, _ := s.History("1"); len(h) != 0 {
		t.Errorf("history after a write abandoned during the latency: %+v", h)
	}
}

func TestFaultRatesValidated(t *testing.T) {
	s, _, _ := startSim(t, nil)
	if err := s.SetFaults(Faults{ErrorRate: 1.5}); err == nil {
		t.Error("rate 1.5 accepted")
	}
	if err := s.SetFaults(Faults{AppliedErrorRate: -0.1}); err == nil {
		t.Error("applied error rate -0.1 accepted")
	}
}

// TestControlAPI drives the documented control API over HTTP.
func TestControlAPI(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	rc := startReceiver(t)
	do := func(method, path, body string, want int) []byte {
		t.Helper()
		r, _ := http.NewRequest(method, hs.URL+path, strings.NewReader(body))
		resp, err := hs.Client().Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, buf.String())
		}
		return buf.Bytes()
	}
	cfg := do("PUT", "/_sim/send-config", `{"url":"`+rc.URL+`","params":{"goqsystem_key":"k-secret"},"functions":["transaction_send","stock_send"]}`, 200)
	if bytes.Contains(cfg, []byte("k-secret")) {
		t.Errorf("send config echoes the key: %s", cfg)
	}
	var sale map[string]string
	_ = json.Unmarshal(do("POST", "/_sim/sales", `{"storeId":"1","lines":[{"productId":"8000001","quantity":2}]}`, 200), &sale)
	do("POST", "/_sim/transactions/"+sale["transactionHeadId"]+"/void", "", 200)
	do("POST", "/_sim/transactions/"+sale["transactionHeadId"]+"/void", "", 409)
	do("POST", "/_sim/stock-movements", `{"storeId":"1","productId":"8000001","amount":5,"stockDivision":"05"}`, 200)
	do("POST", "/_sim/stock-movements", `{"storeId":"9","productId":"8000001","amount":5,"stockDivision":"05"}`, 404)
	do("PUT", "/_sim/account", `{"disabledFunctions":["stock_ref"],"locked":true,"allowedIPs":["10.1.2.3"]}`, 200)
	if a := s.Account(); !a.Locked || a.DisabledFunctions[0] != "stock_ref" {
		t.Errorf("account %+v", a)
	}
	do("PUT", "/_sim/faults", `{"errorRate":0.2,"htmlErrorRate":0.05,"latencyMs":30,"lostResponseRate":0.1,"dropSendRate":0.1,"duplicateSendRate":0.1,"reorderSends":true}`, 200)
	do("PUT", "/_sim/faults", `{}`, 200)
	if s.Faults() != (Faults{}) {
		t.Errorf("faults not cleared")
	}
	var stock []StockRow
	_ = json.Unmarshal(do("GET", "/_sim/stock?storeId=1", "", 200), &stock)
	if len(stock) != 20 || stock[0].StockAmount != 15 {
		t.Errorf("stock %v", stock[0])
	}
	var hist []HistoryRow
	_ = json.Unmarshal(do("GET", "/_sim/history?storeId=1", "", 200), &hist)
	if len(hist) != 3 || hist[2].StockDivision != "05" {
		t.Errorf("history %v", hist)
	}
	do("POST", "/_sim/sends/wait?timeout=5s", "", 200)
	var sends []SendRecord
	_ = json.Unmarshal(do("GET", "/_sim/sends", "", 200), &sends)
	if len(sends) != 5 {
		t.Fatalf("%d sends", len(sends))
	}
	do("POST", "/_sim/sends/"+sends[0].ID+"/resend", "", 200)
	do("POST", "/_sim/sends/999/resend", "", 404)
	do("PUT", "/_sim/faults", `{"errorRate":"high"}`, 400)
}

func TestNoSecretInLogs(t *testing.T) {
	var logs bytes.Buffer
	s, hs, _ := startSim(t, func(o *Options) { o.Logger = newTextLogger(&logs) })
	rc := startReceiver(t)
	configure(t, s, rc.URL)
	call(t, hs, "stock_upd", relUpd)
	post(t, hs, req{contract: testContract, token: "wrong-" + testToken, proc: "stock_ref", params: `{}`})
	_, _ = s.Sale("1", []SaleLine{{ProductID: "8000001", Quantity: 1}})
	waitIdle(t, s)
	for _, secret := range []string{testToken, "k-secret"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("log contains %q", secret)
		}
	}
	if !strings.Contains(logs.String(), "stock_upd") {
		t.Errorf("nothing logged: %s", logs.String())
	}
}

// lateCommit holds a stock_upd without answering until the client gives
// up, and applies it lateCommitDelay after that: the client saw a timeout,
// and StockHistory shows nothing until the delay has passed.
func TestLateCommitAppliesAfterTheClientGaveUp(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	type scheduled struct {
		delay time.Duration
		run   func()
	}
	timers := make(chan scheduled, 1)
	s.afterFunc = func(d time.Duration, f func()) *time.Timer {
		timers <- scheduled{d, f}
		return nil
	}
	r, _ := http.NewRequest(http.MethodPut, hs.URL+"/_sim/faults", strings.NewReader(`{"lateCommitRate":1,"lateCommitDelay":"3s"}`))
	resp, err := hs.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if f := s.Faults(); resp.StatusCode != http.StatusOK || f.LateCommitRate != 1 || time.Duration(f.LateCommitDelay) != 3*time.Second {
		t.Fatalf("PUT /_sim/faults: %d, faults %+v", resp.StatusCode, f)
	}

	form := url.Values{"proc_name": {"stock_upd"}, "params": {relUpd}}
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/access/", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X_contract_id", testContract)
	req.Header.Set("X_access_token", testToken)
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d, want the client to time out", resp.StatusCode)
	}
	// The server learns that the client gave up and schedules the commit.
	sc := <-timers
	if sc.delay != 3*time.Second {
		t.Errorf("commit scheduled %s after the request ended, want 3s", sc.delay)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 10 || s.LateCommitsPending() != 1 {
		t.Fatalf("before the delay: stock %d (want 10), %d late commits pending (want 1)", n, s.LateCommitsPending())
	}
	_ = s.SetFaults(Faults{})
	if _, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"StockHistory","conditions":[{"productId":"8000001"}]}`)); len(rows) != 0 {
		t.Fatalf("history before the late commit: %v", rows)
	}
	sc.run()
	if n, _ := s.StockOf("1", "8000001"); n != 9 || s.LateCommitsPending() != 0 {
		t.Errorf("after the delay: stock %d (want 9), %d pending (want 0)", n, s.LateCommitsPending())
	}
	if _, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"StockHistory","conditions":[{"productId":"8000001"}]}`)); len(rows) != 1 || rows[0]["amount"] != "-1" {
		t.Errorf("history after the late commit: %v", rows)
	}
}

// An invalid call is answered at once (nothing to commit late), and reads
// are never held.
func TestLateCommitOnlyHoldsValidWrites(t *testing.T) {
	s, hs, _ := startSim(t, nil)
	if err := s.SetFaults(Faults{LateCommitRate: 1, LateCommitDelay: Duration(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(relUpd, `"8000001"`, `"9999999"`, 1)
	if a := call(t, hs, "stock_upd", bad); a.errorCode(t) != "41" {
		t.Errorf("invalid stock_upd: %d %s", a.status, a.body)
	}
	if a := call(t, hs, "stock_ref", `{"table_name":"Stock","limit":1}`); a.status != http.StatusOK {
		t.Errorf("stock_ref under lateCommit: %d %s", a.status, a.body)
	}
	if s.LateCommitsPending() != 0 {
		t.Errorf("%d late commits pending", s.LateCommitsPending())
	}
	if err := s.SetFaults(Faults{LateCommitDelay: Duration(-time.Second)}); err == nil {
		t.Error("a negative lateCommitDelay was accepted")
	}
}
