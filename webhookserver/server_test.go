package webhookserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// failingSink refuses every send, like a store whose disk is full.
type failingSink struct{ calls int }

func (f *failingSink) Accept(context.Context, Send) error {
	f.calls++
	return errors.New("inventory store unavailable")
}

func TestRefusalsHandOnNothing(t *testing.T) {
	h := newHarness(t, func(o *Options) { o.MaxBodyBytes = 2048 })
	big := strings.Repeat("x", 4096)

	cases := []struct {
		name       string
		method     string
		path       string // appended to the server URL
		form       url.Values
		chunked    bool
		wantStatus int
		wantResult string
	}{
		{"unknown route", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + "no-such-route",
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA), false, http.StatusNotFound, ResultNotFound},
		{"outside the prefix", http.MethodPost, "/smaregi/v2/" + routeA,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA), false, http.StatusNotFound, ResultNotFound},
		{"nested path", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA + "/x",
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA), false, http.StatusNotFound, ResultNotFound},
		{"empty route", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA), false, http.StatusNotFound, ResultNotFound},
		{"GET", http.MethodGet, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			nil, false, http.StatusMethodNotAllowed, ResultMethodNotAllowed},
		{"PUT", http.MethodPut, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA), false, http.StatusMethodNotAllowed, ResultMethodNotAllowed},
		{"missing key", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, stockParams, "", ""), false, http.StatusUnauthorized, ResultUnauthorized},
		{"wrong key", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA+"x"), false, http.StatusUnauthorized, ResultUnauthorized},
		{"another store's key", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyB), false, http.StatusUnauthorized, ResultUnauthorized},
		{"right key under the default name when the store uses another", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeE,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyE), false, http.StatusUnauthorized, ResultUnauthorized},
		{"key Secret not made by the operator", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeF,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyF), false, http.StatusUnauthorized, ResultUnauthorized},
		{"labelled key Secret that no store controls (planted)", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeI,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyI), false, http.StatusUnauthorized, ResultUnauthorized},
		{"labelled key Secret controlled by another store", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeJ,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", keyJ), false, http.StatusUnauthorized, ResultUnauthorized},
		{"no key Secret yet", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeG,
			sendForm(ProcStockSend, stockParams, "goqsystem_key", ""+keyA), false, http.StatusUnauthorized, ResultUnauthorized},
		{"too large with Content-Length", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, big, "goqsystem_key", keyA), false, http.StatusRequestEntityTooLarge, ResultTooLarge},
		{"too large chunked", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, big, "goqsystem_key", keyA), true, http.StatusRequestEntityTooLarge, ResultTooLarge},
		{"missing proc_name", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm("", stockParams, "goqsystem_key", keyA), false, http.StatusBadRequest, ResultBadRequest},
		{"missing params", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, "", "goqsystem_key", keyA), false, http.StatusBadRequest, ResultBadRequest},
		{"params not JSON", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, `{"data":[`, "goqsystem_key", keyA), false, http.StatusBadRequest, ResultBadRequest},
		{"params data not an array", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcTransactionSend, `{"data":{"table_name":"Stock"}}`, "goqsystem_key", keyA), false, http.StatusBadRequest, ResultBadRequest},
		{"params without data", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, `{"rows":[]}`, "goqsystem_key", keyA), false, http.StatusBadRequest, ResultBadRequest},
		{"params nested value", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, `{"data":[{"table_name":"Stock","rows":[{"storeId":{"x":"1"}}]}]}`, "goqsystem_key", keyA), false, http.StatusBadRequest, ResultBadRequest},
		{"params trailing garbage", http.MethodPost, smaregiv1alpha1.ReceiverPathPrefix + routeA,
			sendForm(ProcStockSend, stockParams+"]", "goqsystem_key", keyA), false, http.StatusBadRequest, ResultBadRequest},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := requests(tc.wantResult)
			beforeObs := observations(t, tc.wantResult)
			var body io.Reader = strings.NewReader(tc.form.Encode())
			if tc.chunked {
				// Hiding the length makes the client send chunked, so only
				// the read cap can catch the size.
				body = io.MultiReader(body)
			}
			req, err := http.NewRequest(tc.method, h.http.URL+tc.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			got := do(t, req)
			if got.status != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", got.status, tc.wantStatus, got.body)
			}
			var resp response
			if err := json.Unmarshal([]byte(got.body), &resp); err != nil {
				t.Fatalf("body %q is not JSON: %v", got.body, err)
			}
			if resp.Result != tc.wantResult || resp.Message == "" {
				t.Errorf("body = %+v, want result %q with a reason", resp, tc.wantResult)
			}
			for _, secret := range []string{keyA, keyB, keyE, keyF, routeA, routeE, routeF} {
				if strings.Contains(got.body, secret) {
					t.Errorf("response %q carries a key or route", got.body)
				}
			}
			if tc.wantStatus == http.StatusMethodNotAllowed && got.header.Get("Allow") != http.MethodPost {
				t.Errorf("Allow = %q, want POST", got.header.Get("Allow"))
			}
			if n := h.sink.Len(); n != 0 {
				t.Errorf("sink holds %d sends after a refusal", n)
			}
			if d := requests(tc.wantResult) - before; d != 1 {
				t.Errorf("requests_total{result=%q} grew by %v, want 1", tc.wantResult, d)
			}
			if d := observations(t, tc.wantResult) - beforeObs; d != 1 {
				t.Errorf("duration histogram{result=%q} grew by %d, want 1", tc.wantResult, d)
			}
		})
	}
}

