package pusher

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/metricsreg"
)

// Outcome label values of smaregi_pusher_adjustments_total.
const (
	OutcomeApplied            = "applied"
	OutcomeFailed             = "failed"
	OutcomeResolvedApplied    = "resolved_applied"
	OutcomeResolvedNotApplied = "resolved_not_applied"
)

// Result label values of smaregi_pusher_stock_upd_calls_total.
const (
	CallOK        = "ok"
	CallRejected  = "rejected"
	CallAmbiguous = "ambiguous"
	CallTransient = "transient"
	CallConfig    = "config_error"
)

type pusherMetrics struct {
	latency  prometheus.Histogram
	outcomes *prometheus.CounterVec
	calls    *prometheus.CounterVec
}

var (
	metricsOnce sync.Once
	theMetrics  *pusherMetrics
)

// getMetrics registers the pusher's collectors with controller-runtime's
// registry once per process. No label of these names a store, contract or
// token; the stuck-store gauges (stuckCollector) name the SmaregiStore
// object (namespace, name), never its contract, shop or credentials.
func getMetrics() *pusherMetrics {
	metricsOnce.Do(func() {
		m := &pusherMetrics{
			latency: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "smaregi_pusher_adjustment_apply_seconds",
				Help:    "Time from an adjustment's submission to the pusher knowing Smaregi applied it.",
				Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
			}),
			outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "smaregi_pusher_adjustments_total",
				Help: "Adjustments settled by the pusher, by SmaregiStore and outcome: applied (Smaregi said so), failed (Smaregi rejected it), resolved_applied / resolved_not_applied (an ambiguous or interrupted push decided from StockHistory; not applied means it is sent again).",
			}, []string{"namespace", "name", "outcome"}),
			calls: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "smaregi_pusher_stock_upd_calls_total",
				Help: "stock_upd calls made by the pusher, by result (ok, rejected, ambiguous, transient, config_error).",
			}, []string{"result"}),
		}
		m.latency = metricsreg.Register(m.latency)
		m.outcomes = metricsreg.Register(m.outcomes)
		m.calls = metricsreg.Register(m.calls)
		metricsreg.Register(stuck)
		theMetrics = m
	})
	return theMetrics
}

const (
	unresolvedAgeHelp = "Age of the oldest open push attempt of a SmaregiStore that could not be resolved from Smaregi's stock history " +
		"(the history contradicts itself, or Smaregi is unreachable); nothing else is sent for the store until it is. " +
		"Absent when the store is not blocked."
	blockedStoresHelp = "SmaregiStores whose adjustments are blocked behind an open push attempt that could not be resolved."
)

var (
	unresolvedAgeDesc = prometheus.NewDesc("smaregi_pusher_unresolved_attempt_age_seconds",
		unresolvedAgeHelp, []string{"namespace", "name"}, nil)
	blockedStoresDesc = prometheus.NewDesc("smaregi_pusher_blocked_stores", blockedStoresHelp, nil, nil)
)

// stuck is the process's one stuck-store collector; it reads, at scrape
// time, the in-memory state of every running Pusher (one in the operator),
// so a store's series vanish as soon as it is unblocked.
var stuck = &stuckCollector{pushers: map[*Pusher]struct{}{}}

type stuckCollector struct {
	mu      sync.Mutex
	pushers map[*Pusher]struct{}
}

func (c *stuckCollector) add(p *Pusher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pushers[p] = struct{}{}
}

func (c *stuckCollector) remove(p *Pusher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pushers, p)
}

func (c *stuckCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- unresolvedAgeDesc
	ch <- blockedStoresDesc
}

func (c *stuckCollector) Collect(ch chan<- prometheus.Metric) {
	type entry struct {
		started time.Time
		clock   clock.PassiveClock
	}
	oldest := map[inventory.StoreKey]entry{}
	c.mu.Lock()
	for p := range c.pushers {
		p.blockedMu.Lock()
		for k, t := range p.blocked {
			if e, ok := oldest[k]; !ok || t.Before(e.started) {
				oldest[k] = entry{t, p.opts.Clock}
			}
		}
		p.blockedMu.Unlock()
	}
	c.mu.Unlock()
	for k, e := range oldest {
		age := max(e.clock.Since(e.started).Seconds(), 0)
		ch <- prometheus.MustNewConstMetric(unresolvedAgeDesc, prometheus.GaugeValue, age, k.Namespace, k.Name)
	}
	ch <- prometheus.MustNewConstMetric(blockedStoresDesc, prometheus.GaugeValue, float64(len(oldest)))
}
