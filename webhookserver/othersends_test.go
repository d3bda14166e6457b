package webhookserver

import (
	"context"
	"net/http"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
)

func sends(kind, pull string) float64 {
	return testutil.ToFloat64(sendsTotal.WithLabelValues(kind, pull))
}

// otherParams builds the params of a send of another kind: one table of
// the given name whose rows are given as JSON objects.
func otherParams(table string, rows ...string) string {
	return `{"data":[{"table_name":"` + table + `","rows":[` + strings.Join(rows, ",") + `]}]}`
}

// A send of a kind the receiver does not parse is an edge: the stores of the
// contract it names are recorded as targets (marked dirty by the durable
// sink), its rows are not read as stock, and it is counted by kind. One that
// names no store of the contract, or whose params are unreadable, is
// answered 200 and counted, and reaches no sink.
func TestOtherKindsTriggerAPullOfTheStoresNamed(t *testing.T) {
	h := newHarness(t, nil)
	cases := []struct {
		name   string
		route  string
		key    string
		proc   string
		params string
		want   []string // target store names in nsShops; nil: nothing recorded
	}{
		{"a layaway naming one store, sent through another's URL", routeA, keyA, "layaway_send",
			otherParams("Layaway", `{"layawayId":"7","storeId":"2","productId":"8000001","quantity":"1"}`), []string{"store-b"}},
		{"a transfer names both its ends", routeA, keyA, "stock_move_send",
			otherParams("StorageInfo", `{"storageInfoId":"3","fromStoreId":"1","toStoreId":"0003","productId":"8000001","amount":"2"}`),
			[]string{"store-a", "store-h"}},
		{"tolerant spellings in any table", routeB, keyB, "loss_send",
			`{"data":[{"table_name":"Head","rows":[{"lossId":"1"}]},{"table_name":"Detail","rows":[{"STORE_ID":"2","quantity":"1"}]}]}`,
			[]string{"store-b"}},
		{"numbers where strings are documented", routeA, keyA, "stocktaking_send",
			otherParams("Stocktaking", `{"storeId":1,"status":"2"}`), []string{"store-a"}},
		{"stores of another contract stay out", routeC, keyC, "layaway_send",
			otherParams("Layaway", `{"storeId":"1"}`, `{"storeId":"2"}`), []string{"store-c"}},
		{"a stock_send's transfer columns are not read as more stores", routeA, keyA, ProcStockSend,
			otherParams(TableStock, `{"storeId":"1","productId":"8000001","stockAmount":"1","fromStoreId":"1","toStoreId":"2"}`),
			[]string{"store-a"}},
		{"no store named: nothing pulled", routeA, keyA, "product_send",
			otherParams("Product", `{"productId":"8000001","productName":"x"}`), nil},
		{"an empty storeId names no store", routeA, keyA, "product_send",
			otherParams("Product", `{"productId":"8000001","storeId":""}`), nil},
		{"no rows at all: nothing pulled", routeA, keyA, "layaway_send", `{"data":[]}`, nil},
		{"only stores nobody declared: nothing pulled", routeA, keyA, "layaway_send",
			otherParams("Layaway", `{"storeId":"99"}`), nil},
		{"unreadable params: answered, nothing pulled", routeA, keyA, "layaway_send", `not even JSON`, nil},
		{"no params: answered, nothing pulled", routeA, keyA, "layaway_send", ``, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h.sink.Reset()
			kind := sendKind(tc.proc)
			beforeStores, beforeNone := sends(kind, PullStores), sends(kind, PullNone)
			beforeAccepted, beforeIgnored := requests(ResultAccepted), requests(ResultIgnored)
			got := postForm(t, h.url(tc.route), sendForm(tc.proc, tc.params, "goqsystem_key", tc.key))
			if got.status != http.StatusOK {
				t.Fatalf("status = %d, body %q", got.status, got.body)
			}
			recorded := h.sink.Sends()
			if tc.want == nil {
				if len(recorded) != 0 {
					t.Fatalf("sink holds %d sends, want none: %+v", len(recorded), recorded)
				}
				if d := sends(kind, PullNone) - beforeNone; d != 1 {
					t.Errorf("sends_total{kind=%s,pull=none} grew by %v, want 1", kind, d)
				}
				if d := requests(ResultIgnored) - beforeIgnored; d != 1 {
					t.Errorf("requests_total{result=ignored} grew by %v, want 1", d)
				}
				return
			}
			if len(recorded) != 1 {
				t.Fatalf("sink holds %d sends, want 1", len(recorded))
			}
			s := recorded[0]
			var names []string
			for _, tgt := range s.Targets {
				if tgt.Namespace != nsShops {
					t.Errorf("target %s is outside the route's namespace", tgt)
				}
				names = append(names, tgt.Name)
			}
			if !reflect.DeepEqual(names, tc.want) {
				t.Errorf("targets = %v, want %v", names, tc.want)
			}
			if s.ProcName != tc.proc || s.ID == "" {
				t.Errorf("send proc %q id %q", s.ProcName, s.ID)
			}
			if kind == KindOther && (len(s.Stock) != 0 || len(s.Transactions) != 0) {
				t.Errorf("a send of another kind carried stock or transactions: %+v", s)
			}
			if d := sends(kind, PullStores) - beforeStores; d != 1 {
				t.Errorf("sends_total{kind=%s,pull=stores} grew by %v, want 1", kind, d)
			}
			if d := requests(ResultAccepted) - beforeAccepted; d != 1 {
				t.Errorf("requests_total{result=accepted} grew by %v, want 1", d)
			}
		})
	}
}

