package smaregisim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// receiver is a real HTTP endpoint that records Smaregi's sends.
type receiver struct {
	mu     sync.Mutex
	posts  []url.Values
	status int
	*httptest.Server
}

func startReceiver(t *testing.T) *receiver {
	rc := &receiver{status: http.StatusOK}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
			t.Errorf("send is %s %s", r.Method, r.Header.Get("Content-Type"))
		}
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse send: %v", err)
		}
		rc.mu.Lock()
		rc.posts = append(rc.posts, r.Form)
		st := rc.status
		rc.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []url.Values {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]url.Values(nil), rc.posts...)
}

type sendParams struct {
	Data []struct {
		Table string           `json:"table_name"`
		Rows  []map[string]any `json:"rows"`
	} `json:"data"`
}

// decodeSend checks every value is a string and returns rows by table.
func decodeSend(t *testing.T, v url.Values) map[string][]map[string]string {
	t.Helper()
	var p sendParams
	if err := json.Unmarshal([]byte(v.Get("params")), &p); err != nil {
		t.Fatalf("params of %s: %v", v.Get("proc_name"), err)
	}
	out := map[string][]map[string]string{}
	for _, d := range p.Data {
		for _, r := range d.Rows {
			sr := map[string]string{}
			for k, x := range r {
				s, ok := x.(string)
				if !ok {
					t.Fatalf("%s.%s is %T, want string", d.Table, k, x)
				}
				sr[k] = s
			}
			out[d.Table] = append(out[d.Table], sr)
		}
	}
	return out
}

func waitIdle(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitSendsIdle(ctx); err != nil {
		t.Fatal(err)
	}
}

func configure(t *testing.T, s *Server, u string) {
	t.Helper()
	if err := s.SetSendConfig(SendConfig{URL: u, Params: map[string]string{"goqsystem_key": "k-secret"},
		Functions: []string{"transaction_send", "stock_send"}}); err != nil {
		t.Fatal(err)
	}
}

