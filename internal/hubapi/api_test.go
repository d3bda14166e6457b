package hubapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

var t0 = time.Date(2026, 11, 26, 0, 1, 21, 0, time.UTC)

// stockDoc is the stock answer as a client decodes it.
type stockDoc struct {
	Namespace        string      `json:"namespace"`
	Name             string      `json:"name"`
	ResourceVersion  string      `json:"resourceVersion"`
	SafetyStock      int64       `json:"safetyStock"`
	SKUs             int64       `json:"skus"`
	Watermark        *time.Time  `json:"watermark"`
	LastPullTime     *time.Time  `json:"lastPullTime"`
	LastFullSyncTime *time.Time  `json:"lastFullSyncTime"`
	Items            []stockItem `json:"items"`
}

type stockItem struct {
	ProductID          string     `json:"productId"`
	StockAmount        int64      `json:"stockAmount"`
	LayawayStockAmount int64      `json:"layawayStockAmount"`
	PendingAdjustment  int64      `json:"pendingAdjustment"`
	SafetyStock        int64      `json:"safetyStock"`
	Available          int64      `json:"available"`
	UpdDateTime        *time.Time `json:"updDateTime"`
}

func decodeStock(t *testing.T, r response) stockDoc {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("stock: got %d %s", r.code, r.body)
	}
	var d stockDoc
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("stock answer does not decode: %v\n%s", err, r.body)
	}
	return d
}

func decodeAdjustment(t *testing.T, r response, want int) AdjustmentResponse {
	t.Helper()
	if r.code != want {
		t.Fatalf("want %d, got %d %s", want, r.code, r.body)
	}
	var a AdjustmentResponse
	if err := json.Unmarshal(r.body, &a); err != nil {
		t.Fatalf("adjustment answer does not decode: %v\n%s", err, r.body)
	}
	return a
}

func TestViewerReadsStockButCannotAdjust(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.mem.put(f.key, inventory.Row{ProductID: "8000001", StockAmount: 5, UpdDateTime: t0})

	d := decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	if len(d.Items) != 1 || d.Items[0].ProductID != "8000001" || d.Items[0].Available != 5 {
		t.Fatalf("viewer's stock listing: %+v", d)
	}

	body := AdjustmentRequest{ID: "order-1", Lines: []RequestLine{{ProductID: "8000001", Quantity: -2}}}
	r := f.do("POST", f.path("/adjustments"), f.viewer, body)
	if r.code != http.StatusForbidden {
		t.Fatalf("viewer POST: want 403, got %d %s", r.code, r.body)
	}
	if e := r.errorBody(t); !strings.Contains(e.Message, "smaregistores/adjustments") || !strings.Contains(e.Message, AdjusterRole) {
		t.Errorf("403 should name the missing permission and the role that grants it (%s): %q", AdjusterRole, e.Message)
	}
	if n := f.mem.count(f.key); n != 0 {
		t.Fatalf("a forbidden POST stored %d adjustments", n)
	}
	if r := f.do("GET", f.path("/adjustments/order-1"), f.viewer, nil); r.code != http.StatusForbidden {
		t.Fatalf("viewer reading an adjustment: want 403, got %d", r.code)
	}
}

func TestCallerWithoutRoleIsForbidden(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	f.mem.put(f.key, inventory.Row{ProductID: "8000001", StockAmount: 5, UpdDateTime: t0})
	if r := f.do("GET", f.path("/stock"), f.nobody, nil); r.code != http.StatusForbidden {
		t.Fatalf("GET stock without a role: want 403, got %d %s", r.code, r.body)
	}
	body := AdjustmentRequest{ID: "order-1", Lines: []RequestLine{{ProductID: "8000001", Quantity: -2}}}
	if r := f.do("POST", f.path("/adjustments"), f.nobody, body); r.code != http.StatusForbidden {
		t.Fatalf("POST without a role: want 403, got %d %s", r.code, r.body)
	}
	if n := f.mem.count(f.key); n != 0 {
		t.Fatalf("a forbidden POST stored %d adjustments", n)
	}
	// A role in one namespace grants nothing in another.
	other := newFixture(t, fixtureOpts{})
	url := other.base + "/api/v1/namespaces/" + f.ns + "/smaregistores/" + f.store.Name + "/stock"
	if r := other.do("GET", url, other.adjuster, nil); r.code != http.StatusForbidden {
		t.Fatalf("adjuster of another namespace: want 403, got %d", r.code)
	}
}

