package smaregisim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	testClientID     = "app-client"
	testClientSecret = "app-secret"
)

// startPlat runs a simulator with Platform credentials and no rate limit
// unless mod sets one.
func startPlat(t testing.TB, mod func(*Options)) (*Server, *httptest.Server, *fakeClock) {
	t.Helper()
	return startSim(t, func(o *Options) {
		o.Platform = PlatformOptions{ClientID: testClientID, ClientSecret: testClientSecret,
			ReadsPerSecond: -1, WritesPerSecond: -1}
		if mod != nil {
			mod(o)
		}
	})
}

type platAnswer struct {
	status int
	hdr    http.Header
	body   []byte
	err    error // transport error (a lost response)
}

func (a platAnswer) obj(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", a.status, err, a.body)
	}
	return m
}

// rows decodes a list answer, failing on any non-string value.
func (a platAnswer) rows(t testing.TB) []map[string]string {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var raw []map[string]any
	if err := json.Unmarshal(a.body, &raw); err != nil {
		t.Fatalf("not a JSON array: %v: %s", err, a.body)
	}
	out := make([]map[string]string, len(raw))
	for i, r := range raw {
		out[i] = map[string]string{}
		for k, v := range r {
			sv, ok := v.(string)
			if !ok {
				t.Fatalf("row %d %s is %T, want string", i, k, v)
			}
			out[i][k] = sv
		}
	}
	return out
}

// problem checks an RFC 7807 answer with the given status.
func (a platAnswer) problem(t testing.TB, status int) string {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %s", a.status, status, a.body)
	}
	if ct := a.hdr.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	m := a.obj(t)
	if m["type"] == nil || m["title"] == nil || m["status"] != float64(status) || m["detail"] == nil {
		t.Errorf("not a problem: %s", a.body)
	}
	d, _ := m["detail"].(string)
	return d
}

func do(t testing.TB, hs *httptest.Server, method, target, bearer, body string, hdr map[string]string) platAnswer {
	t.Helper()
	if !strings.HasPrefix(target, "http") {
		target = hs.URL + target
	}
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		return platAnswer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return platAnswer{status: resp.StatusCode, hdr: resp.Header, body: b}
}

func requestToken(t testing.TB, hs *httptest.Server, contract, id, secret, scope string) platAnswer {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequest(http.MethodPost, hs.URL+"/app/"+contract+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := hs.Client().Do(req)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return platAnswer{status: resp.StatusCode, hdr: resp.Header, body: b}
}

// mustToken gets a token with every default scope.
func mustToken(t testing.TB, hs *httptest.Server) string {
	t.Helper()
	a := requestToken(t, hs, testContract, testClientID, testClientSecret, strings.Join(DefaultPlatformScopes, " "))
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.body)
	}
	tok, _ := a.obj(t)["access_token"].(string)
	return tok
}

func oauthError(t testing.TB, a platAnswer, status int) string {
	t.Helper()
	if a.status != status {
		t.Fatalf("status %d, want %d: %s", a.status, status, a.body)
	}
	code, _ := a.obj(t)["error"].(string)
	return code
}

