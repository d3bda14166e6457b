package webhookserver

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// floodBody is the body of issue 20 §1: about size bytes of empty fields
// "0=&1=&…", with head before them and tail after them.
func floodBody(head, tail string, size int) string {
	var b strings.Builder
	b.Grow(size + 64)
	b.WriteString(head)
	for i := 0; b.Len()+len(tail) < size-16; i++ {
		b.WriteString(strconv.Itoa(i))
		b.WriteString("=&")
	}
	b.WriteString(tail)
	return b.String()
}

// allocPerRequest is the bytes allocated, on average over runs, by one
// request with body through the handler, answered want. It is measured with
// runtime.MemStats.TotalAlloc, which counts every allocation however soon
// it is freed, so it is a bound on what a request can make the heap grow by.
func allocPerRequest(t *testing.T, handler http.Handler, target, body string, want int) uint64 {
	t.Helper()
	const runs = 4
	serve := func() {
		req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body.String())
		}
	}
	serve() // warm up lazily built state (metric children, caches)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		serve()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / runs
}

// bigFieldBody is a body of about size bytes: head, one field of x's, tail.
func bigFieldBody(head, tail string, size int) string {
	return head + "junk=" + strings.Repeat("x", size-16-len(head)-len(tail)) + tail
}

// TestUnauthenticatedSendsAllocateLittle: a POST without the key, or with a
// wrong one, must not make the receiver build anything proportional to its
// body before the key is checked (issue 20 §1: a 4 MiB body of empty fields
// cost 118-142 MB, eight at once took the operator past its memory limit).
// A wrong key the form carries early is refused having read a small prefix,
// and so is a form of too many fields; otherwise a keyless body costs at
// most the raw body once (its bytes have to be held, for the key may come
// last), never a decoded copy.
func TestUnauthenticatedSendsAllocateLittle(t *testing.T) {
	const size = DefaultMaxBodyBytes
	const slack = 256 << 10
	target := smaregiv1alpha1.ReceiverPathPrefix + routeA
	cases := []struct {
		name      string
		body      string
		maxFields int
		status    int
		bound     uint64
	}{
		{"wrong key first, then many fields", floodBody("goqsystem_key=wrong&", "", size), 0, http.StatusUnauthorized, slack},
		{"percent-encoded wrong key first", floodBody("goqsystem%5Fkey=wr%6Fng&", "", size), 0, http.StatusUnauthorized, slack},
		{"keyless, many fields", floodBody("", "", size), 0, http.StatusRequestEntityTooLarge, slack},
		{"keyless, many fields, no field cap", floodBody("", "", size), 1 << 30, http.StatusUnauthorized, size + slack},
		{"wrong key last, many fields, no field cap", floodBody("", "&goqsystem_key=wrong", size), 1 << 30, http.StatusUnauthorized, size + slack},
		{"keyless, one big field", bigFieldBody("", "", size), 0, http.StatusUnauthorized, size + slack},
		{"wrong key after one big field", bigFieldBody("", "&goqsystem_key=wrong", size), 0, http.StatusUnauthorized, size + slack},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(o *Options) { o.MaxFormFields = tc.maxFields })
			if got := allocPerRequest(t, h.srv.Handler(), target, tc.body, tc.status); got > tc.bound {
				t.Errorf("%d-byte body: %d bytes allocated per request, want at most %d", len(tc.body), got, tc.bound)
			}
		})
	}
}

// serveBody posts body to route through the handler, with the Content-Type
// of a form; a nil length hides the length (a chunked body).
func serveBody(t *testing.T, h *harness, route, query string, body io.Reader) *httptest.ResponseRecorder {
	t.Helper()
	target := smaregiv1alpha1.ReceiverPathPrefix + route
	if query != "" {
		target += "?" + query
	}
	req := httptest.NewRequest(http.MethodPost, target, body)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.srv.Handler().ServeHTTP(rec, req)
	return rec
}