func TestSinkFailureAnswers503(t *testing.T) {
	sink := &failingSink{}
	h := newHarness(t, func(o *Options) { o.Sink = sink })
	before := requests(ResultSinkError)
	got := postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA))
	if got.status != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503 (body %q)", got.status, got.body)
	}
	if sink.calls != 1 {
		t.Errorf("sink called %d times, want 1", sink.calls)
	}
	if strings.Contains(got.body, "inventory store unavailable") {
		t.Errorf("response %q leaks the sink's error", got.body)
	}
	if d := requests(ResultSinkError) - before; d != 1 {
		t.Errorf("requests_total{result=sink_error} grew by %v, want 1", d)
	}

	// A full RecordingSink is a sink failure too, and keeps nothing more.
	full := newHarness(t, func(o *Options) { o.Sink = &RecordingSink{Limit: 1} })
	sinkOf := func() *RecordingSink { return full.srv.opts.Sink.(*RecordingSink) }
	if got := postForm(t, full.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA)); got.status != http.StatusOK {
		t.Fatalf("first send: status %d", got.status)
	}
	if got := postForm(t, full.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA)); got.status != http.StatusServiceUnavailable {
		t.Fatalf("send to a full sink: status %d, want 503", got.status)
	}
	if n := sinkOf().Len(); n != 1 {
		t.Errorf("full sink holds %d sends, want 1", n)
	}
}

func TestStockSendAcceptedParsedAndRouted(t *testing.T) {
	h := newHarness(t, nil)
	before := requests(ResultAccepted)
	got := postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA))
	if got.status != http.StatusOK {
		t.Fatalf("status = %d, body %q", got.status, got.body)
	}
	if d := requests(ResultAccepted) - before; d != 1 {
		t.Errorf("requests_total{result=accepted} grew by %v, want 1", d)
	}
	sends := h.sink.Sends()
	if len(sends) != 1 {
		t.Fatalf("sink holds %d sends, want 1", len(sends))
	}
	s := sends[0]
	sum := sha256.Sum256([]byte(nsShops + "\n" + "C1" + "\n" + ProcStockSend + "\n" + stockParams))
	var resp response
	if err := json.Unmarshal([]byte(got.body), &resp); err != nil {
		t.Fatal(err)
	}
	if resp.ID != s.ID || resp.Targets == nil || *resp.Targets != 2 {
		t.Errorf("response %+v does not name the send and its 2 targets", resp)
	}
	want := Send{
		ID:         hex.EncodeToString(sum[:]),
		Namespace:  nsShops,
		ContractID: "C1",
		Route:      types.NamespacedName{Namespace: nsShops, Name: "store-a"},
		ProcName:   ProcStockSend,
		StoreIDs:   []string{"1", "2"},
		Targets: []types.NamespacedName{
			{Namespace: nsShops, Name: "store-a"},
			{Namespace: nsShops, Name: "store-b"},
		},
		Rows:       2,
		ReceivedAt: testNow,
		Stock: []StockSendRow{
			{StoreID: "1", ProductID: "8000001", Amount: "-1", StockAmount: "2", LayawayStockAmount: "0",
				StockDivision: "02", UpdDateTime: "2026-11-26 09:01:21"},
			{StoreID: "2", ProductID: "8000002", Amount: "5", StockAmount: "12", LayawayStockAmount: "1",
				StockDivision: "05", ToStoreID: "2", UpdDateTime: "2026-11-26 09:01:22",
				Other: map[string]string{"memo": "入庫"}},
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("send =\n%+v\nwant\n%+v", s, want)
	}
}

