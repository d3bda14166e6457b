package mirror

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stocksync/smaregi-operator/internal/metricsreg"
)

type engineMetrics struct {
	pullDuration *prometheus.HistogramVec
	pulls        *prometheus.CounterVec
	sendLag      prometheus.Histogram
}

var (
	metricsOnce sync.Once
	theMetrics  *engineMetrics
)

// getMetrics registers the engine's process-wide metrics with
// controller-runtime's registry once. Labels are bounded enums: never a
// contract, store ID or token.
func getMetrics() *engineMetrics {
	metricsOnce.Do(func() {
		m := &engineMetrics{
			pullDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "smaregi_mirror_pull_duration_seconds",
				Help:    "Duration of one successful pull of one store's stock from Smaregi, by kind (incremental, full).",
				Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
			}, []string{"kind"}),
			pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "smaregi_mirror_pulls_total",
				Help: "Pulls of stock from Smaregi by trigger (send, poll, startup, full, adjustment) and outcome (success, config_error, transient_error, error).",
			}, []string{"trigger", "outcome"}),
			sendLag: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "smaregi_mirror_send_lag_seconds",
				Help:    "Time from receiving a send from Smaregi to the end of the first successful pull of its store that started after it.",
				Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
			}),
		}
		m.pullDuration = metricsreg.Register(m.pullDuration)
		m.pulls = metricsreg.Register(m.pulls)
		m.sendLag = metricsreg.Register(m.sendLag)
		theMetrics = m
	})
	return theMetrics
}

var (
	rowsDesc = prometheus.NewDesc("smaregi_mirror_rows",
		"Stock rows in the mirror of a SmaregiStore.", []string{"namespace", "name"}, nil)
	driftDesc = prometheus.NewDesc("smaregi_mirror_drift_rows",
		"Rows the last full reconcile of a SmaregiStore had to correct.", []string{"namespace", "name"}, nil)
	lastPullDesc = prometheus.NewDesc("smaregi_mirror_last_pull_timestamp_seconds",
		"Unix time of the last successful pull of a SmaregiStore (0: never).", []string{"namespace", "name"}, nil)
	pollIntervalDesc = prometheus.NewDesc("smaregi_mirror_poll_interval_seconds",
		"The poll interval in force for a SmaregiStore: spec.sync.pollInterval, stretched (up to 8 times) while polls find nothing new.",
		[]string{"namespace", "name"}, nil)
)

// storeCollector reports per-store gauges from the engine's memory at scrape
// time, so a deleted store's series vanish with it and no gauge vector has to
// be kept in step with the store set.
type storeCollector struct{ e *Engine }

// Collector returns a Prometheus collector of the engine's per-store gauges.
// SetupWithManager registers it with controller-runtime's registry.
func (e *Engine) Collector() prometheus.Collector { return storeCollector{e} }

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rowsDesc
	ch <- driftDesc
	ch <- lastPullDesc
	ch <- pollIntervalDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	type row struct {
		ns, name          string
		skus, drift, last float64
		poll              float64
	}
	snaps := c.e.snapshots()
	rows := make([]row, 0, len(snaps))
	for k, s := range snaps {
		var last float64
		if !s.LastPull.IsZero() {
			last = float64(s.LastPull.UnixNano()) / 1e9
		}
		rows = append(rows, row{k.Namespace, k.Name, float64(s.SKUs), float64(s.Drift), last, s.PollInterval.Seconds()})
	}
	for _, r := range rows {
		ch <- prometheus.MustNewConstMetric(rowsDesc, prometheus.GaugeValue, r.skus, r.ns, r.name)
		ch <- prometheus.MustNewConstMetric(driftDesc, prometheus.GaugeValue, r.drift, r.ns, r.name)
		ch <- prometheus.MustNewConstMetric(lastPullDesc, prometheus.GaugeValue, r.last, r.ns, r.name)
		ch <- prometheus.MustNewConstMetric(pollIntervalDesc, prometheus.GaugeValue, r.poll, r.ns, r.name)
	}
}