func TestUnauthenticatedIs401AndTokensNeverLogged(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})
	f := newFixture(t, fixtureOpts{log: log})
	body := AdjustmentRequest{ID: "order-1", Lines: []RequestLine{{ProductID: "8000001", Quantity: -2}}}

	for name, auth := range map[string]string{
		"none":      "",
		"garbage":   "Bearer not-a-token",
		"basic":     "Basic " + f.adjuster,
		"empty":     "Bearer ",
		"truncated": "Bearer " + f.adjuster[:len(f.adjuster)-4],
	} {
		for _, method := range []string{"GET", "POST"} {
			req, err := http.NewRequest(method, f.path("/stock"), nil)
			if method == "POST" {
				data, _ := json.Marshal(body)
				req, err = http.NewRequest(method, f.path("/adjustments"), bytes.NewReader(data))
			}
			must(t, err)
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := f.client.Do(req)
			must(t, err)
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s: want 401, got %d %s", name, method, resp.StatusCode, data)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: 401 without a Bearer challenge", name, method)
			}
		}
	}
	if n := f.mem.count(f.key); n != 0 {
		t.Fatalf("unauthenticated POSTs stored %d adjustments", n)
	}
	// A forbidden request logs the user, never the token.
	f.do("POST", f.path("/adjustments"), f.viewer, body)
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "forbidden") {
		t.Fatalf("expected refusals in the log, got:\n%s", logs.String())
	}
	for _, tok := range []string{f.viewer, f.adjuster, f.adjuster[:len(f.adjuster)-4]} {
		if strings.Contains(logs.String(), tok) || strings.Contains(logs.String(), tok[len(tok)-20:]) {
			t.Fatal("a bearer token reached the log")
		}
	}
}

func TestUnknownStoreIs404(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	missing := f.base + "/api/v1/namespaces/" + f.ns + "/smaregistores/nowhere"
	if r := f.do("GET", missing+"/stock", f.adjuster, nil); r.code != http.StatusNotFound {
		t.Fatalf("unknown store: want 404, got %d %s", r.code, r.body)
	} else if e := r.errorBody(t); e.Error != reasonNotFound {
		t.Fatalf("unknown store: %+v", e)
	}
	body := AdjustmentRequest{ID: "order-1", Lines: []RequestLine{{ProductID: "8000001", Quantity: -2}}}
	if r := f.do("POST", missing+"/adjustments", f.adjuster, body); r.code != http.StatusNotFound {
		t.Fatalf("POST to unknown store: want 404, got %d %s", r.code, r.body)
	}
	if n := f.mem.count(inventory.StoreKey{Namespace: f.ns, Name: "nowhere"}); n != 0 {
		t.Fatal("POST to an unknown store stored an adjustment")
	}
	if r := f.do("GET", f.path("/adjustments/never"), f.adjuster, nil); r.code != http.StatusNotFound {
		t.Fatalf("unknown adjustment: want 404, got %d", r.code)
	}
	if r := f.do("GET", f.base+"/api/v1/elsewhere", f.adjuster, nil); r.code != http.StatusNotFound {
		t.Fatalf("unknown path: want 404, got %d", r.code)
	}
	if r := f.do("DELETE", f.path("/stock"), f.adjuster, nil); r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET" {
		t.Fatalf("DELETE stock: want 405 with Allow: GET, got %d %v", r.code, r.header)
	}
}

