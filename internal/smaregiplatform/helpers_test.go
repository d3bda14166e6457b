package smaregiplatform_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

const (
	testContract = "ct-plat"
	testClientID = "app-test"
	// testSecret is long and distinctive so that finding it in an error
	// string cannot be a coincidence.
	testSecret = "cs-SECRET-9d1e4b7a2c5f8036"
)

// simClock is a settable clock shared by the simulator (updDateTime, token
// expiry, rate windows) and the client (token refresh, 31-day window).
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

var clockStart = time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)

// env is the simulator behind real HTTP on 127.0.0.1 with a count of the
// requests that reached it and optional hooks.
type env struct {
	sim   *smaregisim.Server
	hs    *httptest.Server
	clock *simClock

	tokenCalls atomic.Int64
	apiCalls   atomic.Int64

	mu sync.Mutex
	// before may answer a request itself (true) instead of the simulator.
	before func(w http.ResponseWriter, r *http.Request) bool
	// after sees the status the simulator answered.
	after func(r *http.Request, status int)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Hijack lets the simulator's lost-response fault close the connection.
func (s *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(s.ResponseWriter).Hijack()
}

func startSim(t testing.TB, mod func(*smaregisim.Options)) *env {
	t.Helper()
	e := &env{clock: &simClock{t: clockStart}}
	o := smaregisim.Options{Contract: testContract, Token: "legacy-token", Stores: []string{"1", "2"},
		Products: 50, InitialStock: 10, Seed: 1, Clock: e.clock.Now,
		Platform: smaregisim.PlatformOptions{ClientID: testClientID, ClientSecret: testSecret,
			ReadsPerSecond: -1, WritesPerSecond: -1}}
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
		if strings.HasPrefix(r.URL.Path, "/app/") {
			e.tokenCalls.Add(1)
		} else if strings.Contains(r.URL.Path, "/pos/") {
			e.apiCalls.Add(1)
		}
		e.mu.Lock()
		before, after := e.before, e.after
		e.mu.Unlock()
		if before != nil && before(w, r) {
			return
		}
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if after != nil {
			after(r, rec.status)
		}
	}))
	t.Cleanup(func() {
		e.hs.Close()
		_ = sim.Close()
	})
	return e
}

func (e *env) setHooks(before func(http.ResponseWriter, *http.Request) bool, after func(*http.Request, int)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.before, e.after = before, after
}

func (e *env) options() smaregiplatform.Options {
	return smaregiplatform.Options{
		Endpoint:      e.hs.URL + "/",
		TokenEndpoint: e.hs.URL + "/",
		ContractID:    testContract,
		ClientID:      testClientID,
		ClientSecret:  testSecret,
		Backoff:       smaregi.Backoff{Initial: time.Millisecond, Max: 5 * time.Millisecond},
		Clock:         e.clock.Now,
	}
}

func newClient(t testing.TB, e *env, mod func(*smaregiplatform.Options)) *smaregiplatform.Client {
	t.Helper()
	o := e.options()
	if mod != nil {
		mod(&o)
	}
	c, err := smaregiplatform.New(o)
	if err != nil {
		t.Fatalf("smaregiplatform.New: %v", err)
	}
	return c
}

// assertNoSecret fails when err's text carries the client secret.
func assertNoSecret(t testing.TB, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), testSecret) {
		t.Fatalf("error carries the client secret: %v", err)
	}
}

// counter reads a counter of the process's metrics registry.
func counter(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