func TestRoutingByStoreID(t *testing.T) {
	h := newHarness(t, nil)
	row := func(storeID string) string {
		if storeID == "" {
			return `{"productId":"8000001","stockAmount":"1"}`
		}
		return `{"storeId":"` + storeID + `","productId":"8000001","stockAmount":"1"}`
	}
	params := func(rows ...string) string {
		return `{"data":[{"table_name":"Stock","rows":[` + strings.Join(rows, ",") + `]}]}`
	}
	cases := []struct {
		name   string
		route  string
		key    string
		params string
		want   []string // store names in the route's namespace
	}{
		{"one store of the contract, sent through another's URL", routeA, keyA, params(row("2")), []string{"store-b"}},
		{"a store without a published route is still a target", routeB, keyB, params(row("3")), []string{"store-h"}},
		{"leading zeros do not matter", routeA, keyA, params(row("0001")), []string{"store-a"}},
		{"no storeId: every store of the contract in the namespace", routeA, keyA, params(row("")), []string{"store-a", "store-b", "store-h"}},
		{"no rows at all", routeA, keyA, `{"data":[]}`, []string{"store-a", "store-b", "store-h"}},
		{"a store nobody declared", routeA, keyA, params(row("99")), nil},
		{"same storeId in another contract stays there", routeC, keyC, params(row("1"), row("2")), []string{"store-c"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.sink.Reset()
			got := postForm(t, h.url(tc.route), sendForm(ProcStockSend, tc.params, "goqsystem_key", tc.key))
			if got.status != http.StatusOK {
				t.Fatalf("status = %d, body %q", got.status, got.body)
			}
			sends := h.sink.Sends()
			if len(sends) != 1 {
				t.Fatalf("sink holds %d sends, want 1", len(sends))
			}
			var names []string
			for _, tgt := range sends[0].Targets {
				if tgt.Namespace != nsShops {
					t.Errorf("target %s is outside the route's namespace", tgt)
				}
				names = append(names, tgt.Name)
			}
			if !reflect.DeepEqual(names, tc.want) {
				t.Errorf("targets = %v, want %v", names, tc.want)
			}
		})
	}
}

func TestTransactionSendAccepted(t *testing.T) {
	h := newHarness(t, nil)
	got := postForm(t, h.url(routeA), sendForm(ProcTransactionSend, transactionParams, "goqsystem_key", keyA))
	if got.status != http.StatusOK {
		t.Fatalf("status = %d, body %q", got.status, got.body)
	}
	sends := h.sink.Sends()
	if len(sends) != 1 {
		t.Fatalf("sink holds %d sends, want 1", len(sends))
	}
	s := sends[0]
	if s.ProcName != ProcTransactionSend || s.Rows != 4 || len(s.Stock) != 0 {
		t.Errorf("send = %+v", s)
	}
	if want := []string{"2"}; !reflect.DeepEqual(s.StoreIDs, want) {
		t.Errorf("StoreIDs = %v, want %v", s.StoreIDs, want)
	}
	if want := []types.NamespacedName{{Namespace: nsShops, Name: "store-b"}}; !reflect.DeepEqual(s.Targets, want) {
		t.Errorf("Targets = %v, want %v", s.Targets, want)
	}
	want := []TransactionHead{
		{
			TransactionHeadID: "101", TransactionDateTime: "2026-11-26 09:05:00", TransactionHeadDivision: "1",
			CancelDivision: "0", DisposeDivision: "0", StoreID: "2", Other: map[string]string{"total": "1100"},
			Details: []TransactionDetail{
				{TransactionHeadID: "101", TransactionDetailID: "1", TransactionDetailDivision: "1",
					ProductID: "8000001", ProductCode: "4901234567890", Quantity: "1"},
				{TransactionHeadID: "101", TransactionDetailID: "2", TransactionDetailDivision: "2",
					ProductID: "8000002", ProductCode: "4901234567891", Quantity: "-1"},
			},
		},
		{
			TransactionHeadID: "202", Synthesized: true,
			Details: []TransactionDetail{
				{TransactionHeadID: "202", TransactionDetailID: "1", TransactionDetailDivision: "1",
					ProductID: "8000003", Quantity: "2"},
			},
		},
	}
	if !reflect.DeepEqual(s.Transactions, want) {
		t.Errorf("Transactions =\n%+v\nwant\n%+v", s.Transactions, want)
	}
}