func TestAdjustmentIdempotency(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	f := newFixture(t, fixtureOpts{clock: clk})
	body := `{"id":"order-123","reason":"online order","lines":[{"productId":"8000001","quantity":-2},{"productId":"8000002","quantity":1}]}`

	first := decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster, body), http.StatusAccepted)
	if first.ID != "order-123" || first.State != AdjustmentPending || first.Reason != "online order" ||
		len(first.Lines) != 2 || !first.CreatedAt.Equal(t0) || first.AppliedAt != nil {
		t.Fatalf("first POST: %+v", first)
	}

	// Same meaning, other line order and spelling: a replay, answered 200
	// with the adjustment stored the first time.
	clk.Step(time.Minute)
	replay := `{"lines":[{"quantity":1,"productId":"8000002"},{"productId":"8000001","quantity":-2}],"reason":"online order","id":"order-123"}`
	again := decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster, replay), http.StatusOK)
	if !again.CreatedAt.Equal(first.CreatedAt) || again.State != AdjustmentPending {
		t.Fatalf("replay answered %+v, want the first adjustment", again)
	}

	for name, other := range map[string]string{
		"quantity": `{"id":"order-123","reason":"online order","lines":[{"productId":"8000001","quantity":-3},{"productId":"8000002","quantity":1}]}`,
		"reason":   `{"id":"order-123","reason":"another order","lines":[{"productId":"8000001","quantity":-2},{"productId":"8000002","quantity":1}]}`,
		"lines":    `{"id":"order-123","reason":"online order","lines":[{"productId":"8000001","quantity":-2}]}`,
	} {
		r := f.do("POST", f.path("/adjustments"), f.adjuster, other)
		if r.code != http.StatusConflict {
			t.Fatalf("different %s under the same id: want 409, got %d %s", name, r.code, r.body)
		}
		r.errorBody(t)
	}
	if n := f.mem.count(f.key); n != 1 {
		t.Fatalf("want exactly one stored adjustment, have %d", n)
	}
	stored, _, _ := f.mem.GetAdjustment(context.Background(), f.key, "order-123")
	if stored.Lines[0] != (AdjustmentLine{ProductID: "8000001", Quantity: -2}) || stored.Lines[1] != (AdjustmentLine{ProductID: "8000002", Quantity: 1}) {
		t.Fatalf("stored lines: %+v", stored.Lines)
	}

	// Reading it back follows its state.
	got := decodeAdjustment(t, f.do("GET", f.path("/adjustments/order-123"), f.adjuster, nil), http.StatusOK)
	if got.State != AdjustmentPending || got.AwaitingConfirmation {
		t.Fatalf("GET: %+v", got)
	}
	// Sent, outcome not known yet (the pusher's open attempt carries it):
	// still pending, and the answer says so.
	stored.AwaitingConfirmation = true
	f.mem.setAdjustment(stored)
	r := f.do("GET", f.path("/adjustments/order-123"), f.adjuster, nil)
	if got = decodeAdjustment(t, r, http.StatusOK); got.State != AdjustmentPending || !got.AwaitingConfirmation ||
		!strings.Contains(string(r.body), `"awaitingConfirmation":true`) {
		t.Fatalf("GET while awaiting confirmation: %s", r.body)
	}
	stored.AwaitingConfirmation = false
	stored.State, stored.AppliedAt = AdjustmentApplied, t0.Add(2*time.Second)
	f.mem.setAdjustment(stored)
	got = decodeAdjustment(t, f.do("GET", f.path("/adjustments/order-123"), f.adjuster, nil), http.StatusOK)
	if got.State != AdjustmentApplied || got.AppliedAt == nil || !got.AppliedAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("applied adjustment: %+v", got)
	}
	stored.State, stored.AppliedAt, stored.FailureReason = AdjustmentFailed, time.Time{}, "smaregi error_code 41 (invalid input data)"
	f.mem.setAdjustment(stored)
	got = decodeAdjustment(t, f.do("GET", f.path("/adjustments/order-123"), f.adjuster, nil), http.StatusOK)
	if got.State != AdjustmentFailed || got.FailureReason != stored.FailureReason || got.AppliedAt != nil {
		t.Fatalf("failed adjustment: %+v", got)
	}
	// A replay of a failed adjustment still returns it, not a new one.
	again = decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster, body), http.StatusOK)
	if again.State != AdjustmentFailed {
		t.Fatalf("replay after failure: %+v", again)
	}
}

