// Package storemetrics exports each SmaregiStore's status as gauges, read
// from the manager's informer cache at scrape time (as cert-manager does for
// its Certificates), so alerts and dashboards need nothing but the operator's
// own /metrics: no kube-state-metrics custom resource configuration.
package storemetrics

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// DefaultPollInterval is the CRD's default for spec.sync.pollInterval, used
// when an object was stored before the default applied.
const DefaultPollInterval = time.Minute

// listTimeout bounds one scrape's cache read: before the cache has synced a
// List waits for it, and a scrape must not hang on that.
const listTimeout = 5 * time.Second

var (
	storeLabels = []string{"namespace", "name"}

	conditionDesc = prometheus.NewDesc("smaregi_store_condition",
		"Status conditions of a SmaregiStore: 1 for the condition's current status (True, False or Unknown), 0 for the other two.",
		[]string{"namespace", "name", "condition", "status"}, nil)
	suspendedDesc = prometheus.NewDesc("smaregi_store_suspended",
		"1 when the SmaregiStore is suspended (spec.suspend), else 0.", storeLabels, nil)
	pollIntervalDesc = prometheus.NewDesc("smaregi_store_poll_interval_seconds",
		"The SmaregiStore's spec.sync.pollInterval: a mirror older than a few of these is stale.", storeLabels, nil)
	pendingDesc = prometheus.NewDesc("smaregi_store_pending_adjustments",
		"Adjustments accepted for the SmaregiStore and not yet settled (status.inventory.pendingAdjustments).", storeLabels, nil)
	oldestPendingDesc = prometheus.NewDesc("smaregi_store_oldest_pending_adjustment_timestamp_seconds",
		"Unix time the oldest unsettled adjustment of the SmaregiStore was accepted; absent when none is pending.", storeLabels, nil)
)

// conditionStatuses are the values metav1.Condition.Status can take; each
// gets a series so a change of status is a change of value, not of series.
var conditionStatuses = []metav1.ConditionStatus{metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown}

// Collector lists SmaregiStores from a (cached) reader on every scrape.
type Collector struct {
	reader client.Reader
	log    logr.Logger
}

// New returns a Collector over reader, normally the manager's cache
// (mgr.GetCache()): a scrape then costs no API server call.
func New(reader client.Reader, log logr.Logger) *Collector {
	return &Collector{reader: reader, log: log}
}

// Register registers a Collector over reader on controller-runtime's
// registry, the one the manager serves on /metrics.
func Register(reader client.Reader, log logr.Logger) error {
	return metrics.Registry.Register(New(reader, log))
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- conditionDesc
	ch <- suspendedDesc
	ch <- pollIntervalDesc
	ch <- pendingDesc
	ch <- oldestPendingDesc
}

// Collect implements prometheus.Collector. A failed List is logged and the
// store series are left out of this scrape: failing the scrape would also
// hide every other metric of the operator.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), listTimeout)
	defer cancel()
	var list smaregiv1alpha1.SmaregiStoreList
	// Read only: a scrape need not copy every store of the cache (at
	// 10,000 stores that copy was most of a scrape's garbage). The series
	// below point at the cached objects' strings; nothing writes them.
	if err := c.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		c.log.Error(err, "list SmaregiStores for the store metrics")
		return
	}
	sc := newScrape(list.Items)
	for i := range list.Items {
		sc.addStore(&list.Items[i])
	}
	for i := range sc.series {
		ch <- &sc.series[i]
	}
}

// The series are built by hand rather than with prometheus.MustNewConstMetric,
// which for each of the ~25 series of a store validates the labels, copies
// their values and allocates a label pair and two strings per label: with
// it a scrape allocated ~23 KB a store, two thirds of it there, all live at
// once while promhttp gathers the page (docs/benchmarks.md, issue 13;
// BenchmarkScrape). Here a series shares its label pairs: the status pairs
// and the 0 and 1 gauges are built once for the package, a store's
// namespace and name pairs (pointing at the cached object's strings) and a
// condition's pair once per scrape, and a scrape's series, pairs and values
// come from a few slices sized up front. The exposition is the same; label
// values are still checked for UTF-8, by the registry's Gather. What a
// scrape still allocates is mostly the registry's and the encoder's own,
// per series.
//
// Everything a series hands out in Write is read-only after Collect built
// it, as the library's own constant label pairs (prometheus.Desc's const
// labels) are shared by every metric of their Desc: the registry does not
// change a collected dto.Metric, and concurrent scrapes only read them (the
// protobuf encoder's size cache is written atomically).

// Label names, as variables for the label pairs to point at.
var (
	labelCondition = "condition"
	labelName      = "name"
	labelNamespace = "namespace"
	labelStatus    = "status"
)

// statusPairs are the status label of each of conditionStatuses, in order.
var statusPairs = func() []*dto.LabelPair {
	pairs := make([]*dto.LabelPair, len(conditionStatuses))
	for i, st := range conditionStatuses {
		pairs[i] = &dto.LabelPair{Name: &labelStatus, Value: new(string(st))}
	}
	return pairs
}()