func TestKeyInQueryString(t *testing.T) {
	h := newHarness(t, nil)
	q := url.Values{"goqsystem_key": {keyA}}
	got := postForm(t, h.url(routeA)+"?"+q.Encode(), sendForm(ProcStockSend, stockParams, "", ""))
	if got.status != http.StatusOK {
		t.Fatalf("status = %d, body %q", got.status, got.body)
	}
	if h.sink.Len() != 1 {
		t.Fatalf("sink holds %d sends, want 1", h.sink.Len())
	}
	q = url.Values{"goqsystem_key": {keyB}}
	if got := postForm(t, h.url(routeA)+"?"+q.Encode(), sendForm(ProcStockSend, stockParams, "", "")); got.status != http.StatusUnauthorized {
		t.Fatalf("wrong key in the query: status = %d, want 401", got.status)
	}
}

func TestCustomParameterName(t *testing.T) {
	h := newHarness(t, nil)
	got := postForm(t, h.url(routeE), sendForm(ProcStockSend, stockParams, "shop_key", keyE))
	if got.status != http.StatusOK {
		t.Fatalf("status = %d, body %q", got.status, got.body)
	}
	if s := h.sink.Sends(); len(s) != 1 || s[0].ContractID != "C3" {
		t.Fatalf("sends = %+v", s)
	}
}

func TestPreviousKeyUntilExpiry(t *testing.T) {
	const oldKey = "key-A-old-0000000000"
	expires := testNow.Add(24 * time.Hour)
	objs := fixtureObjects()
	for _, o := range objs {
		if o.GetName() == "store-a-receiver-key" {
			o.SetAnnotations(map[string]string{smaregiv1alpha1.PreviousKeyExpiresAnnotation: expires.Format(time.RFC3339)})
			secretData(o)["goqsystem_key"+smaregiv1alpha1.PreviousKeySuffix] = []byte(oldKey)
		}
	}
	h := newHarness(t, nil, objs...)
	send := func(key string) int {
		t.Helper()
		return postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", key)).status
	}

	h.clock.SetTime(expires.Add(-time.Minute))
	if st := send(oldKey); st != http.StatusOK {
		t.Errorf("previous key before expiry: status %d, want 200", st)
	}
	if st := send(keyA); st != http.StatusOK {
		t.Errorf("current key during rotation: status %d, want 200", st)
	}
	h.clock.SetTime(expires)
	if st := send(oldKey); st != http.StatusUnauthorized {
		t.Errorf("previous key at expiry: status %d, want 401", st)
	}
	h.clock.SetTime(expires.Add(time.Second))
	if st := send(oldKey); st != http.StatusUnauthorized {
		t.Errorf("previous key after expiry: status %d, want 401", st)
	}
	if st := send(keyA); st != http.StatusOK {
		t.Errorf("current key after expiry: status %d, want 200", st)
	}
	if n := h.sink.Len(); n != 3 {
		t.Errorf("sink holds %d sends, want 3", n)
	}
}

func TestPreviousKeyWithoutReadableExpiryIsRefused(t *testing.T) {
	const oldKey = "key-A-old-1111111111"
	for name, annotations := range map[string]map[string]string{
		"no annotation":      nil,
		"unparseable expiry": {smaregiv1alpha1.PreviousKeyExpiresAnnotation: "tomorrow"},
	} {
		t.Run(name, func(t *testing.T) {
			objs := fixtureObjects()
			for _, o := range objs {
				if o.GetName() == "store-a-receiver-key" {
					o.SetAnnotations(annotations)
					secretData(o)["goqsystem_key"+smaregiv1alpha1.PreviousKeySuffix] = []byte(oldKey)
				}
			}
			h := newHarness(t, nil, objs...)
			if got := postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", oldKey)); got.status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", got.status)
			}
			if h.sink.Len() != 0 {
				t.Errorf("sink holds %d sends", h.sink.Len())
			}
		})
	}
}

