package smaregisim

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	testContract = "skdemo"
	testToken    = "demo-token"
)

// fakeClock is a settable clock for deterministic updDateTime values.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var clockStart = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC) // 09:00:00 in Tokyo

// startSim runs a simulator behind a real HTTP server on 127.0.0.1.
func startSim(t testing.TB, mod func(*Options)) (*Server, *httptest.Server, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: clockStart}
	o := Options{Contract: testContract, Token: testToken, Stores: []string{"1", "2"},
		Products: 20, InitialStock: 10, Seed: 1, Clock: clk.Now}
	if mod != nil {
		mod(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		hs.Close()
		_ = s.Close()
	})
	return s, hs, clk
}

type answer struct {
	status int
	ctype  string
	body   []byte
}

func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.body, &m); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", a.status, err, a.body)
	}
	return m
}

// errorCode returns error_code as a string whatever its JSON type.
func (a answer) errorCode(t testing.TB) string {
	t.Helper()
	m := a.json(t)
	switch v := m["error_code"].(type) {
	case float64:
		return strconv.Itoa(int(v))
	case string:
		return v
	}
	t.Fatalf("no error_code in %s", a.body)
	return ""
}

type req struct {
	contract, token string
	hyphen          bool
	proc, params    string
	form            url.Values // overrides proc and params when set
}

func post(t testing.TB, hs *httptest.Server, r req) answer {
	t.Helper()
	form := r.form
	if form == nil {
		form = url.Values{"proc_name": {r.proc}, "params": {r.params}}
	}
	hr, err := http.NewRequest(http.MethodPost, hs.URL+"/access/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	contract, token := r.contract, r.token
	if contract == "" && token == "" {
		contract, token = testContract, testToken
	}
	if r.hyphen {
		hr.Header.Set("X-Contract-Id", contract)
		hr.Header.Set("X-Access-Token", token)
	} else if contract != "-" {
		// Set the raw key: Go would canonicalise X_contract_id unchanged
		// anyway, but be explicit about the wire spelling.
		hr.Header["X_contract_id"] = []string{contract}
		hr.Header["X_access_token"] = []string{token}
	}
	resp, err := hs.Client().Do(hr)
	if err != nil {
		t.Fatalf("POST /access/: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: b}
}

func call(t testing.TB, hs *httptest.Server, proc, params string) answer {
	t.Helper()
	return post(t, hs, req{proc: proc, params: params})
}

// refRows decodes a ref answer into total_count and rows of strings; it
// fails when any value is not a string.
func refRows(t testing.TB, a answer) (string, []map[string]string) {
	t.Helper()
	if a.status != http.StatusOK {
		t.Fatalf("status %d: %s", a.status, a.body)
	}
	var env struct {
		Total  any              `json:"total_count"`
		Result []map[string]any `json:"result"`
	}
	if err := json.Unmarshal(a.body, &env); err != nil {
		t.Fatalf("decode %s: %v", a.body, err)
	}
	total, ok := env.Total.(string)
	if !ok {
		t.Fatalf("total_count is %T, want string", env.Total)
	}
	rows := make([]map[string]string, len(env.Result))
	for i, r := range env.Result {
		rows[i] = map[string]string{}
		for k, v := range r {
			sv, ok := v.(string)
			if !ok {
				t.Fatalf("row %d %s is %T, want string", i, k, v)
			}
			rows[i][k] = sv
		}
	}
	return total, rows
}

func newTextLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, nil))
}
