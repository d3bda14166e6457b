package storemetrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

func TestCollectorExportsEachStoresStatus(t *testing.T) {
	s := runtime.NewScheme()
	if err := smaregiv1alpha1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	oldest := metav1.NewTime(time.Unix(1700000000, 0))
	busy := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "shibuya"},
		Spec:       smaregiv1alpha1.SmaregiStoreSpec{Sync: smaregiv1alpha1.SyncSpec{PollInterval: &metav1.Duration{Duration: 30 * time.Second}}},
		Status: smaregiv1alpha1.SmaregiStoreStatus{
			Conditions: []metav1.Condition{
				{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonInvalidAccessToken},
				{Type: smaregiv1alpha1.CredentialsValidCondition, Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonInvalidAccessToken},
			},
			Inventory: &smaregiv1alpha1.InventoryStatus{PendingAdjustments: 3, OldestPendingAdjustmentTime: &oldest},
		},
	}
	// A store the controller has not reconciled yet: no conditions, no
	// inventory status, the defaulted poll interval.
	fresh := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "umeda"},
		Spec:       smaregiv1alpha1.SmaregiStoreSpec{Suspend: true},
	}
	reader := fake.NewClientBuilder().WithScheme(s).WithObjects(busy, fresh).Build()

	want := `
# HELP smaregi_store_condition Status conditions of a SmaregiStore: 1 for the condition's current status (True, False or Unknown), 0 for the other two.
# TYPE smaregi_store_condition gauge
smaregi_store_condition{condition="CredentialsValid",name="shibuya",namespace="shops",status="False"} 1
smaregi_store_condition{condition="CredentialsValid",name="shibuya",namespace="shops",status="True"} 0
smaregi_store_condition{condition="CredentialsValid",name="shibuya",namespace="shops",status="Unknown"} 0
smaregi_store_condition{condition="Ready",name="shibuya",namespace="shops",status="False"} 1
smaregi_store_condition{condition="Ready",name="shibuya",namespace="shops",status="True"} 0
smaregi_store_condition{condition="Ready",name="shibuya",namespace="shops",status="Unknown"} 0
# HELP smaregi_store_oldest_pending_adjustment_timestamp_seconds Unix time the oldest unsettled adjustment of the SmaregiStore was accepted; absent when none is pending.
# TYPE smaregi_store_oldest_pending_adjustment_timestamp_seconds gauge
smaregi_store_oldest_pending_adjustment_timestamp_seconds{name="shibuya",namespace="shops"} 1.7e+09
# HELP smaregi_store_pending_adjustments Adjustments accepted for the SmaregiStore and not yet settled (status.inventory.pendingAdjustments).
# TYPE smaregi_store_pending_adjustments gauge
smaregi_store_pending_adjustments{name="shibuya",namespace="shops"} 3
smaregi_store_pending_adjustments{name="umeda",namespace="shops"} 0
# HELP smaregi_store_poll_interval_seconds The SmaregiStore's spec.sync.pollInterval: a mirror older than a few of these is stale.
# TYPE smaregi_store_poll_interval_seconds gauge
smaregi_store_poll_interval_seconds{name="shibuya",namespace="shops"} 30
smaregi_store_poll_interval_seconds{name="umeda",namespace="shops"} 60
# HELP smaregi_store_suspended 1 when the SmaregiStore is suspended (spec.suspend), else 0.
# TYPE smaregi_store_suspended gauge
smaregi_store_suspended{name="shibuya",namespace="shops"} 0
smaregi_store_suspended{name="umeda",namespace="shops"} 1
`
	if err := testutil.CollectAndCompare(New(reader, logr.Discard()), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

type failingReader struct{ client.Reader }

func (failingReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cache not synced")
}

func TestCollectorLeavesStoresOutWhenTheCacheCannotBeRead(t *testing.T) {
	// The scrape must still succeed (other collectors' metrics are served);
	// only the store series are missing.
	if n := testutil.CollectAndCount(New(failingReader{}, logr.Discard())); n != 0 {
		t.Fatalf("collected %d metrics from a failing reader, want 0", n)
	}
}

// The cases the first test leaves out: a status that is none of the three
// (0 in all three series, as ever), Unknown, an inventory status with nothing
// pending (no oldest series), a zero poll interval (the default), and two
// stores of one name in two namespaces, whose series share nothing.
func TestCollectorExportsUnusualStatuses(t *testing.T) {
	store := func(ns string, conds ...metav1.Condition) smaregiv1alpha1.SmaregiStore {
		return smaregiv1alpha1.SmaregiStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "namba"},
			Spec:       smaregiv1alpha1.SmaregiStoreSpec{Sync: smaregiv1alpha1.SyncSpec{PollInterval: &metav1.Duration{}}},
			Status:     smaregiv1alpha1.SmaregiStoreStatus{Conditions: conds, Inventory: &smaregiv1alpha1.InventoryStatus{SKUs: 10}},
		}
	}
	reader := &listReader{list: smaregiv1alpha1.SmaregiStoreList{Items: []smaregiv1alpha1.SmaregiStore{
		store("east", metav1.Condition{Type: smaregiv1alpha1.ReadyCondition, Status: ""},
			metav1.Condition{Type: smaregiv1alpha1.InventorySyncedCondition, Status: metav1.ConditionUnknown}),
		store("west", metav1.Condition{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionTrue}),
	}}}
	want := `
# HELP smaregi_store_condition Status conditions of a SmaregiStore: 1 for the condition's current status (True, False or Unknown), 0 for the other two.
# TYPE smaregi_store_condition gauge
smaregi_store_condition{condition="InventorySynced",name="namba",namespace="east",status="False"} 0
smaregi_store_condition{condition="InventorySynced",name="namba",namespace="east",status="True"} 0
smaregi_store_condition{condition="InventorySynced",name="namba",namespace="east",status="Unknown"} 1
smaregi_store_condition{condition="Ready",name="namba",namespace="east",status="False"} 0
smaregi_store_condition{condition="Ready",name="namba",namespace="east",status="True"} 0
smaregi_store_condition{condition="Ready",name="namba",namespace="east",status="Unknown"} 0
smaregi_store_condition{condition="Ready",name="namba",namespace="west",status="False"} 0
smaregi_store_condition{condition="Ready",name="namba",namespace="west",status="True"} 1
smaregi_store_condition{condition="Ready",name="namba",namespace="west",status="Unknown"} 0
# HELP smaregi_store_pending_adjustments Adjustments accepted for the SmaregiStore and not yet settled (status.inventory.pendingAdjustments).
# TYPE smaregi_store_pending_adjustments gauge
smaregi_store_pending_adjustments{name="namba",namespace="east"} 0
smaregi_store_pending_adjustments{name="namba",namespace="west"} 0
# HELP smaregi_store_poll_interval_seconds The SmaregiStore's spec.sync.pollInterval: a mirror older than a few of these is stale.
# TYPE smaregi_store_poll_interval_seconds gauge
smaregi_store_poll_interval_seconds{name="namba",namespace="east"} 60
smaregi_store_poll_interval_seconds{name="namba",namespace="west"} 60
# HELP smaregi_store_suspended 1 when the SmaregiStore is suspended (spec.suspend), else 0.
# TYPE smaregi_store_suspended gauge
smaregi_store_suspended{name="namba",namespace="east"} 0
smaregi_store_suspended{name="namba",namespace="west"} 0
`
	if err := testutil.CollectAndCompare(New(reader, logr.Discard()), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// Scrapes run concurrently (promhttp serves each request on its own
// goroutine) and share the package's label pairs and gauges: run with -race,
// this shows they only read them, in the protobuf encoding too (which
// caches sizes in the messages).
func TestConcurrentScrapesGiveTheSamePage(t *testing.T) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(New(&listReader{list: benchStores(50)}, logr.Discard())); err != nil {
		t.Fatal(err)
	}
	page := func() (string, error) {
		mfs, err := reg.Gather()
		if err != nil {
			return "", err
		}
		var text bytes.Buffer
		pb := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeProtoDelim))
		enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := pb.Encode(mf); err != nil {
				return "", err
			}
			if err := enc.Encode(mf); err != nil {
				return "", err
			}
		}
		return text.String(), nil
	}
	want, err := page()
	if err != nil {
		t.Fatal(err)
	}
	const scrapes = 4
	got := make([]string, scrapes)
	errs := make([]error, scrapes)
	var wg sync.WaitGroup
	for i := range scrapes {
		wg.Go(func() { got[i], errs[i] = page() })
	}
	wg.Wait()
	for i := range scrapes {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if got[i] != want {
			t.Fatalf("concurrent scrape %d differs from the first:\n%s", i, got[i])
		}
	}
}