func TestIgnoredProcNameCounted(t *testing.T) {
	h := newHarness(t, nil)
	before := requests(ResultIgnored)
	beforeAccepted := requests(ResultAccepted)
	beforeOther := sends(KindOther, PullNone)
	// Another send function switched on in Smaregi: any params at all.
	got := postForm(t, h.url(routeA), sendForm("product_send", `not even JSON`, "goqsystem_key", keyA))
	if got.status != http.StatusOK {
		t.Fatalf("status = %d, body %q", got.status, got.body)
	}
	if h.sink.Len() != 0 {
		t.Errorf("an ignored send reached the sink")
	}
	if d := requests(ResultIgnored) - before; d != 1 {
		t.Errorf("requests_total{result=ignored} grew by %v, want 1", d)
	}
	if d := requests(ResultAccepted) - beforeAccepted; d != 0 {
		t.Errorf("requests_total{result=accepted} grew by %v, want 0", d)
	}
	if d := sends(KindOther, PullNone) - beforeOther; d != 1 {
		t.Errorf("sends_total{kind=other,pull=none} grew by %v, want 1", d)
	}
	// An unknown proc_name is no way around the key.
	if got := postForm(t, h.url(routeA), sendForm("product_send", "", "goqsystem_key", "nope")); got.status != http.StatusUnauthorized {
		t.Errorf("ignored proc_name with a wrong key: status %d, want 401", got.status)
	}
}

func TestMetricsRegisteredWithoutSecrets(t *testing.T) {
	h := newHarness(t, nil)
	postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA))
	postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", "wrong"))
	n, err := testutil.GatherAndCount(metrics.Registry, "smaregi_receiver_requests_total", "smaregi_receiver_request_duration_seconds")
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * len(allResults); n != want {
		t.Errorf("registry holds %d receiver series, want %d (one per result and metric)", n, want)
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	for _, f := range families {
		text.WriteString(f.String())
	}
	for _, secret := range []string{keyA, routeA, "wrong"} {
		if strings.Contains(text.String(), secret) {
			t.Errorf("metrics carry %q", secret)
		}
	}
}

func TestLogsCarryNoKeyOrRoute(t *testing.T) {
	var logs bytes.Buffer
	logger := funcr.New(func(prefix, args string) { logs.WriteString(prefix + " " + args + "\n") }, funcr.Options{Verbosity: 10})
	h := newHarness(t, func(o *Options) { o.Log = logger; o.Sink = &failingSink{} })
	q := url.Values{"goqsystem_key": {keyA}}
	postForm(t, h.url(routeA)+"?"+q.Encode(), sendForm(ProcStockSend, stockParams, "", ""))
	postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyB))
	postForm(t, h.url(routeA), sendForm(ProcStockSend, `{"data":`, "goqsystem_key", keyA))
	postForm(t, h.url(routeA)+"?goqsystem_key=%zz", sendForm(ProcStockSend, stockParams, "", ""))
	postForm(t, h.url("unknown-route-xyz"), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA))
	postForm(t, h.url(routeF), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyF))
	// A "?" smuggled into the path as %3F, with a key after it.
	postForm(t, h.url(routeA+"%3Fgoqsystem_key="+keyB), sendForm(ProcStockSend, stockParams, "", ""))
	postForm(t, h.url(routeA)+"?proc_name=stock_send&goqsystem_key="+keyB, url.Values{"params": {stockParams}})
	if logs.Len() == 0 {
		t.Fatal("nothing was logged; the check below would prove nothing")
	}
	for _, secret := range []string{keyA, keyB, keyF, routeA, routeF, "unknown-route-xyz"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("logs carry %q:\n%s", secret, logs.String())
		}
	}
	// No log line carries a request's query (issue 9 §8).
	if strings.Contains(logs.String(), "?") {
		t.Errorf("logs carry a query string:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "store-a") {
		t.Errorf("logs do not name the store:\n%s", logs.String())
	}
}

