package smaregisim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hookReceiver records every POST it gets (webhooks and bulk callbacks).
type hookReceiver struct {
	mu   sync.Mutex
	got  []hookPost
	hs   *httptest.Server
	path string
}

type hookPost struct {
	path string
	hdr  http.Header
	body map[string]any
}

func startHookReceiver(t testing.TB) *hookReceiver {
	t.Helper()
	rc := &hookReceiver{}
	rc.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Errorf("posted body is not JSON: %s", b)
		}
		rc.mu.Lock()
		rc.got = append(rc.got, hookPost{path: r.URL.Path, hdr: r.Header.Clone(), body: m})
		rc.mu.Unlock()
	}))
	t.Cleanup(rc.hs.Close)
	return rc
}

// take returns and forgets what was hookPost.
func (rc *hookReceiver) take() []hookPost {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := rc.got
	rc.got = nil
	return out
}

func waitOutbox(t testing.TB, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitWebhooksIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestPlatformRelativeAddWithMemo(t *testing.T) {
	s, hs, _ := startPlat(t, nil)
	tok := mustToken(t, hs)
	base := "/" + testContract + "/pos/stock"
	a := do(t, hs, "POST", base+"/8000001/add", tok, `{"storeId":"1","amount":-3,"memo":"order 42"}`, nil)
	if a.status != http.StatusOK {
		t.Fatalf("add: %d %s", a.status, a.body)
	}
	ans := a.obj(t)
	if n, _ := s.StockOf("1", "8000001"); n != 7 {
		t.Errorf("stock %d after -3, want 7", n)
	}
	hist, _ := s.History("1")
	last := hist[len(hist)-1]
	if ans["id"] != strconv.FormatInt(last.ID, 10) || last.Memo != "order 42" || last.StockDivision != DivisionAPI || last.Amount != -3 {
		t.Errorf("answer %s, legacy history row %+v", a.body, last)
	}
	// The legacy API sees the Platform write in StockHistory.
	_, rows := refRows(t, call(t, hs, "stock_ref", `{"table_name":"StockHistory","conditions":[{"id":"`+strconv.FormatInt(last.ID, 10)+`"}]}`))
	if len(rows) != 1 || rows[0]["memo"] != "order 42" || rows[0]["amount"] != "-3" {
		t.Errorf("legacy StockHistory %v", rows)
	}
	// A legacy write shows in the Platform's stock changes.
	if a := call(t, hs, "stock_upd", relUpd); a.status != http.StatusOK {
		t.Fatalf("stock_upd: %s", a.body)
	}
	ch := do(t, hs, "GET", base+"/changes?store_id=1&product_id=8000001", tok, "", nil).rows(t)
	if len(ch) != 2 || ch[0]["memo"] != "order 42" || ch[0]["division"] != "15" || ch[1]["amount"] != "-1" || ch[1]["stockAmount"] != "6" {
		t.Errorf("changes %v", ch)
	}

	if a := do(t, hs, "PATCH", base+"/8000002", tok, `{"storeId":"2","stockAmount":"50"}`, nil); a.status != http.StatusOK {
		t.Fatalf("PATCH: %d %s", a.status, a.body)
	}
	if n, _ := s.StockOf("2", "8000002"); n != 50 {
		t.Errorf("absolute stock %d, want 50", n)
	}
	do(t, hs, "POST", base+"/8000001/add", tok, `{"storeId":"1","amount":1,"memo":"`+strings.Repeat("あ", 101)+`"}`, nil).problem(t, http.StatusBadRequest)
	do(t, hs, "POST", base+"/9999999/add", tok, `{"storeId":"1","amount":1}`, nil).problem(t, http.StatusNotFound)
	do(t, hs, "POST", base+"/8000001/add", tok, `{"storeId":"9","amount":1}`, nil).problem(t, http.StatusBadRequest)
	do(t, hs, "POST", base+"/8000001/add", tok, `{"storeId":"1","amount":"x"}`, nil).problem(t, http.StatusBadRequest)

	p := do(t, hs, "GET", "/"+testContract+"/pos/products?product_code="+s.Products()[4].ProductCode, tok, "", nil).rows(t)
	if len(p) != 1 || p[0]["productId"] != "8000005" {
		t.Errorf("product by code %v", p)
	}
	if st := do(t, hs, "GET", "/"+testContract+"/pos/stores", tok, "", nil).rows(t); len(st) != 2 || st[1]["storeId"] != "2" {
		t.Errorf("stores %v", st)
	}
}

func TestPlatformBulkCallback(t *testing.T) {
	s, hs, _ := startPlat(t, nil)
	rc := startHookReceiver(t)
	tok := mustToken(t, hs)
	cb := rc.hs.URL + "/callback/key123"
	body := `{"callbackUrl":"` + cb + `","stocks":[{"productId":"8000001","storeId":"1","amount":"2","memo":"b1"},` +
		`{"productId":"9999999","storeId":"1","amount":"1"},{"productId":"8000002","storeId":"2","amount":-4}]}`
	a := do(t, hs, "POST", "/"+testContract+"/pos/stock/add/bulk", tok, body, nil)
	if a.status != http.StatusAccepted {
		t.Fatalf("bulk: %d %s", a.status, a.body)
	}
	reqID, _ := a.obj(t)["requestId"].(string)
	waitOutbox(t, s)
	got := rc.take()
	if len(got) != 1 || got[0].path != "/callback/key123" {
		t.Fatalf("callbacks %+v", got)
	}
	cbBody := got[0].body
	results, _ := cbBody["results"].([]any)
	if cbBody["requestId"] != reqID || len(results) != 3 {
		t.Fatalf("callback %v", cbBody)
	}
	want := []string{BulkRowSucceeded, BulkRowFailed, BulkRowSucceeded}
	for i, r := range results {
		if st := r.(map[string]any)["status"]; st != want[i] {
			t.Errorf("row %d: %v", i, r)
		}
	}
	n1, _ := s.StockOf("1", "8000001")
	n2, _ := s.StockOf("2", "8000002")
	if n1 != 12 || n2 != 6 {
		t.Errorf("stock after bulk %d %d, want 12 6", n1, n2)
	}
	if a := do(t, hs, "PATCH", "/"+testContract+"/pos/stock/bulk", tok,
		`{"callbackUrl":"`+cb+`","stocks":[{"productId":"8000003","storeId":"1","stockAmount":"0"}]}`, nil); a.status != http.StatusAccepted {
		t.Fatalf("absolute bulk: %d %s", a.status, a.body)
	}
	waitOutbox(t, s)
	if n, _ := s.StockOf("1", "8000003"); n != 0 || len(rc.take()) != 1 {
		t.Errorf("absolute bulk: stock %d", n)
	}

	rows := make([]string, 101)
	for i := range rows {
		rows[i] = `{"productId":"8000001","storeId":"1","amount":1}`
	}
	for _, b := range []string{
		`{"stocks":[{"productId":"8000001","storeId":"1","amount":1}]}`,
		`{"callbackUrl":"` + cb + `","stocks":[{"productId":"8000001","storeId":"1","amount":0}]}`,
		`{"callbackUrl":"` + cb + `","stocks":[` + strings.Join(rows, ",") + `]}`,
		`{"callbackUrl":"` + cb + `","stocks":[]}`,
	} {
		do(t, hs, "POST", "/"+testContract+"/pos/stock/add/bulk", tok, b, nil).problem(t, http.StatusBadRequest)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestPlatformWebhooks(t *testing.T) {
	s, hs, _ := startPlat(t, nil)
	rc := startHookReceiver(t)
	if a := do(t, hs, "PUT", "/_sim/webhook-config", "", `{"url":"`+rc.hs.URL+`/hook?key=s3cret","headers":{"X-Webhook-Key":"k-123"}}`, nil); a.status != http.StatusOK || strings.Contains(string(a.body), "s3cret") || strings.Contains(string(a.body), "k-123") {
		t.Fatalf("webhook-config: %d %s", a.status, a.body)
	}
	tok := mustToken(t, hs)

	// A legacy write sends nothing.
	if a := call(t, hs, "stock_upd", relUpd); a.status != http.StatusOK {
		t.Fatal(string(a.body))
	}
	waitOutbox(t, s)
	if got := rc.take(); len(got) != 0 {
		t.Fatalf("legacy write sent %d webhooks", len(got))
	}

	// A sale sends pos:transactions and pos:stock.
	txID, err := s.Sale("2", []SaleLine{{ProductID: "8000004", Quantity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	waitOutbox(t, s)
	got := rc.take()
	if len(got) != 2 || got[0].hdr.Get("Smaregi-Event") != EventTransactions || got[1].hdr.Get("Smaregi-Event") != EventStock {
		t.Fatalf("sale webhooks %+v", got)
	}
	for _, g := range got {
		if g.hdr.Get("Smaregi-Contract-Id") != testContract || !uuidRE.MatchString(g.hdr.Get("Smaregi-Event-Id")) ||
			!strings.HasPrefix(g.hdr.Get("User-Agent"), "Smaregi-Platform-Api-Webhook/") ||
			g.hdr.Get("X-Webhook-Key") != "k-123" || g.path != "/hook" {
			t.Errorf("webhook headers %v path %s", g.hdr, g.path)
		}
	}
	ids, _ := got[0].body["ids"].([]any)
	if len(ids) != 1 || ids[0].(map[string]any)["transactionHeadId"] != txID {
		t.Errorf("pos:transactions body %v", got[0].body)
	}

	// A Platform write echoes as pos:stock "edited" carrying the history ID.
	a := do(t, hs, "POST", "/"+testContract+"/pos/stock/8000005/add", tok, `{"storeId":"1","amount":"2"}`, nil)
	histID, _ := a.obj(t)["id"].(string)
	waitOutbox(t, s)
	got = rc.take()
	if len(got) != 1 || got[0].body["event"] != EventStock || got[0].body["action"] != WebhookActionEdited {
		t.Fatalf("echo %+v", got)
	}
	id0, _ := got[0].body["ids"].([]any)
	if len(id0) != 1 || id0[0].(map[string]any)["id"] != histID || id0[0].(map[string]any)["storeId"] != "1" {
		t.Errorf("echo ids %v, want history id %s", got[0].body, histID)
	}
	if _, ok := got[0].body["stockAmount"]; ok {
		t.Errorf("webhook carries an amount: %v", got[0].body)
	}

	// Duplicates keep their Smaregi-Event-Id.
	one := 1.0
	if err := s.SetPlatform(PlatformSettings{WebhookDuplicateRate: &one}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000006", Amount: 3, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	waitOutbox(t, s)
	got = rc.take()
	if len(got) != 2 || got[0].hdr.Get("Smaregi-Event-Id") != got[1].hdr.Get("Smaregi-Event-Id") {
		t.Fatalf("duplicate %+v", got)
	}
	recs := s.Webhooks()
	if last := recs[len(recs)-1]; len(last.Attempts) != 2 || !last.Attempts[1].Duplicate || strings.Contains(last.Target, "s3cret") {
		t.Errorf("history %+v", last)
	}
}

func TestPlatformRateLimit(t *testing.T) {
	s, hs, clk := startPlat(t, nil)
	two, one := 2, 1
	if err := s.SetPlatform(PlatformSettings{ReadsPerSecond: &two, WritesPerSecond: &one}); err != nil {
		t.Fatal(err)
	}
	tok := mustToken(t, hs) // read 1 of this second
	stock := "/" + testContract + "/pos/stock"
	if a := do(t, hs, "GET", stock, tok, "", nil); a.status != http.StatusOK {
		t.Fatalf("read 2: %d", a.status)
	}
	a := do(t, hs, "GET", stock, tok, "", nil)
	a.problem(t, http.StatusTooManyRequests)
	if ra, err := strconv.Atoi(a.hdr.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", a.hdr.Get("Retry-After"))
	}
	if a := requestToken(t, hs, testContract, testClientID, testClientSecret, ""); a.status != http.StatusTooManyRequests || a.hdr.Get("Retry-After") == "" {
		t.Errorf("token call over the limit: %d", a.status)
	}
	// Writes have their own budget.
	add := func() platAnswer {
		return do(t, hs, "POST", stock+"/8000001/add", tok, `{"storeId":"1","amount":1}`, nil)
	}
	if a := add(); a.status != http.StatusOK {
		t.Fatalf("write 1: %d %s", a.status, a.body)
	}
	add().problem(t, http.StatusTooManyRequests)
	if n, _ := s.StockOf("1", "8000001"); n != 11 {
		t.Errorf("a throttled write was applied: stock %d", n)
	}
	clk.Advance(time.Second)
	if a := do(t, hs, "GET", stock, tok, "", nil); a.status != http.StatusOK {
		t.Errorf("next second: %d", a.status)
	}
}

func TestPlatformFaults(t *testing.T) {
	s, hs, _ := startPlat(t, nil)
	tok := mustToken(t, hs)
	add := func() platAnswer {
		return do(t, hs, "POST", "/"+testContract+"/pos/stock/8000001/add", tok, `{"storeId":"1","amount":1}`, nil)
	}
	set := func(f Faults) {
		t.Helper()
		if err := s.SetFaults(f); err != nil {
			t.Fatal(err)
		}
	}
	stock := func() int64 { n, _ := s.StockOf("1", "8000001"); return n }

	set(Faults{ErrorRate: 1})
	add().problem(t, http.StatusServiceUnavailable)
	set(Faults{HTMLErrorRate: 1})
	if a := add(); a.status != http.StatusBadGateway || !strings.HasPrefix(a.hdr.Get("Content-Type"), "text/html") {
		t.Errorf("html fault: %d", a.status)
	}
	if n := stock(); n != 10 {
		t.Fatalf("failed calls applied: stock %d", n)
	}
	set(Faults{AppliedErrorRate: 1})
	add().problem(t, http.StatusServiceUnavailable)
	if n := stock(); n != 11 {
		t.Fatalf("applied error: stock %d, want 11", n)
	}
	set(Faults{LostResponseRate: 1})
	if a := add(); a.err == nil {
		t.Fatalf("lost response answered %d", a.status)
	}
	if n := stock(); n != 12 {
		t.Fatalf("lost response: stock %d, want 12", n)
	}
	set(Faults{})
	// The ambiguous writes are in the history, memo and all.
	ch := do(t, hs, "GET", "/"+testContract+"/pos/stock/changes?store_id=1&product_id=8000001", tok, "", nil).rows(t)
	if len(ch) != 2 || ch[1]["stockAmount"] != "12" {
		t.Errorf("changes after faults %v", ch)
	}
}

// lateCommit on the Platform side: a stock add gets no answer until the
// client gives up, and is applied (with its webhook echo) lateCommitDelay
// later, as on the legacy side.
// As on /access/: a Platform write abandoned during the latency is not
// applied, and its handler ends with the client.
func TestPlatformLatencyAbandonedWriteIsNotApplied(t *testing.T) {
	s, hs, _ := startPlat(t, nil)
	tok := mustToken(t, hs)
	if err := s.SetFaults(Faults{LatencyMs: 3000}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/"+testContract+"/pos/stock/8000001/add",
		strings.NewReader(`{"storeId":"1","amount":-2,"memo":"abandoned"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d through 3s of latency", resp.StatusCode)
	}
	hs.Close() // waits for the handler: at once, or when the latency ends
	if n, _ := s.StockOf("1", "8000001"); n != 10 {
		t.Errorf("stock %d after a write abandoned during the latency, want 10 (nothing applied)", n)
	}
}

func TestPlatformLateCommit(t *testing.T) {
	s, hs, _ := startPlat(t, nil)
	tok := mustToken(t, hs)
	type scheduled struct {
		delay time.Duration
		run   func()
	}
	timers := make(chan scheduled, 1)
	s.afterFunc = func(d time.Duration, f func()) *time.Timer {
		timers <- scheduled{d, f}
		return nil
	}
	if err := s.SetFaults(Faults{LateCommitRate: 1, LateCommitDelay: Duration(3 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPost, hs.URL+"/"+testContract+"/pos/stock/8000001/add",
		strings.NewReader(`{"storeId":"1","amount":-2,"memo":"late one"}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 200 * time.Millisecond}
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("got an answer %d, want the client to time out", resp.StatusCode)
	}
	sc := <-timers
	if sc.delay != 3*time.Second {
		t.Errorf("commit scheduled %s after the request ended, want 3s", sc.delay)
	}
	if n, _ := s.StockOf("1", "8000001"); n != 10 || s.LateCommitsPending() != 1 {
		t.Fatalf("before the delay: stock %d (want 10), %d pending (want 1)", n, s.LateCommitsPending())
	}
	if err := s.SetFaults(Faults{}); err != nil {
		t.Fatal(err)
	}
	sc.run()
	if n, _ := s.StockOf("1", "8000001"); n != 8 || s.LateCommitsPending() != 0 {
		t.Errorf("after the delay: stock %d (want 8), %d pending (want 0)", n, s.LateCommitsPending())
	}
	ch := do(t, hs, "GET", "/"+testContract+"/pos/stock/changes?store_id=1&product_id=8000001", tok, "", nil).rows(t)
	if len(ch) != 1 || ch[0]["memo"] != "late one" || ch[0]["amount"] != "-2" {
		t.Errorf("changes after the late commit: %v", ch)
	}
}