func TestPlatformTokenFlow(t *testing.T) {
	s, hs, clk := startPlat(t, nil)
	a := requestToken(t, hs, testContract, testClientID, testClientSecret, "pos.stock:read")
	if a.status != http.StatusOK {
		t.Fatalf("token: %d %s", a.status, a.body)
	}
	m := a.obj(t)
	tok, _ := m["access_token"].(string)
	if len(tok) < 32 || m["token_type"] != "Bearer" || m["expires_in"] != float64(3600) {
		t.Fatalf("token answer %s", a.body)
	}
	stock := "/" + testContract + "/pos/stock"
	if a := do(t, hs, "GET", stock, tok, "", nil); a.status != http.StatusOK {
		t.Fatalf("GET stock: %d %s", a.status, a.body)
	}
	// A read-only token cannot write.
	a = do(t, hs, "POST", stock+"/8000001/add", tok, `{"storeId":"1","amount":"1"}`, nil)
	a.problem(t, http.StatusForbidden)
	if n, _ := s.StockOf("1", "8000001"); n != 10 {
		t.Errorf("a refused write changed stock to %d", n)
	}
	// Another contract's path is not this token's.
	do(t, hs, "GET", "/other/pos/stock", tok, "", nil).problem(t, http.StatusUnauthorized)

	if c := oauthError(t, requestToken(t, hs, testContract, testClientID, "wrong", ""), http.StatusUnauthorized); c != "invalid_client" {
		t.Errorf("bad secret: %s", c)
	}
	if c := oauthError(t, requestToken(t, hs, testContract, "", "", ""), http.StatusUnauthorized); c != "invalid_client" {
		t.Errorf("no client: %s", c)
	}
	if c := oauthError(t, requestToken(t, hs, testContract, testClientID, testClientSecret, "pos.stock:read pos.customers:read"), http.StatusBadRequest); c != "invalid_scope" {
		t.Errorf("scope not granted: %s", c)
	}
	if c := oauthError(t, requestToken(t, hs, "other", testClientID, testClientSecret, ""), http.StatusBadRequest); c != "unauthorized_client" {
		t.Errorf("not installed: %s", c)
	}

	// Expiry by the simulator's clock.
	clk.Advance(3600 * time.Second)
	a = do(t, hs, "GET", stock, tok, "", nil)
	if d := a.problem(t, http.StatusUnauthorized); !strings.Contains(d, "expired") {
		t.Errorf("expired token: %s", d)
	}
	if !strings.Contains(a.hdr.Get("WWW-Authenticate"), "invalid_token") {
		t.Errorf("WWW-Authenticate %q", a.hdr.Get("WWW-Authenticate"))
	}

	// Uninstalling revokes the contract's tokens.
	tok = mustToken(t, hs)
	if err := s.SetPlatform(PlatformSettings{Installed: []string{"someone-else"}}); err != nil {
		t.Fatal(err)
	}
	do(t, hs, "GET", stock, tok, "", nil).problem(t, http.StatusUnauthorized)
	if c := oauthError(t, requestToken(t, hs, testContract, testClientID, testClientSecret, ""), http.StatusBadRequest); c != "unauthorized_client" {
		t.Errorf("uninstalled: %s", c)
	}
	// Re-issuing the secret through the control API refuses the old one.
	do(t, hs, "PUT", "/_sim/platform", "", `{"installed":["skdemo"],"clientSecret":"new-secret"}`, nil)
	if c := oauthError(t, requestToken(t, hs, testContract, testClientID, testClientSecret, ""), http.StatusUnauthorized); c != "invalid_client" {
		t.Errorf("old secret: %s", c)
	}
	if a := requestToken(t, hs, testContract, testClientID, "new-secret", ""); a.status != http.StatusOK {
		t.Errorf("new secret: %d %s", a.status, a.body)
	}
	if v := do(t, hs, "GET", "/_sim/platform", "", "", nil); strings.Contains(string(v.body), "new-secret") {
		t.Errorf("control API shows the secret: %s", v.body)
	}
}

var linkRE = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// linkNext returns the rel="next" URL of a Link header, or "".
func linkNext(h string) string {
	if m := linkRE.FindStringSubmatch(h); m != nil {
		return m[1]
	}
	return ""
}