func TestSaleSendsTransactionAndStock(t *testing.T) {
	s, _, _ := startSim(t, nil)
	rc := startReceiver(t)
	configure(t, s, rc.URL)
	id, err := s.Sale("1", []SaleLine{{ProductID: "8000001", Quantity: 2}, {ProductID: "8000002", Quantity: -1}})
	if err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s)
	if n, _ := s.StockOf("1", "8000001"); n != 8 {
		t.Errorf("sale of 2: stock %d", n)
	}
	if n, _ := s.StockOf("1", "8000002"); n != 11 {
		t.Errorf("return of 1: stock %d", n)
	}
	posts := rc.got()
	if len(posts) != 2 || posts[0].Get("proc_name") != "transaction_send" || posts[1].Get("proc_name") != "stock_send" {
		t.Fatalf("posts: %v", posts)
	}
	if posts[0].Get("goqsystem_key") != "k-secret" {
		t.Errorf("extra parameter missing")
	}
	tx := decodeSend(t, posts[0])
	head := tx["TransactionHead"][0]
	if head["transactionHeadId"] != id || head["transactionHeadDivision"] != "1" || head["cancelDivision"] != "0" ||
		head["storeId"] != "1" || head["transactionDateTime"] != "2026-11-26 09:00:00" {
		t.Errorf("head %v", head)
	}
	det := tx["TransactionDetail"]
	if len(det) != 2 || det[0]["transactionDetailDivision"] != "1" || det[0]["quantity"] != "2" ||
		det[1]["transactionDetailDivision"] != "2" || det[1]["productCode"] != s.Products()[1].ProductCode {
		t.Errorf("details %v", det)
	}
	st := decodeSend(t, posts[1])["Stock"]
	want := map[string]string{"storeId": "1", "productId": "8000001", "amount": "-2", "stockAmount": "8",
		"layawayStockAmount": "0", "stockDivision": "02", "fromStoreId": "", "toStoreId": "", "updDateTime": "2026-11-26 09:00:00"}
	if len(st) != 2 || !equalMaps(st[0], want) || st[1]["amount"] != "1" {
		t.Errorf("stock rows %v", st)
	}
	for _, rec := range s.Sends() {
		if strings.Contains(rec.Params, "k-secret") || rec.State != SendSent || rec.Attempts[0].StatusCode != 200 {
			t.Errorf("send record %+v", rec)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestVoidRestoresStockAndSendsCancel(t *testing.T) {
	s, _, _ := startSim(t, nil)
	rc := startReceiver(t)
	id, _ := s.Sale("2", []SaleLine{{ProductID: "8000003", Quantity: 3}})
	configure(t, s, rc.URL) // only the void is sent
	if err := s.Void(id); err != nil {
		t.Fatal(err)
	}
	if err := s.Void(id); err != ErrAlreadyVoided {
		t.Errorf("second void: %v", err)
	}
	waitIdle(t, s)
	if n, _ := s.StockOf("2", "8000003"); n != 10 {
		t.Errorf("after void: %d", n)
	}
	posts := rc.got()
	if len(posts) != 2 {
		t.Fatalf("%d posts", len(posts))
	}
	if h := decodeSend(t, posts[0])["TransactionHead"][0]; h["cancelDivision"] != "1" || h["transactionHeadId"] != id {
		t.Errorf("void head %v", h)
	}
	if r := decodeSend(t, posts[1])["Stock"][0]; r["amount"] != "3" || r["stockAmount"] != "10" {
		t.Errorf("void stock %v", r)
	}
}

func TestMovementSendsOnlyConfiguredFunctions(t *testing.T) {
	s, _, _ := startSim(t, nil)
	rc := startReceiver(t)
	if err := s.SetSendConfig(SendConfig{URL: rc.URL, Functions: []string{"transaction_send"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: 5, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s)
	if len(rc.got()) != 0 {
		t.Errorf("stock_send switched off but posted")
	}
	configure(t, s, rc.URL)
	h, _ := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: 5, StockDivision: "05"})
	waitIdle(t, s)
	if h.StockAmount != 20 || len(rc.got()) != 1 || decodeSend(t, rc.got()[0])["Stock"][0]["stockDivision"] != "05" {
		t.Errorf("movement: %+v, posts %v", h, rc.got())
	}
}

func TestAPIWritesDoNotEchoByDefault(t *testing.T) {
	upd := `{"proc_info":{"proc_division":"U","proc_detail_division":"2"},"data":[{"table_name":"Stock","rows":[{"storeId":"1","productId":"8000001","stockAmount":"1","stockDivision":"15"}]}]}`
	for _, echo := range []bool{false, true} {
		s, hs, _ := startSim(t, func(o *Options) { o.Behaviour.EchoAPIWrites = echo })
		rc := startReceiver(t)
		configure(t, s, rc.URL)
		call(t, hs, "stock_upd", upd)
		waitIdle(t, s)
		if got := len(rc.got()) == 1; got != echo {
			t.Errorf("echo=%v: %d posts", echo, len(rc.got()))
		}
	}
}

func TestFailedSendKeptForManualResend(t *testing.T) {
	s, _, _ := startSim(t, nil)
	rc := startReceiver(t)
	rc.status = http.StatusInternalServerError
	configure(t, s, rc.URL)
	if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: 1, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s)
	recs := s.Sends()
	if len(recs) != 1 || recs[0].State != SendFailed || len(recs[0].Attempts) != 1 || recs[0].Attempts[0].StatusCode != 500 {
		t.Fatalf("no automatic retry expected: %+v", recs)
	}
	rc.mu.Lock()
	rc.status = http.StatusOK
	rc.mu.Unlock()
	if err := s.Resend(recs[0].ID); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s)
	recs = s.Sends()
	if recs[0].State != SendSent || len(recs[0].Attempts) != 2 || len(rc.got()) != 2 {
		t.Errorf("after resend: %+v", recs)
	}
}

