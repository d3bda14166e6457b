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
	// 10,000 stores that copy was most of a scrape's garbage).
	if err := c.reader.List(ctx, &list, client.UnsafeDisableDeepCopy); err != nil {
		c.log.Error(err, "list SmaregiStores for the store metrics")
		return
	}
	for i := range list.Items {
		collectStore(ch, &list.Items[i])
	}
}

func collectStore(ch chan<- prometheus.Metric, s *smaregiv1alpha1.SmaregiStore) {
	ns, name := s.Namespace, s.Name
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{ns, name}, labels...)...)
	}
	for _, cond := range s.Status.Conditions {
		for _, st := range conditionStatuses {
			v := 0.0
			if cond.Status == st {
				v = 1
			}
			gauge(conditionDesc, v, cond.Type, string(st))
		}
	}
	suspended := 0.0
	if s.Spec.Suspend {
		suspended = 1
	}
	gauge(suspendedDesc, suspended)
	poll := DefaultPollInterval
	if s.Spec.Sync.PollInterval != nil && s.Spec.Sync.PollInterval.Duration > 0 {
		poll = s.Spec.Sync.PollInterval.Duration
	}
	gauge(pollIntervalDesc, poll.Seconds())
	var pending int64
	if inv := s.Status.Inventory; inv != nil {
		pending = inv.PendingAdjustments
		if t := inv.OldestPendingAdjustmentTime; t != nil && !t.IsZero() {
			gauge(oldestPendingDesc, float64(t.UnixNano())/1e9)
		}
	}
	gauge(pendingDesc, float64(pending))
}