func TestInvalidAdjustmentsStoreNothing(t *testing.T) {
	f := newFixture(t, fixtureOpts{maxBody: 64 << 10})
	line := func(q string) string {
		return `{"id":"o-1","lines":[{"productId":"8000001","quantity":` + q + `}]}`
	}
	many := make([]RequestLine, MaxLines+1)
	for i := range many {
		many[i] = RequestLine{ProductID: fmt.Sprint(8000001 + i), Quantity: 1}
	}
	manyBody, _ := json.Marshal(AdjustmentRequest{ID: "o-1", Lines: many})
	huge := `{"id":"o-1","reason":"` + strings.Repeat("x", 70<<10) + `","lines":[{"productId":"8000001","quantity":1}]}`

	cases := []struct {
		name  string
		body  string
		ctype string
		code  int
		field string // a details field the answer must name
	}{
		{"malformed JSON", `{"id":"o-1",`, "", 400, ""},
		{"not an object", `[1,2]`, "", 400, ""},
		{"unknown field", `{"id":"o-1","lines":[{"productId":"8000001","quantity":1}],"store":"x"}`, "", 400, ""},
		{"unknown line field", `{"id":"o-1","lines":[{"productId":"8000001","qty":1}]}`, "", 400, ""},
		{"trailing data", line("1") + `{}`, "", 400, ""},
		{"fractional quantity", line("1.5"), "", 400, ""},
		{"quantity beyond int64", line("99999999999999999999"), "", 400, ""},
		{"quantity as string", line(`"1"`), "", 400, ""},
		{"empty body", ``, "", 400, ""},
		{"oversized body", huge, "", 413, ""},
		{"form body", `id=o-1`, "application/x-www-form-urlencoded", 415, ""},
		{"zero quantity", line("0"), "", 422, "lines[0].quantity"},
		{"absurd quantity", line("1000001"), "", 422, "lines[0].quantity"},
		{"absurd negative quantity", line("-1000001"), "", 422, "lines[0].quantity"},
		{"no id", `{"lines":[{"productId":"8000001","quantity":1}]}`, "", 422, "id"},
		{"id with slash", `{"id":"a/b","lines":[{"productId":"8000001","quantity":1}]}`, "", 422, "id"},
		{"id too long", `{"id":"` + strings.Repeat("a", 129) + `","lines":[{"productId":"8000001","quantity":1}]}`, "", 422, "id"},
		{"no lines", `{"id":"o-1","lines":[]}`, "", 422, "lines"},
		{"too many lines", string(manyBody), "", 422, "lines"},
		{"productId not digits", `{"id":"o-1","lines":[{"productId":"80x","quantity":1}]}`, "", 422, "lines[0].productId"},
		{"productId too long", `{"id":"o-1","lines":[{"productId":"1234567890123456","quantity":1}]}`, "", 422, "lines[0].productId"},
		{"no product", `{"id":"o-1","lines":[{"quantity":1}]}`, "", 422, "lines[0]"},
		{"id and code", `{"id":"o-1","lines":[{"productId":"1","productCode":"49","quantity":1}]}`, "", 422, "lines[0]"},
		{"duplicate product", `{"id":"o-1","lines":[{"productId":"8000001","quantity":1},{"productId":"8000001","quantity":2}]}`, "", 422, "lines[1]"},
		{"reason too long", `{"id":"o-1","reason":"` + strings.Repeat("あ", 257) + `","lines":[{"productId":"8000001","quantity":1}]}`, "", 422, "reason"},
		{"reason with control", `{"id":"o-1","reason":"a\u0007b","lines":[{"productId":"8000001","quantity":1}]}`, "", 422, "reason"},
		{"code without resolver", `{"id":"o-1","lines":[{"productCode":"4901234567890","quantity":1}]}`, "", 422, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest("POST", f.path("/adjustments"), strings.NewReader(c.body))
			must(t, err)
			req.Header.Set("Authorization", "Bearer "+f.adjuster)
			ct := c.ctype
			if ct == "" {
				ct = "application/json; charset=utf-8"
			}
			req.Header.Set("Content-Type", ct)
			resp, err := f.client.Do(req)
			must(t, err)
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			r := response{code: resp.StatusCode, header: resp.Header, body: data}
			if r.code != c.code {
				t.Fatalf("want %d, got %d %s", c.code, r.code, r.body)
			}
			e := r.errorBody(t)
			if c.field != "" {
				found := false
				for _, d := range e.Details {
					found = found || d.Field == c.field
				}
				if !found {
					t.Fatalf("answer does not name field %s: %s", c.field, r.body)
				}
			}
			if n := f.mem.count(f.key); n != 0 {
				t.Fatalf("an invalid request stored %d adjustments", n)
			}
		})
	}
}

