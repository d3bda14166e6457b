package smaregisim

import (
	"bytes"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// platform is the Platform API side: the app's credentials, issued tokens,
// rate-limit windows and the outbox of webhooks and bulk callbacks. Its
// mutex is separate from the shop's: the shop state stays behind Server.mu.
type platform struct {
	mu        sync.Mutex
	o         PlatformOptions
	installed map[string]bool
	tokens    map[[32]byte]*platToken // by SHA-256 of the token: no plaintext kept
	windows   map[string]*rateWindow  // by contract (the simulator has one app)
	out       *outbox
}

type platToken struct {
	contract string
	scopes   map[string]bool
	expires  time.Time
}

// rateWindow counts one second of calls of a contract.
type rateWindow struct {
	sec           int64
	reads, writes int
}

func newPlatform(s *Server, o PlatformOptions, contract string, client *http.Client, seed int64) (*platform, error) {
	o, err := o.withDefaults(contract)
	if err != nil {
		return nil, err
	}
	p := &platform{o: o, tokens: map[[32]byte]*platToken{}, windows: map[string]*rateWindow{}}
	p.setInstalled(o.Installed)
	p.out = newOutbox(s, client, rand.New(rand.NewPCG(uint64(seed), 0x3eb)))
	return p, nil
}

// setInstalled replaces the installed contracts and revokes the tokens of
// contracts that lost the app. The caller holds p.mu or owns p.
func (p *platform) setInstalled(contracts []string) {
	p.installed = map[string]bool{}
	for _, c := range contracts {
		p.installed[c] = true
	}
	p.o.Installed = contracts
	for k, t := range p.tokens {
		if !p.installed[t.contract] {
			delete(p.tokens, k)
		}
	}
}

// platformHandler serves the token endpoint and the API under
// /{contract}/pos/. It is mounted at "/" so that /access/ and /_sim/ keep
// precedence without pattern conflicts.
func (s *Server) platformHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /app/{contract}/token", s.platTokenEndpoint)
	api := func(pattern string, write bool, scope string, h http.HandlerFunc) {
		mux.Handle(pattern, s.platAPI(write, scope, h))
	}
	api("GET /{contract}/pos/stock", false, ScopeStockRead, s.platListStock)
	api("PATCH /{contract}/pos/stock/{product_id}", true, ScopeStockWrite, s.platSetStock)
	api("POST /{contract}/pos/stock/{product_id}/add", true, ScopeStockWrite, s.platAddStock)
	api("PATCH /{contract}/pos/stock/bulk", true, ScopeStockWrite, s.platBulk(true))
	api("POST /{contract}/pos/stock/add/bulk", true, ScopeStockWrite, s.platBulk(false))
	api("GET /{contract}/pos/stock/changes", false, ScopeStockChangesRead, s.platListChanges)
	api("GET /{contract}/pos/products", false, ScopeProductsRead, s.platListProducts)
	api("GET /{contract}/pos/stores", false, ScopeStoresRead, s.platListStores)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "Not Found", "no such endpoint")
	})
	return s.platFaults(mux)
}

// platFaults applies the injected faults of /_sim/faults to Platform calls
// as serveAccess does to /access/: latency, errors before the call (nothing
// applied), then a lost answer or an error after the call was applied.
func (s *Server) platFaults(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		f := s.Faults()
		if f.LatencyMs > 0 && !waitLatency(r, time.Duration(f.LatencyMs)*time.Millisecond, maxPlatformBody+1) {
			s.log.Info("platform", "method", r.Method, "path", r.URL.Path, "fault", "latency", "outcome", "the client gave up; nothing run")
			return
		}
		switch {
		case s.chance(f.ErrorRate):
			s.log.Info("platform", "method", r.Method, "path", r.URL.Path, "fault", "error")
			writeProblem(w, http.StatusServiceUnavailable, "Service Unavailable", "temporary failure (injected)")
			return
		case s.chance(f.HTMLErrorRate):
			s.log.Info("platform", "method", r.Method, "path", r.URL.Path, "fault", "html502")
			writeHTMLBadGateway(w)
			return
		}
		rec := &bufferedResponse{h: http.Header{}}
		next.ServeHTTP(rec, r)
		s.log.Info("platform", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"remote", r.RemoteAddr, "duration", time.Since(start))
		if s.chance(f.LostResponseRate) {
			s.log.Info("platform", "fault", "lost response")
			loseResponse(w)
			return
		}
		if rec.status/100 == 2 && s.chance(f.AppliedErrorRate) {
			s.log.Info("platform", "fault", "error after applying")
			writeProblem(w, http.StatusServiceUnavailable, "Service Unavailable", "temporary failure after the change was applied (injected)")
			return
		}
		for k, v := range rec.h {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(rec.buf.Len()))
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.buf.Bytes())
	})
}