var isoWithOffset = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+09:00$`)

func TestPlatformStockPaging(t *testing.T) {
	s, hs, _ := startPlat(t, nil)
	tok := mustToken(t, hs)
	base := "/" + testContract + "/pos/stock"
	var byPage []map[string]string
	for page := 1; ; page++ {
		rows := do(t, hs, "GET", base+"?limit=15&page="+strconv.Itoa(page), tok, "", nil).rows(t)
		byPage = append(byPage, rows...)
		if len(rows) < 15 {
			break
		}
	}
	if len(byPage) != 40 { // 20 products × 2 stores
		t.Fatalf("%d rows by page, want 40", len(byPage))
	}
	r := byPage[0]
	if r["storeId"] != "1" || r["productId"] != "8000001" || r["stockAmount"] != "10" ||
		r["layawayStockAmount"] != "0" || !isoWithOffset.MatchString(r["updDateTime"]) {
		t.Errorf("first row %v", r)
	}

	for _, q := range []string{"limit=0", "limit=1001", "page=0", "store_id=x",
		"upd_date_time-from=2026-11-26T09:00:00%2B09:00",
		"upd_date_time-from=2026-10-01T09:00:00%2B09:00&upd_date_time-to=2026-11-26T09:00:00%2B09:00",
		"upd_date_time-from=2026-11-26&upd_date_time-to=2026-11-27"} {
		do(t, hs, "GET", base+"?"+q, tok, "", nil).problem(t, http.StatusBadRequest)
	}
	if rows := do(t, hs, "GET", base+"?store_id=2&product_id=8000003", tok, "", nil).rows(t); len(rows) != 1 || rows[0]["storeId"] != "2" || rows[0]["productId"] != "8000003" {
		t.Errorf("store and product filter: %v", rows)
	}
	if rows := do(t, hs, "GET", base+"?store_id=2&limit=5&page=2", tok, "", nil).rows(t); len(rows) != 5 || rows[0]["productId"] != "8000006" {
		t.Errorf("one store, page 2: %v", rows)
	}
	if err := s.SetPlatform(PlatformSettings{Paging: PagingLink}); err != nil {
		t.Fatal(err)
	}
	var byLink []map[string]string
	next, pages := base+"?limit=15", 0
	for next != "" {
		a := do(t, hs, "GET", next, tok, "", nil)
		byLink = append(byLink, a.rows(t)...)
		pages++
		next = linkNext(a.hdr.Get("Link"))
	}
	if pages != 3 || len(byLink) != 40 {
		t.Fatalf("Link paging: %d pages, %d rows", pages, len(byLink))
	}
	for i := range byLink {
		if byLink[i]["storeId"] != byPage[i]["storeId"] || byLink[i]["productId"] != byPage[i]["productId"] {
			t.Fatalf("row %d differs: %v vs %v", i, byLink[i], byPage[i])
		}
	}

	// Exactly 31 days is allowed.
	a := do(t, hs, "GET", base+"?store_id=2&upd_date_time-from=2026-10-26T09:00:00%2B09:00&upd_date_time-to=2026-11-26T09:00:00%2B09:00", tok, "", nil)
	if rows := a.rows(t); len(rows) != 20 {
		t.Errorf("31-day window: %d rows", len(rows))
	}
}

func TestPlatformWindowFindsChanges(t *testing.T) {
	s, hs, clk := startPlat(t, nil)
	clk.Advance(time.Hour) // 10:00 Tokyo
	tok := mustToken(t, hs)
	if _, err := s.StockMovement(StockMovement{StoreID: "2", ProductID: "8000003", Amount: 4, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}
	q := "upd_date_time-from=2026-11-26T09:30:00%2B09:00&upd_date_time-to=2026-11-26T10:00:00%2B09:00"
	rows := do(t, hs, "GET", "/"+testContract+"/pos/stock?"+q, tok, "", nil).rows(t)
	if len(rows) != 1 || rows[0]["productId"] != "8000003" || rows[0]["stockAmount"] != "14" ||
		rows[0]["updDateTime"] != "2026-11-26T10:00:00+09:00" {
		t.Errorf("window rows %v", rows)
	}
	ch := do(t, hs, "GET", "/"+testContract+"/pos/stock/changes?"+q, tok, "", nil).rows(t)
	if len(ch) != 1 || ch[0]["division"] != "05" || ch[0]["amount"] != "4" {
		t.Errorf("window changes %v", ch)
	}
}