func TestSendTargetDown(t *testing.T) {
	s, _, _ := startSim(t, func(o *Options) {
		o.Behaviour.SendRetries = 1
		o.Behaviour.SendRetryInterval = time.Millisecond
	})
	dead := httptest.NewServer(http.NotFoundHandler())
	u := dead.URL
	dead.Close() // nothing listens there now
	configure(t, s, u+"/hook")
	if _, err := s.Sale("1", []SaleLine{{ProductID: "8000001", Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s)
	for _, rec := range s.Sends() {
		if rec.State != SendFailed || len(rec.Attempts) != 2 || rec.Attempts[1].Error == "" {
			t.Errorf("send to a dead target: %+v", rec)
		}
		if strings.Contains(rec.Attempts[0].Error, "k-secret") {
			t.Errorf("error leaks the key: %s", rec.Attempts[0].Error)
		}
	}
}

func TestSendFaults(t *testing.T) {
	s, _, _ := startSim(t, nil)
	rc := startReceiver(t)
	configure(t, s, rc.URL)
	if err := s.SetFaults(Faults{DropSendRate: 0.3, DuplicateSendRate: 0.3, ReorderSends: true}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: int64(i), Absolute: true, StockDivision: "08"}); err != nil {
			t.Fatal(err)
		}
	}
	waitIdle(t, s)
	var dropped, dup int
	for _, rec := range s.Sends() {
		switch {
		case rec.State == SendDropped:
			dropped++
		case len(rec.Attempts) == 2 && rec.Attempts[1].Duplicate:
			dup++
		}
	}
	posts := rc.got()
	if dropped == 0 || dup == 0 || len(posts) != 40-dropped+dup {
		t.Errorf("dropped %d duplicated %d posts %d", dropped, dup, len(posts))
	}
	reordered := false
	last := -1
	for _, p := range posts {
		n := atoiOr(decodeSend(t, p)["Stock"][0]["stockAmount"])
		if n < last {
			reordered = true
		}
		last = n
	}
	if !reordered {
		t.Errorf("no send overtook another")
	}
}

func atoiOr(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

func TestExtraParamsInQueryOption(t *testing.T) {
	s, _, _ := startSim(t, func(o *Options) { o.Behaviour.ExtraParamsInQuery = true })
	var rawQuery string
	var mu sync.Mutex
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		rawQuery = r.URL.RawQuery + "|" + string(body)
		mu.Unlock()
	}))
	defer hs.Close()
	configure(t, s, hs.URL)
	_, _ = s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: 1, StockDivision: "05"})
	waitIdle(t, s)
	mu.Lock()
	defer mu.Unlock()
	q, body, _ := strings.Cut(rawQuery, "|")
	if q != "goqsystem_key=k-secret" || strings.Contains(body, "k-secret") {
		t.Errorf("query %q body %q", q, body)
	}
}

// A movement with SendAs posts a send of that other kind (when switched on)
// instead of stock_send: one OtherSendTable row naming the stores and the
// product, and no stock figure. Stock moves all the same.
func TestMovementSendsAsAnotherKind(t *testing.T) {
	s, _, _ := startSim(t, nil)
	rc := startReceiver(t)
	if err := s.SetSendConfig(SendConfig{URL: rc.URL, Functions: []string{"stock_send", "layaway_send"}}); err != nil {
		t.Fatal(err)
	}
	h, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: -2, StockDivision: "05",
		FromStoreID: "1", ToStoreID: "2", SendAs: "layaway_send"})
	if err != nil {
		t.Fatal(err)
	}
	// Switched off: moves stock, posts nothing.
	h2, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: -1, StockDivision: "05", SendAs: "loss_send"})
	if err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s)
	if h.StockAmount != 8 || h2.StockAmount != 7 {
		t.Errorf("stock after the movements: %d, %d; want 8, 7 (from 10)", h.StockAmount, h2.StockAmount)
	}
	got := rc.got()
	if len(got) != 1 {
		t.Fatalf("%d posts, want 1: %v", len(got), got)
	}
	if p := got[0].Get("proc_name"); p != "layaway_send" {
		t.Errorf("proc_name %q, want layaway_send", p)
	}
	tables := decodeSend(t, got[0])
	rows := tables[OtherSendTable]
	if len(tables) != 1 || len(rows) != 1 {
		t.Fatalf("tables %v, want one %s row", tables, OtherSendTable)
	}
	r := rows[0]
	if r["storeId"] != "1" || r["productId"] != "8000001" || r["fromStoreId"] != "1" || r["toStoreId"] != "2" {
		t.Errorf("row %v", r)
	}
	if _, ok := r["stockAmount"]; ok {
		t.Errorf("a send of another kind carries a stock figure: %v", r)
	}

	for _, bad := range []string{"stock_send", "transaction_send", "Layaway_send", "layaway", "_send", "x y_send"} {
		if _, err := s.StockMovement(StockMovement{StoreID: "1", ProductID: "8000001", Amount: 1, StockDivision: "05", SendAs: bad}); err == nil {
			t.Errorf("sendAs %q accepted", bad)
		}
		if bad != "stock_send" && bad != "transaction_send" {
			if err := s.SetSendConfig(SendConfig{URL: rc.URL, Functions: []string{bad}}); err == nil {
				t.Errorf("send function %q accepted", bad)
			}
		}
	}
}