// TestKeyFoundAnywhereInTheForm: the raw scan for the key field decides as
// form.Get did on the decoded form: the body's first field of the name,
// else the query's, names and values percent-decoded, wherever it is and
// however the body arrives.
func TestKeyFoundAnywhereInTheForm(t *testing.T) {
	params := "params=" + url.QueryEscape(stockParams)
	escapedKey := ""
	for _, c := range []byte(keyA) {
		escapedKey += fmt.Sprintf("%%%02X", c)
	}
	// A body whose key field straddles the end of the prefix read first.
	pad := "pad=" + strings.Repeat("p", scanPrefix-len("pad=")-5)
	cases := []struct {
		name, query, body string
		want              int
	}{
		{"key first", "", "goqsystem_key=" + keyA + "&proc_name=stock_send&" + params, http.StatusOK},
		{"key in the middle", "", "proc_name=stock_send&goqsystem_key=" + keyA + "&" + params, http.StatusOK},
		{"key last", "", "proc_name=stock_send&" + params + "&goqsystem_key=" + keyA, http.StatusOK},
		{"empty fields around it", "", "&&proc_name=stock_send&&goqsystem_key=" + keyA + "&&" + params + "&&", http.StatusOK},
		{"name percent-encoded", "", "proc_name=stock_send&goqsystem%5Fkey=" + keyA + "&" + params, http.StatusOK},
		{"value percent-encoded", "", "proc_name=stock_send&goqsystem_key=" + escapedKey + "&" + params, http.StatusOK},
		{"key across the prefix", "", pad + "&goqsystem_key=" + keyA + "&proc_name=stock_send&" + params, http.StatusOK},
		{"first of two wins (right)", "", "goqsystem_key=" + keyA + "&goqsystem_key=wrong&proc_name=stock_send&" + params, http.StatusOK},
		{"first of two wins (wrong)", "", "goqsystem_key=wrong&goqsystem_key=" + keyA + "&proc_name=stock_send&" + params, http.StatusUnauthorized},
		{"body before query", "goqsystem_key=" + keyA, "goqsystem_key=wrong&proc_name=stock_send&" + params, http.StatusUnauthorized},
		{"query when the body has none", "goqsystem_key=" + keyA, "proc_name=stock_send&" + params, http.StatusOK},
		{"a longer name is not the key", "", "goqsystem_key2=" + keyA + "&proc_name=stock_send&" + params, http.StatusUnauthorized},
		{"a prefix of the name is not the key", "", "goqsystem_ke=" + keyA + "&proc_name=stock_send&" + params, http.StatusUnauthorized},
		{"name and value only as a value", "", "x=goqsystem_key%3D" + keyA + "&proc_name=stock_send&" + params, http.StatusUnauthorized},
		{"empty value", "", "goqsystem_key=&proc_name=stock_send&" + params, http.StatusUnauthorized},
		{"key with a longer value", "", "goqsystem_key=" + keyA + "x&proc_name=stock_send&" + params, http.StatusUnauthorized},
		{"bad escape in the key's value", "", "goqsystem_key=%zz&proc_name=stock_send&" + params, http.StatusBadRequest},
		{"bad escape elsewhere, after the key", "", "goqsystem_key=" + keyA + "&proc_name=stock_send&x=%zz&" + params, http.StatusBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			readers := map[string]func() io.Reader{
				"with length": func() io.Reader { return strings.NewReader(tc.body) },
				"chunked, a byte per read": func() io.Reader {
					return iotest.OneByteReader(io.MultiReader(strings.NewReader(tc.body)))
				},
			}
			for how, body := range readers {
				if rec := serveBody(t, h, routeA, tc.query, body()); rec.Code != tc.want {
					t.Errorf("%s: status %d, want %d: %s", how, rec.Code, tc.want, rec.Body.String())
				}
			}
			if used := h.srv.inflight.used; used != 0 {
				t.Errorf("%d bytes still reserved after the requests", used)
			}
		})
	}
}

// TestFormFieldCap: more fields than MaxFormFields, body and query
// together, are refused with 413 and a message naming the limit, key or
// no key; at the cap the send is accepted.
func TestFormFieldCap(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxFormFields = 5 })
	base := "goqsystem_key=" + keyA + "&proc_name=stock_send&params=" + url.QueryEscape(stockParams)
	if rec := serveBody(t, h, routeA, "a=1", strings.NewReader(base+"&b=2")); rec.Code != http.StatusOK {
		t.Fatalf("5 fields with a cap of 5: status %d, want 200: %s", rec.Code, rec.Body.String())
	}
	for name, tc := range map[string]struct{ query, body string }{
		"in the body":             {"", base + "&b=2&c=3&d=4"},
		"body and query together": {"a=1&c=3", base + "&b=2"},
		"in the query":            {"a=1&b=2&c=3&d=4&e=5&f=6", "goqsystem_key=" + keyA},
		"without a key":           {"", "a=1&b=2&c=3&d=4&e=5&f=6&" + base},
	} {
		rec := serveBody(t, h, routeA, tc.query, strings.NewReader(tc.body))
		var resp response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusRequestEntityTooLarge ||
			resp.Result != ResultTooLarge || !strings.Contains(resp.Message, "5 form fields") {
			t.Errorf("too many fields %s: status %d %q, want 413 naming the limit", name, rec.Code, rec.Body.String())
		}
	}
	if n := h.sink.Len(); n != 1 {
		t.Errorf("sink holds %d sends, want the one at the cap", n)
	}
}

