package webhookserver

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// The fixture: contract C1 has stores 1 (store-a) and 2 (store-b) in
// namespace shops, contract C2 has store 1 (store-c) in shops, and contract
// C1 also has a store-d in namespace other, which must never receive a
// send that came through shops.
const (
	nsShops = "shops"
	nsOther = "other"

	routeA = "6f1c0e1a-route-a"
	routeB = "9b2d44c3-route-b"
	routeC = "0a7e19d2-route-c"
	routeD = "c3f8a0b5-route-d"
	routeE = "e5d1c2b0-route-e" // custom parameter name
	routeF = "f0f0a1a1-route-f" // key Secret not labelled as ours
	routeG = "a9a9b8b8-route-g" // no key Secret yet
	routeI = "d4d4e5e5-route-i" // labelled key Secret without an owner (planted)
	routeJ = "b7b7c6c6-route-j" // labelled key Secret owned by another store

	keyA = "key-A-7Qm2vJ9xR4tL8wZ1"
	keyB = "key-B-3Hn6pK2sD8fG5yU0"
	keyC = "key-C-1Aa2Bb3Cc4Dd5Ee6"
	keyD = "key-D-9Zz8Yy7Xx6Ww5Vv4"
	keyE = "key-E-5Rr4Ss3Tt2Uu1Vv0"
	keyF = "key-F-0Pp9Oo8Ii7Uu6Yy5"
	keyI = "key-I-2Ll3Kk4Jj5Hh6Gg7"
	keyJ = "key-J-8Mm7Nn6Bb5Vv4Cc3"
)

var testNow = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := smaregiv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func store(ns, name, contract, storeID, route string) *smaregiv1alpha1.SmaregiStore {
	return &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(route)},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{
			ContractID:     contract,
			StoreID:        storeID,
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: name + "-token"},
		},
		Status: smaregiv1alpha1.SmaregiStoreStatus{Receiver: &smaregiv1alpha1.ReceiverStatus{
			RouteID:       route,
			URL:           "https://receiver.example.test" + smaregiv1alpha1.ReceiverPathPrefix + route,
			ParameterName: smaregiv1alpha1.DefaultReceiverParameterName,
		}},
	}
}

// keySecret is a key Secret as the controller makes it: labelled, and
// controlled by the store whose UID is ownerUID (the fixture's stores have
// their route as UID).
func keySecret(ns, storeName, ownerUID, param, key string) *corev1.Secret {
	yes := true
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: storeName + "-receiver-key",
			Labels: map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: smaregiv1alpha1.GroupVersion.String(), Kind: "SmaregiStore",
				Name: storeName, UID: types.UID(ownerUID), Controller: &yes, BlockOwnerDeletion: &yes,
			}},
		},
		Data: map[string][]byte{param: []byte(key)},
	}
}

func fixtureObjects() []client.Object {
	e := store(nsShops, "store-e", "C3", "1", routeE)
	e.Spec.Receiver.ParameterName = "shop_key"
	e.Status.Receiver.ParameterName = "shop_key"
	f := keySecret(nsShops, "store-f", routeF, "goqsystem_key", keyF)
	f.Labels = nil
	// A planted Secret: labelled like the operator's, but no store owns it.
	planted := keySecret(nsShops, "store-i", routeI, "goqsystem_key", keyI)
	planted.OwnerReferences = nil
	// Labelled and owned, but by store-a: the name alone must not bind it.
	borrowed := keySecret(nsShops, "store-j", routeA, "goqsystem_key", keyJ)
	unrouted := store(nsShops, "store-h", "C1", "3", "")
	unrouted.Status.Receiver = nil
	return []client.Object{
		store(nsShops, "store-a", "C1", "1", routeA), keySecret(nsShops, "store-a", routeA, "goqsystem_key", keyA),
		store(nsShops, "store-b", "C1", "2", routeB), keySecret(nsShops, "store-b", routeB, "goqsystem_key", keyB),
		store(nsShops, "store-c", "C2", "1", routeC), keySecret(nsShops, "store-c", routeC, "goqsystem_key", keyC),
		store(nsOther, "store-d", "C1", "1", routeD), keySecret(nsOther, "store-d", routeD, "goqsystem_key", keyD),
		e, keySecret(nsShops, "store-e", routeE, "shop_key", keyE),
		store(nsShops, "store-f", "C4", "1", routeF), f,
		store(nsShops, "store-g", "C5", "1", routeG),
		store(nsShops, "store-i", "C6", "1", routeI), planted,
		store(nsShops, "store-j", "C7", "1", routeJ), borrowed,
		// A store of C1 whose route is not published yet: it is still a
		// routing target for storeId 3.
		unrouted,
	}
}