func TestAvailability(t *testing.T) {
	f := newFixture(t, fixtureOpts{safetyStock: 2})
	pull, full := t0.Add(time.Minute), t0.Add(-time.Hour)
	f.mem.put(f.key,
		inventory.Row{ProductID: "8000001", StockAmount: 10, LayawayStockAmount: 1, UpdDateTime: t0}, // 10-1-2 = 7, pending -3 → 4
		inventory.Row{ProductID: "8000002", StockAmount: 3, UpdDateTime: t0},                         // 3-0-2 = 1, pending -5 → 0 (floor)
		inventory.Row{ProductID: "8000003", StockAmount: 4, UpdDateTime: t0},                         // 2, pending +5 not counted
		inventory.Row{ProductID: "8000004", StockAmount: 1, UpdDateTime: t0},                         // 1-2, applied -1 not yet pulled → 0 (floor)
		inventory.Row{ProductID: "8000005", StockAmount: 6, LayawayStockAmount: 6, UpdDateTime: t0},  // 6-6-2 → 0
		inventory.Row{ProductID: "8000006", StockAmount: 9, UpdDateTime: t0},                         // 7, pending -4 counted, +4 not → 3
	)
	f.mem.setSummary(f.key, inventory.Summary{SKUs: 6, Watermark: t0, LastPull: pull, LastFullSync: full})
	post := func(id string, lines ...RequestLine) {
		t.Helper()
		decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster, AdjustmentRequest{ID: id, Lines: lines}), http.StatusAccepted)
	}
	post("a1", RequestLine{ProductID: "8000001", Quantity: -3}, RequestLine{ProductID: "8000002", Quantity: -5})
	post("a2", RequestLine{ProductID: "8000003", Quantity: 5}, RequestLine{ProductID: "8000006", Quantity: -4})
	post("a3", RequestLine{ProductID: "8000006", Quantity: 4})
	// An applied adjustment still counts until a pull that started after it
	// was applied marks it reflected.
	post("a4", RequestLine{ProductID: "8000004", Quantity: -1})
	a4, _, _ := f.mem.GetAdjustment(context.Background(), f.key, "a4")
	a4.State = AdjustmentApplied
	f.mem.setAdjustment(a4)

	d := decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	if d.Namespace != f.ns || d.Name != "shibuya" || d.SafetyStock != 2 || d.SKUs != 6 ||
		d.Watermark == nil || !d.Watermark.Equal(t0) || d.LastPullTime == nil || !d.LastPullTime.Equal(pull) ||
		d.LastFullSyncTime == nil || !d.LastFullSyncTime.Equal(full) {
		t.Fatalf("freshness: %+v", d)
	}
	want := map[string]int64{"8000001": 4, "8000002": 0, "8000003": 2, "8000004": 0, "8000005": 0, "8000006": 3}
	if len(d.Items) != len(want) {
		t.Fatalf("want %d items, got %+v", len(want), d.Items)
	}
	for i, it := range d.Items {
		if i > 0 && d.Items[i-1].ProductID >= it.ProductID {
			t.Errorf("items not in product ID order: %s after %s", it.ProductID, d.Items[i-1].ProductID)
		}
		if it.Available != want[it.ProductID] {
			t.Errorf("%s: available %d, want %d (%+v)", it.ProductID, it.Available, want[it.ProductID], it)
		}
		if it.UpdDateTime == nil || !it.UpdDateTime.Equal(t0) {
			t.Errorf("%s: updDateTime %v", it.ProductID, it.UpdDateTime)
		}
	}
	if d.Items[0].StockAmount != 10 || d.Items[0].LayawayStockAmount != 1 || d.Items[0].PendingAdjustment != -3 {
		t.Errorf("row fields: %+v", d.Items[0])
	}

	one := decodeStock(t, f.do("GET", f.path("/stock?productId=8000002"), f.viewer, nil))
	if len(one.Items) != 1 || one.Items[0].ProductID != "8000002" || one.Items[0].Available != 0 || one.Items[0].PendingAdjustment != -5 {
		t.Fatalf("one product: %+v", one.Items)
	}
	if none := decodeStock(t, f.do("GET", f.path("/stock?productId=8009999"), f.viewer, nil)); len(none.Items) != 0 {
		t.Fatalf("product without a row: %+v", none.Items)
	}
	for _, q := range []string{"?productId=abc", "?productId=", "?productId=1&productId=2", "?limit=5"} {
		if r := f.do("GET", f.path("/stock"+q), f.viewer, nil); r.code != http.StatusBadRequest {
			t.Errorf("GET stock%s: want 400, got %d", q, r.code)
		}
	}
	// An empty mirror is an empty list with null times, not an error.
	g := newFixture(t, fixtureOpts{})
	empty := decodeStock(t, g.do("GET", g.path("/stock"), g.viewer, nil))
	if len(empty.Items) != 0 || empty.LastPullTime != nil || empty.Watermark != nil || empty.SKUs != 0 {
		t.Fatalf("empty mirror: %+v", empty)
	}
}