// TestBytesInFlightCap: a send that would take the body bytes held for all
// requests past MaxInFlightBytes is answered 503 with Retry-After and
// hands on nothing; once the bytes are given back it is accepted.
func TestBytesInFlightCap(t *testing.T) {
	h := newHarness(t, nil)
	body := "goqsystem_key=" + keyA + "&proc_name=stock_send&params=" + url.QueryEscape(stockParams)
	// Other requests in flight hold all but a few bytes.
	held := h.srv.opts.MaxInFlightBytes - int64(len(body)) + 1
	if !h.srv.inflight.tryAcquire(held) {
		t.Fatal("cannot reserve the budget")
	}
	before := requests(ResultBusy)
	rec := serveBody(t, h, routeA, "", strings.NewReader(body))
	var resp response
	if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || rec.Code != http.StatusServiceUnavailable ||
		resp.Result != ResultBusy || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("over the budget: status %d %q Retry-After %q, want 503 busy with Retry-After",
			rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"))
	}
	if d := requests(ResultBusy) - before; d != 1 {
		t.Errorf("requests_total{result=busy} grew by %v, want 1", d)
	}
	if n := h.sink.Len(); n != 0 {
		t.Fatalf("sink holds %d sends after a busy answer", n)
	}
	if used := h.srv.inflight.used; used != held {
		t.Fatalf("%d bytes reserved after the refusal, want the %d held", used, held)
	}
	h.srv.inflight.release(held)
	if rec := serveBody(t, h, routeA, "", strings.NewReader(body)); rec.Code != http.StatusOK {
		t.Fatalf("within the budget: status %d %q, want 200", rec.Code, rec.Body.String())
	}
	if used := h.srv.inflight.used; used != 0 {
		t.Errorf("%d bytes still reserved after the requests", used)
	}
}

// TestChunkedBodyAtTheCap: a chunked body of exactly MaxBodyBytes, its key
// last, is read to its end and accepted, one byte more is 413; the bytes
// in flight never need more than MaxBodyBytes for it.
func TestChunkedBodyAtTheCap(t *testing.T) {
	const limit = 3 * scanPrefix
	h := newHarness(t, func(o *Options) { o.MaxBodyBytes = limit; o.MaxInFlightBytes = limit })
	head := "proc_name=stock_send&params=" + url.QueryEscape(stockParams) + "&pad="
	tail := "&goqsystem_key=" + keyA
	body := head + strings.Repeat("p", limit-len(head)-len(tail)) + tail
	if rec := serveBody(t, h, routeA, "", io.MultiReader(strings.NewReader(body))); rec.Code != http.StatusOK {
		t.Fatalf("chunked body of exactly the cap: status %d %q, want 200", rec.Code, rec.Body.String())
	}
	over := head + strings.Repeat("p", limit-len(head)-len(tail)+1) + tail
	if rec := serveBody(t, h, routeA, "", io.MultiReader(strings.NewReader(over))); rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked body a byte over the cap: status %d %q, want 413", rec.Code, rec.Body.String())
	}
	if used := h.srv.inflight.used; used != 0 {
		t.Errorf("%d bytes still reserved after the requests", used)
	}
}

// FuzzKeyScan: on any form url.ParseQuery reads without error, the raw scan
// finds the key exactly when the decoded form has it, with the digest of
// its first value, however the bytes arrive (all at once, or a byte at a
// time); so authenticating on the scan is authenticating on form.Get.
func FuzzKeyScan(f *testing.F) {
	for _, seed := range []string{
		"goqsystem_key=abc", "a=1&goqsystem_key=abc&b=2", "goqsystem%5Fkey=a%62c", "goqsystem_key=a+b&goqsystem_key=x",
		"&&goqsystem_key&", "goqsystem_key=", "x=goqsystem_key%3Dabc", "goqsystem_key=%zz&goqsystem_key=abc", "a;b=1&goqsystem_key=1",
		"params=1&goqsystem_key=2", "goqsystem+key=1",
	} {
		f.Add(seed, "goqsystem_key")
	}
	f.Add("params=1", "params")
	f.Add("a+b=1", "a b")
	f.Fuzz(func(t *testing.T, body, name string) {
		values, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		vs, want := values[name]
		want = want && name != "params"
		whole := keyScan{name: name}
		if err := whole.scan([]byte(body), true); err != nil {
			t.Fatalf("scan of a readable form: %v", err)
		}
		stepwise := keyScan{name: name}
		for i := 1; i <= len(body) && !stepwise.found; i++ {
			if err := stepwise.scan([]byte(body[:i]), i == len(body)); err != nil {
				t.Fatalf("stepwise scan of a readable form: %v", err)
			}
		}
		for how, s := range map[string]keyScan{"whole": whole, "stepwise": stepwise} {
			if s.found != want {
				t.Fatalf("%s: found %v, ParseQuery has %q: %v", how, s.found, name, want)
			}
			if want && s.sum != sha256.Sum256([]byte(vs[0])) {
				t.Fatalf("%s: digest is not that of the first value %q", how, vs[0])
			}
		}
	})
}