// builderIndexer registers SetupIndexes' indexes on a fake client builder,
// so the tests exercise the real index functions.
type builderIndexer struct{ b *fake.ClientBuilder }

func (i builderIndexer) IndexField(_ context.Context, obj client.Object, field string, fn client.IndexerFunc) error {
	i.b.WithIndex(obj, field, fn)
	return nil
}

func newFakeReader(t testing.TB, objs ...client.Object) client.WithWatch {
	t.Helper()
	b := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(objs...)
	if err := SetupIndexes(context.Background(), builderIndexer{b}); err != nil {
		t.Fatal(err)
	}
	return b.Build()
}

type harness struct {
	srv    *Server
	http   *httptest.Server
	sink   *RecordingSink
	clock  *clocktesting.FakePassiveClock
	reader client.WithWatch
}

func newHarness(t testing.TB, mutate func(*Options), objs ...client.Object) *harness {
	t.Helper()
	if objs == nil {
		objs = fixtureObjects()
	}
	h := &harness{sink: &RecordingSink{}, clock: clocktesting.NewFakePassiveClock(testNow), reader: newFakeReader(t, objs...)}
	opts := Options{Reader: h.reader, Sink: h.sink, Clock: h.clock}
	if mutate != nil {
		mutate(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	h.http = httptest.NewServer(srv.Handler())
	t.Cleanup(h.http.Close)
	return h
}

func (h *harness) url(route string) string {
	return h.http.URL + smaregiv1alpha1.ReceiverPathPrefix + route
}

type reply struct {
	status int
	header http.Header
	body   string
}

func do(t testing.TB, req *http.Request) reply {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func postForm(t testing.TB, target string, form url.Values) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	return do(t, req)
}

func sendForm(procName, params, keyParam, key string) url.Values {
	f := url.Values{}
	if procName != "" {
		f.Set("proc_name", procName)
	}
	if params != "" {
		f.Set("params", params)
	}
	if keyParam != "" {
		f.Set(keyParam, key)
	}
	return f
}

func requests(result string) float64 {
	return testutil.ToFloat64(requestsTotal.WithLabelValues(result))
}

func observations(t testing.TB, result string) uint64 {
	t.Helper()
	var m dto.Metric
	if err := requestDuration.WithLabelValues(result).(prometheus.Metric).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

const stockParams = `{"data":[{"table_name":"Stock","rows":[` +
	`{"storeId":"1","productId":"8000001","amount":"-1","stockAmount":"2","layawayStockAmount":"0","stockDivision":"02","updDateTime":"2026-11-26 09:01:21"},` +
	`{"storeId":"2","productId":"8000002","amount":"5","stockAmount":"12","layawayStockAmount":"1","stockDivision":"05","fromStoreId":"","toStoreId":"2","updDateTime":"2026-11-26 09:01:22","memo":"入庫"}]}]}`

const transactionParams = `{"data":[` +
	`{"table_name":"TransactionHead","rows":[` +
	`{"transactionHeadId":"101","transactionDateTime":"2026-11-26 09:05:00","transactionHeadDivision":"1","cancelDivision":"0","disposeDivision":"0","storeId":"2","total":"1100"}]},` +
	`{"table_name":"TransactionDetail","rows":[` +
	`{"transactionHeadId":"101","transactionDetailId":"1","transactionDetailDivision":"1","productId":"8000001","productCode":"4901234567890","quantity":"1"},` +
	`{"transactionHeadId":"101","transactionDetailId":"2","transactionDetailDivision":"2","productId":"8000002","productCode":"4901234567891","quantity":"-1"},` +
	`{"transactionHeadId":"202","transactionDetailId":"1","transactionDetailDivision":"1","productId":"8000003","quantity":"2"}]}]}`

// secretData returns the data map of a fixture Secret, for editing it.
func secretData(o client.Object) map[string][]byte {
	return o.(*corev1.Secret).Data
}