func TestAvailableFunction(t *testing.T) {
	for _, c := range []struct {
		stock, layaway, safety, pending, want int64
	}{
		{10, 0, 0, 0, 10},
		{10, 3, 2, 0, 5},
		{10, 3, 2, -4, 1},
		{10, 3, 2, -6, 0},
		{10, 3, 2, 7, 5},
		{-2, 0, 0, 0, 0}, // Smaregi allows negative stock
		{0, 0, 5, 0, 0},
	} {
		got := Available(inventory.Row{StockAmount: c.stock, LayawayStockAmount: c.layaway}, c.safety, c.pending)
		if got != c.want {
			t.Errorf("Available(stock %d, layaway %d, safety %d, pending %d) = %d, want %d",
				c.stock, c.layaway, c.safety, c.pending, got, c.want)
		}
	}
}

func TestListingAbortsOnStoreFailure(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	for i := range 5000 {
		f.mem.put(f.key, inventory.Row{ProductID: fmt.Sprint(8000001 + i), StockAmount: 1, UpdDateTime: t0})
	}
	f.mem.failRowsAfter = 4000
	req, _ := http.NewRequest("GET", f.path("/stock"), nil)
	req.Header.Set("Authorization", "Bearer "+f.viewer)
	resp, err := f.client.Do(req)
	must(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		var d stockDoc
		if json.Unmarshal(data, &d) == nil {
			t.Fatalf("a failed listing must not parse as a complete answer; got %d items", len(d.Items))
		}
	}
}

// countingAuthn and countingAuthz pass every call to the real API server and
// count them, to show that the cache saves calls.
type countingAuthn struct {
	authnv1client.TokenReviewInterface
	mu sync.Mutex
	n  int
}

func (c *countingAuthn) Create(ctx context.Context, tr *authnv1.TokenReview, o metav1.CreateOptions) (*authnv1.TokenReview, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.TokenReviewInterface.Create(ctx, tr, o)
}

func (c *countingAuthn) calls() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

type countingAuthz struct {
	authzv1client.SubjectAccessReviewInterface
	mu sync.Mutex
	n  int
}

func (c *countingAuthz) Create(ctx context.Context, sar *authzv1.SubjectAccessReview, o metav1.CreateOptions) (*authzv1.SubjectAccessReview, error) {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
	return c.SubjectAccessReviewInterface.Create(ctx, sar, o)
}

func (c *countingAuthz) calls() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func TestReviewsAreCachedBriefly(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	authn := &countingAuthn{TokenReviewInterface: clientset.AuthenticationV1().TokenReviews()}
	authz := &countingAuthz{SubjectAccessReviewInterface: clientset.AuthorizationV1().SubjectAccessReviews()}
	f := newFixture(t, fixtureOpts{clock: clk, authn: authn, authz: authz})

	for range 5 {
		decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	}
	if authn.calls() != 1 || authz.calls() != 1 {
		t.Fatalf("5 reads within the TTL cost %d TokenReviews and %d SubjectAccessReviews, want 1 and 1", authn.calls(), authz.calls())
	}
	// Another permission of the same caller is a new decision; the token is
	// still known.
	f.do("POST", f.path("/adjustments"), f.viewer, AdjustmentRequest{ID: "x", Lines: []RequestLine{{ProductID: "1", Quantity: 1}}})
	if authn.calls() != 1 || authz.calls() != 2 {
		t.Fatalf("after a POST: %d TokenReviews, %d SubjectAccessReviews, want 1 and 2", authn.calls(), authz.calls())
	}
	// Rejected tokens are cached too, so a misconfigured client hammering
	// with a bad token does not hammer the API server.
	for range 3 {
		f.do("GET", f.path("/stock"), "bad-token", nil)
	}
	if authn.calls() != 2 {
		t.Fatalf("3 requests with one bad token cost %d TokenReviews in total, want 2", authn.calls())
	}
	clk.Step(DefaultReviewCacheTTL + time.Second)
	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	if authn.calls() != 3 || authz.calls() != 3 {
		t.Fatalf("after the TTL: %d TokenReviews, %d SubjectAccessReviews, want 3 and 3", authn.calls(), authz.calls())
	}
}