func TestServeOverRealListenerAndShutDown(t *testing.T) {
	sink := &RecordingSink{}
	srv, err := New(Options{Reader: newFakeReader(t, fixtureObjects()...), Sink: sink, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if srv.NeedLeaderElection() {
		t.Error("NeedLeaderElection = true; every replica must serve")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()

	target := "http://" + ln.Addr().String() + smaregiv1alpha1.ReceiverPathPrefix + routeA
	if got := postForm(t, target, sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA)); got.status != http.StatusOK {
		t.Fatalf("status = %d, body %q", got.status, got.body)
	}
	if sink.Len() != 1 {
		t.Fatalf("sink holds %d sends, want 1", sink.Len())
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v after its context ended", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Post(target, "application/x-www-form-urlencoded", strings.NewReader("")); err == nil {
		t.Error("the listener still answers after shutdown")
	}
}

func TestStartReportsListenErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	srv, err := New(Options{BindAddress: ln.Addr().String(), Reader: newFakeReader(t), Sink: &RecordingSink{}, Log: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Errorf("Start on a taken address = %v, want a listen error", err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	r := newFakeReader(t)
	for name, o := range map[string]Options{
		"no reader":                    {Sink: &RecordingSink{}},
		"no sink":                      {Reader: r},
		"negative size":                {Reader: r, Sink: &RecordingSink{}, MaxBodyBytes: -1},
		"negative form fields":         {Reader: r, Sink: &RecordingSink{}, MaxFormFields: -1},
		"negative connections":         {Reader: r, Sink: &RecordingSink{}, MaxConnections: -1},
		"negative bytes in flight":     {Reader: r, Sink: &RecordingSink{}, MaxInFlightBytes: -1},
		"less in flight than one body": {Reader: r, Sink: &RecordingSink{}, MaxBodyBytes: 1 << 20, MaxInFlightBytes: 1<<20 - 1},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	s, err := New(Options{Reader: r, Sink: &RecordingSink{}})
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.MaxBodyBytes != DefaultMaxBodyBytes || s.opts.BindAddress != DefaultBindAddress || s.opts.ReadHeaderTimeout != DefaultReadHeaderTimeout ||
		s.opts.MaxFormFields != DefaultMaxFormFields || s.opts.MaxConnections != DefaultMaxConnections ||
		s.opts.MaxInFlightBytes != DefaultInFlightBodies*DefaultMaxBodyBytes || s.inflight.limit != s.opts.MaxInFlightBytes {
		t.Errorf("defaults not applied: %+v", s.opts)
	}
}

func TestSecretReaderReadsTheKeys(t *testing.T) {
	var stores, secrets []client.Object
	for _, o := range fixtureObjects() {
		if _, isSecret := o.(*corev1.Secret); isSecret {
			secrets = append(secrets, o)
		} else {
			stores = append(stores, o)
		}
	}
	h := newHarness(t, func(o *Options) { o.SecretReader = newFakeReader(t, secrets...) }, stores...)
	if got := postForm(t, h.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA)); got.status != http.StatusOK {
		t.Fatalf("status = %d, body %q", got.status, got.body)
	}
	// Without it, the Reader (which holds no Secrets here) is asked.
	h2 := newHarness(t, nil, stores...)
	if got := postForm(t, h2.url(routeA), sendForm(ProcStockSend, stockParams, "goqsystem_key", keyA)); got.status != http.StatusUnauthorized {
		t.Fatalf("status = %d, want 401 with no key Secret", got.status)
	}
}

// The dedupe key keeps a resend of the same send equal, and two shops whose
// sends happen to be byte-identical apart.
func TestSendIDSeparatesNamespacesAndContracts(t *testing.T) {
	base := sendID("shops", "C1", ProcStockSend, []byte(stockParams))
	if again := sendID("shops", "C1", ProcStockSend, []byte(stockParams)); again != base {
		t.Fatal("the same send got two IDs: a resend would not be recognised")
	}
	for _, other := range []string{
		sendID("shops", "C2", ProcStockSend, []byte(stockParams)),
		sendID("other", "C1", ProcStockSend, []byte(stockParams)),
		sendID("shops", "C1", ProcTransactionSend, []byte(stockParams)),
		sendID("shopsC1", "", ProcStockSend, []byte(stockParams)), // no ambiguity from concatenation
	} {
		if other == base {
			t.Fatal("two different shops' sends share a dedupe key")
		}
	}
}