// zeroGauge and oneGauge are the values of the condition and suspended
// series.
var (
	zeroGauge = &dto.Gauge{Value: new(0.0)}
	oneGauge  = &dto.Gauge{Value: new(1.0)}
)

func boolGauge(b bool) *dto.Gauge {
	if b {
		return oneGauge
	}
	return zeroGauge
}

// series is one gauge of a scrape, a prometheus.Metric.
type series struct {
	desc *prometheus.Desc
	// labels are sorted by name, as dto.Metric's labels must be (the
	// registry would otherwise copy and sort them).
	labels []*dto.LabelPair
	gauge  *dto.Gauge
}

// Desc implements prometheus.Metric: the Desc the Collector describes.
func (m *series) Desc() *prometheus.Desc { return m.desc }

// Write implements prometheus.Metric.
func (m *series) Write(out *dto.Metric) error {
	out.Label = m.labels
	out.Gauge = m.gauge
	return nil
}

// scrape holds one scrape's series and what they point at, each kind in one
// slice sized for all stores. The helpers hand out pointers into them; were
// a size short, append would move on to a new array and what was handed out
// stays valid (it is never written again), so a miscount costs a copy only.
type scrape struct {
	series []series
	pairs  []dto.LabelPair  // namespace, name and condition labels
	labels []*dto.LabelPair // the series' label lists, back to back
	gauges []dto.Gauge      // values other than 0 and 1
	values []float64        // what gauges point at
}

// Series of a store besides its conditions: suspended, poll interval,
// pending adjustments, and the oldest pending one's time.
const storeSeries = 4

// Labels of a condition series: condition, name, namespace, status.
const condLabels = 4

func newScrape(stores []smaregiv1alpha1.SmaregiStore) *scrape {
	conds := 0
	for i := range stores {
		conds += len(stores[i].Status.Conditions)
	}
	n := len(stores)
	return &scrape{
		series: make([]series, 0, n*storeSeries+conds*len(conditionStatuses)),
		pairs:  make([]dto.LabelPair, 0, n*2+conds),
		labels: make([]*dto.LabelPair, 0, n*2+conds*len(conditionStatuses)*condLabels),
		gauges: make([]dto.Gauge, 0, n*(storeSeries-1)),
		values: make([]float64, 0, n*(storeSeries-1)),
	}
}

// pair returns a label pair from sc.pairs; value must outlive the scrape
// (a cached object's string does).
func (sc *scrape) pair(name, value *string) *dto.LabelPair {
	sc.pairs = append(sc.pairs, dto.LabelPair{Name: name, Value: value})
	return &sc.pairs[len(sc.pairs)-1]
}

// labelList returns pairs as a list of sc.labels that a later append does
// not overwrite.
func (sc *scrape) labelList(pairs ...*dto.LabelPair) []*dto.LabelPair {
	i := len(sc.labels)
	sc.labels = append(sc.labels, pairs...)
	return sc.labels[i:len(sc.labels):len(sc.labels)]
}

// gauge returns a gauge of v from sc.gauges.
func (sc *scrape) gauge(v float64) *dto.Gauge {
	sc.values = append(sc.values, v)
	sc.gauges = append(sc.gauges, dto.Gauge{Value: &sc.values[len(sc.values)-1]})
	return &sc.gauges[len(sc.gauges)-1]
}

func (sc *scrape) add(d *prometheus.Desc, labels []*dto.LabelPair, g *dto.Gauge) {
	sc.series = append(sc.series, series{desc: d, labels: labels, gauge: g})
}

func (sc *scrape) addStore(s *smaregiv1alpha1.SmaregiStore) {
	ns := sc.pair(&labelNamespace, &s.Namespace)
	name := sc.pair(&labelName, &s.Name)
	for i := range s.Status.Conditions {
		cond := &s.Status.Conditions[i]
		condPair := sc.pair(&labelCondition, &cond.Type)
		for j, st := range conditionStatuses {
			// A status other than the three (the API server rejects one)
			// is 0 in all three.
			sc.add(conditionDesc, sc.labelList(condPair, name, ns, statusPairs[j]), boolGauge(cond.Status == st))
		}
	}
	labels := sc.labelList(name, ns)
	sc.add(suspendedDesc, labels, boolGauge(s.Spec.Suspend))
	poll := DefaultPollInterval
	if s.Spec.Sync.PollInterval != nil && s.Spec.Sync.PollInterval.Duration > 0 {
		poll = s.Spec.Sync.PollInterval.Duration
	}
	sc.add(pollIntervalDesc, labels, sc.gauge(poll.Seconds()))
	var pending int64
	if inv := s.Status.Inventory; inv != nil {
		pending = inv.PendingAdjustments
		if t := inv.OldestPendingAdjustmentTime; t != nil && !t.IsZero() {
			sc.add(oldestPendingDesc, labels, sc.gauge(float64(t.UnixNano())/1e9))
		}
	}
	sc.add(pendingDesc, labels, sc.gauge(float64(pending)))
}