// A caller that keeps calling has its reviews renewed in the background in
// the last quarter of their TTL, so it never waits for one; the renewed
// answer is a new review (a revoked token stops working on time).
func TestReviewsOfABusyCallerAreRenewedAhead(t *testing.T) {
	clk := testingclock.NewFakeClock(t0)
	authn := &countingAuthn{TokenReviewInterface: clientset.AuthenticationV1().TokenReviews()}
	authz := &countingAuthz{SubjectAccessReviewInterface: clientset.AuthorizationV1().SubjectAccessReviews()}
	f := newFixture(t, fixtureOpts{clock: clk, authn: authn, authz: authz})

	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	clk.Step(DefaultReviewCacheTTL / 2)
	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	if authn.calls() != 1 || authz.calls() != 1 {
		t.Fatalf("a read at half the TTL cost %d TokenReviews and %d SubjectAccessReviews in all, want 1 and 1", authn.calls(), authz.calls())
	}
	clk.Step(DefaultReviewCacheTTL * 3 / 10) // now at 80% of the TTL
	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	deadline := time.Now().Add(10 * time.Second)
	for authn.calls() != 2 || authz.calls() != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no renewal in the last quarter of the TTL: %d TokenReviews, %d SubjectAccessReviews", authn.calls(), authz.calls())
		}
		time.Sleep(time.Millisecond)
	}
	// Past the first answers' expiry the renewed ones serve, uncalled.
	clk.Step(DefaultReviewCacheTTL * 4 / 10)
	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	if authn.calls() != 2 || authz.calls() != 2 {
		t.Fatalf("after the first answers expired: %d TokenReviews, %d SubjectAccessReviews, want 2 and 2 (renewed)", authn.calls(), authz.calls())
	}
}

