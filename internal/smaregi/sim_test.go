package smaregi_test

import (
	"bytes"
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

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

const (
	testContract = "ct-test"
	// testToken is long and distinctive so that finding it in an error
	// string cannot be a coincidence.
	testToken = "tok-SECRET-7f3a9c1e5b2d4680"
)

// simClock is a settable clock for the simulator's updDateTime values.
type simClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *simClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *simClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// clockStart is 2026-11-26 09:00:00 in Tokyo.
var clockStart = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

// env is a simulator behind real HTTP on 127.0.0.1, with a recorder of the
// /access/ calls that reached it and an optional per-call hook.
type env struct {
	sim   *smaregisim.Server
	hs    *httptest.Server
	clock *simClock

	mu    sync.Mutex
	calls []recordedCall
	hook  func(n int, c recordedCall) // runs before the simulator answers call n (1-based)
}

type recordedCall struct {
	proc   string
	params string
}

func (e *env) Calls() []recordedCall {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]recordedCall(nil), e.calls...)
}

func (e *env) CallCount(proc string) int {
	n := 0
	for _, c := range e.Calls() {
		if c.proc == proc {
			n++
		}
	}
	return n
}

func (e *env) SetHook(h func(n int, c recordedCall)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.hook = h
}

func startSim(t testing.TB, mod func(*smaregisim.Options)) *env {
	t.Helper()
	e := &env{clock: &simClock{t: clockStart}}
	o := smaregisim.Options{Contract: testContract, Token: testToken, Stores: []string{"1", "2"},
		Products: 50, InitialStock: 10, Seed: 1, Clock: e.clock.Now}
	if mod != nil {
		mod(&o)
	}
	sim, err := smaregisim.New(o)
	if err != nil {
		t.Fatalf("smaregisim.New: %v", err)
	}
	e.sim = sim
	h := sim.Handler()
	e.hs = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/access/" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			c := recordedCall{proc: form.Get("proc_name"), params: form.Get("params")}
			e.mu.Lock()
			e.calls = append(e.calls, c)
			n, hook := len(e.calls), e.hook
			e.mu.Unlock()
			if hook != nil {
				hook(n, c)
			}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		e.hs.Close()
		_ = sim.Close()
	})
	return e
}

func (e *env) Endpoint() string { return e.hs.URL + "/access/" }

func newClient(t testing.TB, endpoint string, mod func(*smaregi.Options)) *smaregi.Client {
	t.Helper()
	o := smaregi.Options{
		Endpoint:    endpoint,
		ContractID:  testContract,
		AccessToken: testToken,
		Backoff:     smaregi.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
	}
	if mod != nil {
		mod(&o)
	}
	c, err := smaregi.New(o)
	if err != nil {
		t.Fatalf("smaregi.New: %v", err)
	}
	return c
}

// collectStock streams a query and returns every delivered row, copied.
func collectStock(t testing.TB, c *smaregi.Client, q smaregi.StockQuery) ([]smaregi.StockRow, int, error) {
	t.Helper()
	var rows []smaregi.StockRow
	pages := 0
	err := c.StreamStock(context.Background(), q, func(page []smaregi.StockRow) error {
		pages++
		rows = append(rows, page...)
		return nil
	})
	return rows, pages, err
}

func assertNoToken(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error")
	}
	if strings.Contains(err.Error(), testToken) {
		t.Fatalf("error text contains the access token: %q", err.Error())
	}
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := smaregi.ParseTime(s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

// decodeParams decodes a recorded call's params JSON.
func decodeParams(t testing.TB, c recordedCall) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(c.params), &m); err != nil {
		t.Fatalf("params of %s are not JSON: %v", c.proc, err)
	}
	return m
}