// bufferedResponse holds an answer until the faults have decided its fate.
type bufferedResponse struct {
	h      http.Header
	status int
	buf    bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.h }
func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.buf.Write(p)
}

// platAPI authenticates a Bearer token for the path's contract, checks the
// scope and the rate limit, then runs h.
func (s *Server) platAPI(write bool, scope string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer drain(r.Body)
		contract := r.PathValue("contract")
		auth := r.Header.Get("Authorization")
		tok, ok := strings.CutPrefix(auth, "Bearer ")
		if !ok || tok == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="smaregi"`)
			writeProblem(w, http.StatusUnauthorized, "Unauthorized", "a Bearer access token is required")
			return
		}
		now := s.clock()
		p := s.plat
		p.mu.Lock()
		key := sha256.Sum256([]byte(tok))
		t := p.tokens[key]
		var status int
		var title, detail string
		retry := 0
		switch {
		case t == nil || t.contract != contract:
			status, title, detail = http.StatusUnauthorized, "Unauthorized", "the access token is not valid for this contract"
		case !now.Before(t.expires):
			delete(p.tokens, key)
			status, title, detail = http.StatusUnauthorized, "Unauthorized", "the access token has expired"
		case !t.scopes[scope]:
			status, title, detail = http.StatusForbidden, "Forbidden", "the access token lacks scope "+scope
		default:
			if retry = p.take(contract, write, now); retry > 0 {
				status, title, detail = http.StatusTooManyRequests, "Too Many Requests", "rate limit of the app and contract exceeded"
			}
		}
		p.mu.Unlock()
		if status != 0 {
			if status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			}
			if retry > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(retry))
			}
			writeProblem(w, status, title, detail)
			return
		}
		if contract != s.contract {
			writeProblem(w, http.StatusNotFound, "Not Found", "this simulator has no shop for contract "+contract)
			return
		}
		h(w, r)
	})
}

// take counts a call against the contract's limit and returns 0, or the
// seconds to wait when the limit is reached. The caller holds p.mu.
func (p *platform) take(contract string, write bool, now time.Time) int {
	limit := p.o.ReadsPerSecond
	if write {
		limit = p.o.WritesPerSecond
	}
	if limit < 0 {
		return 0
	}
	sec := now.Unix()
	rw := p.windows[contract]
	if rw == nil || rw.sec != sec {
		rw = &rateWindow{sec: sec}
		p.windows[contract] = rw
	}
	n := &rw.reads
	if write {
		n = &rw.writes
	}
	if *n >= limit {
		return 1 // the window is one second
	}
	*n++
	return 0
}

// writeProblem answers an RFC 7807 problem.
func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{"about:blank", title, status, detail})
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeAPIJSON answers a Platform API success body.
func writeAPIJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// newUUID returns a random version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// isoTime turns a stored Smaregi time (Tokyo, no zone) into ISO 8601 with
// the +09:00 offset the Platform API uses.
func isoTime(legacy string) string {
	if len(legacy) != len(TimeLayout) {
		return legacy
	}
	return legacy[:10] + "T" + legacy[11:] + "+09:00"
}
