package storemetrics

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// listReader serves a prebuilt list, as the informer cache does with
// client.UnsafeDisableDeepCopy (the items are shared, not copied), so the
// benchmark measures the collector rather than a fake client's List.
type listReader struct {
	client.Reader
	list smaregiv1alpha1.SmaregiStoreList
}

func (r *listReader) List(_ context.Context, l client.ObjectList, _ ...client.ListOption) error {
	*l.(*smaregiv1alpha1.SmaregiStoreList) = r.list
	return nil
}

// benchStores returns n stores as the controller leaves them once Ready:
// every condition type it writes on a SmaregiStore, and adjustments pending.
func benchStores(n int) smaregiv1alpha1.SmaregiStoreList {
	types := []string{
		smaregiv1alpha1.ReadyCondition, smaregiv1alpha1.ReconcilingCondition, smaregiv1alpha1.StalledCondition,
		smaregiv1alpha1.CredentialsValidCondition, smaregiv1alpha1.ReceiverReadyCondition,
		smaregiv1alpha1.SendsHealthyCondition, smaregiv1alpha1.InventorySyncedCondition,
	}
	oldest := metav1.NewTime(time.Unix(1700000000, 0))
	list := smaregiv1alpha1.SmaregiStoreList{Items: make([]smaregiv1alpha1.SmaregiStore, n)}
	for i := range list.Items {
		s := &list.Items[i]
		s.Namespace = fmt.Sprintf("shops-%d", i/100)
		s.Name = fmt.Sprintf("store-%d", i)
		s.Spec.Sync.PollInterval = &metav1.Duration{Duration: 30 * time.Second}
		for j, t := range types {
			st := metav1.ConditionTrue
			if j%3 == 1 {
				st = metav1.ConditionFalse
			}
			s.Status.Conditions = append(s.Status.Conditions,
				metav1.Condition{Type: t, Status: st, Reason: smaregiv1alpha1.ReasonSucceeded})
		}
		s.Status.Inventory = &smaregiv1alpha1.InventoryStatus{SKUs: 1000, PendingAdjustments: 2, OldestPendingAdjustmentTime: &oldest}
	}
	return list
}

// BenchmarkScrape is one /metrics scrape of the store gauges at 10,000
// stores as promhttp does it: Gather every series of the registry, then
// encode the text exposition. B/store and allocs/store are what a scrape
// allocates per store (docs/benchmarks.md, issue 13).
func BenchmarkScrape(b *testing.B) {
	const stores = 10000
	reg := prometheus.NewRegistry()
	if err := reg.Register(New(&listReader{list: benchStores(stores)}, logr.Discard())); err != nil {
		b.Fatal(err)
	}
	scrape := func() int {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		enc := expfmt.NewEncoder(io.Discard, expfmt.NewFormat(expfmt.TypeTextPlain))
		series := 0
		for _, mf := range mfs {
			series += len(mf.GetMetric())
			if err := enc.Encode(mf); err != nil {
				b.Fatal(err)
			}
		}
		return series
	}
	// 7 conditions × 3 statuses, suspended, poll interval, pending, oldest.
	if got, want := scrape(), stores*(7*3+4); got != want {
		b.Fatalf("a scrape has %d series, want %d", got, want)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		scrape()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	per := float64(b.N) * stores
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/per, "B/store")
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/per, "allocs/store")
}