func TestMetricsUseRouteTemplates(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	before := testutil.ToFloat64(requestsTotal.WithLabelValues(RouteStock, "GET", "200"))
	beforeForbidden := testutil.ToFloat64(requestsTotal.WithLabelValues(RouteAdjustments, "POST", "403"))
	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	f.do("POST", f.path("/adjustments"), f.viewer, AdjustmentRequest{ID: "x", Lines: []RequestLine{{ProductID: "1", Quantity: 1}}})
	if got := testutil.ToFloat64(requestsTotal.WithLabelValues(RouteStock, "GET", "200")) - before; got != 1 {
		t.Fatalf("stock 200 counter moved by %v, want 1", got)
	}
	if got := testutil.ToFloat64(requestsTotal.WithLabelValues(RouteAdjustments, "POST", "403")) - beforeForbidden; got != 1 {
		t.Fatalf("adjustments 403 counter moved by %v, want 1", got)
	}
	families, err := metrics.Registry.Gather()
	must(t, err)
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "smaregi_hubapi_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetValue(), f.ns) || strings.Contains(l.GetValue(), f.viewer[:20]) {
					t.Fatalf("metric %s carries a request-specific label %s=%q", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestServeShutsDownGracefully(t *testing.T) {
	srv, err := New(Options{Reader: k8s, Authn: clientset.AuthenticationV1().TokenReviews(),
		Authz: clientset.AuthorizationV1().SubjectAccessReviews(), Store: newMemStore(), BindAddress: "127.0.0.1:0"})
	must(t, err)
	if srv.NeedLeaderElection() {
		t.Fatal("the hub API must run on every replica")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Start(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Start after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Start did not return after its context ended")
	}
	for _, o := range []Options{{}, {Reader: k8s}, {Reader: k8s, Authn: clientset.AuthenticationV1().TokenReviews()}} {
		if _, err := New(o); err == nil {
			t.Fatalf("New(%+v) accepted missing dependencies", o)
		}
	}
}

func TestConcurrentSubmitsOfOneIDStoreOne(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	body := AdjustmentRequest{ID: "race", Lines: []RequestLine{{ProductID: "8000001", Quantity: -1}}}
	const n = 8
	codes := make(chan int, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			data, _ := json.Marshal(body)
			req, _ := http.NewRequest("POST", f.path("/adjustments"), bytes.NewReader(data))
			req.Header.Set("Authorization", "Bearer "+f.adjuster)
			resp, err := f.client.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	count := map[int]int{}
	for c := range codes {
		count[c]++
	}
	if count[http.StatusAccepted] != 1 || count[http.StatusOK] != n-1 {
		t.Fatalf("want one 202 and %d 200s, got %v", n-1, count)
	}
	if f.mem.count(f.key) != 1 {
		t.Fatalf("stored %d adjustments", f.mem.count(f.key))
	}
}

// TestStoreBeingDeletedRefusesAdjustments: the operator removes the data of a
// deleted SmaregiStore, pending adjustments included, so one accepted while
// the store is being deleted would never be pushed. POST answers 409; reads
// stay allowed until the object is gone.
func TestStoreBeingDeletedRefusesAdjustments(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	ctx := context.Background()
	f.mem.put(f.key, inventory.Row{ProductID: "8000001", StockAmount: 5, UpdDateTime: t0})
	decodeAdjustment(t, f.do("POST", f.path("/adjustments"), f.adjuster,
		AdjustmentRequest{ID: "before", Lines: []RequestLine{{ProductID: "8000001", Quantity: -1}}}), http.StatusAccepted)

	// A finalizer keeps the object in deletion.
	const finalizer = "test.smaregi.stocksync.io/hold"
	f.store.Finalizers = append(f.store.Finalizers, finalizer)
	must(t, k8s.Update(ctx, f.store))
	must(t, k8s.Delete(ctx, f.store))
	t.Cleanup(func() {
		must(t, k8s.Get(ctx, client.ObjectKeyFromObject(f.store), f.store))
		f.store.Finalizers = nil
		must(t, k8s.Update(ctx, f.store))
	})

	body := AdjustmentRequest{ID: "after", Lines: []RequestLine{{ProductID: "8000001", Quantity: -2}}}
	r := f.do("POST", f.path("/adjustments"), f.adjuster, body)
	if r.code != http.StatusConflict {
		t.Fatalf("POST to a store being deleted: want 409, got %d %s", r.code, r.body)
	}
	if e := r.errorBody(t); e.Error != reasonConflict || !strings.Contains(e.Message, "being deleted; its adjustments could not be applied") {
		t.Fatalf("409 without a clear message: %+v", e)
	}
	// A replay of the earlier one is refused too: nothing new is promised.
	if r := f.do("POST", f.path("/adjustments"), f.adjuster,
		AdjustmentRequest{ID: "before", Lines: []RequestLine{{ProductID: "8000001", Quantity: -1}}}); r.code != http.StatusConflict {
		t.Fatalf("replay to a store being deleted: want 409, got %d %s", r.code, r.body)
	}
	if n := f.mem.count(f.key); n != 1 {
		t.Fatalf("%d adjustments stored, want only the one from before the deletion", n)
	}
	// Reads stay allowed.
	if d := decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil)); len(d.Items) != 1 || d.Items[0].PendingAdjustment != -1 {
		t.Fatalf("stock of a store being deleted: %+v", d)
	}
	if a := decodeAdjustment(t, f.do("GET", f.path("/adjustments/before"), f.adjuster, nil), http.StatusOK); a.ID != "before" {
		t.Fatalf("adjustment of a store being deleted: %+v", a)
	}
	// Rights are still checked first: a viewer learns nothing new.
	if r := f.do("POST", f.path("/adjustments"), f.viewer, body); r.code != http.StatusForbidden {
		t.Fatalf("viewer POST to a store being deleted: want 403, got %d", r.code)
	}
}