// The kind label is bounded: whatever proc_name a sender invents is
// counted as other.
func TestSendKindLabelIsBounded(t *testing.T) {
	for proc, want := range map[string]string{
		ProcStockSend: KindStockSend, ProcTransactionSend: KindTransactionSend,
		"layaway_send": KindOther, "Stock_Send": KindOther, strings.Repeat("x", 1000): KindOther,
	} {
		if got := sendKind(proc); got != want {
			t.Errorf("sendKind(%.20q) = %q, want %q", proc, got, want)
		}
	}
	h := newHarness(t, nil)
	postForm(t, h.url(routeA), sendForm("made_up_by_a_stranger", otherParams("X", `{"storeId":"1"}`), "goqsystem_key", keyA))
	n, err := testutil.GatherAndCount(metrics.Registry, "smaregi_receiver_sends_total")
	if err != nil {
		t.Fatal(err)
	}
	if n != 6 {
		t.Errorf("smaregi_receiver_sends_total has %d series, want 6 (3 kinds × 2 pulls)", n)
	}
}

// A send of another kind keeps the receiver's guarantees: the key first, a
// 2xx only once recorded, and the bounds.
func TestOtherKindsKeepTheGuarantees(t *testing.T) {
	params := otherParams("Layaway", `{"storeId":"1"}`)

	sink := &failingSink{}
	failing := newHarness(t, func(o *Options) { o.Sink = sink })
	if got := postForm(t, failing.url(routeA), sendForm("layaway_send", params, "goqsystem_key", keyA)); got.status != http.StatusServiceUnavailable {
		t.Errorf("sink failure: status %d, want 503", got.status)
	}
	if sink.calls != 1 {
		t.Errorf("sink called %d times, want 1", sink.calls)
	}

	h := newHarness(t, func(o *Options) { o.MaxRows = 2 })
	before := sends(KindOther, PullNone) + sends(KindOther, PullStores)
	if got := postForm(t, h.url(routeA), sendForm("layaway_send", params, "goqsystem_key", "wrong")); got.status != http.StatusUnauthorized {
		t.Errorf("wrong key: status %d, want 401", got.status)
	}
	if got := postForm(t, h.url(routeA), sendForm("layaway_send", otherParams("Layaway",
		`{"storeId":"1"}`, `{"storeId":"1"}`, `{"storeId":"1"}`), "goqsystem_key", keyA)); got.status != http.StatusRequestEntityTooLarge {
		t.Errorf("too many rows: status %d, want 413", got.status)
	}
	if h.sink.Len() != 0 {
		t.Errorf("a refused send reached the sink")
	}
	if d := sends(KindOther, PullNone) + sends(KindOther, PullStores) - before; d != 0 {
		t.Errorf("refused sends were counted as sends: %v", d)
	}
}

// Through the production sink, over a real HTTP server: a send of another
// kind marks the store it names dirty, which is what makes the sync engine
// pull it.
func TestOtherKindMarksTheStoreDirty(t *testing.T) {
	inv, err := boltstore.Open(filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	var noted []inventory.StoreKey
	h := newHarness(t, func(o *Options) {
		o.Sink = NewDurableSink(inv, func(k inventory.StoreKey, _ time.Time) { noted = append(noted, k) })
	})
	got := postForm(t, h.url(routeA), sendForm("stock_move_send",
		otherParams("StorageInfo", `{"fromStoreId":"2","toStoreId":"99","productId":"8000001"}`), "goqsystem_key", keyA))
	if got.status != http.StatusOK || !strings.Contains(got.body, `"accepted"`) {
		t.Fatalf("status %d body %q", got.status, got.body)
	}
	marks, err := inv.Dirty(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var marked []inventory.StoreKey
	for _, m := range marks {
		marked = append(marked, m.Key)
	}
	want := []inventory.StoreKey{{Namespace: nsShops, Name: "store-b"}}
	if !slices.Equal(marked, want) || !slices.Equal(noted, want) {
		t.Fatalf("dirty %v, noted %v, want %v", marked, noted, want)
	}
	recs, err := inv.RecentSends(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].ProcName != "stock_move_send" {
		t.Fatalf("recorded %+v, want the one send", recs)
	}
}
