package pusher

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

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
// registry once per process. No label names a store, contract or token.
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
				Help: "Adjustments settled by the pusher, by outcome: applied (Smaregi said so), failed (Smaregi rejected it), resolved_applied / resolved_not_applied (an ambiguous or interrupted push decided from StockHistory; not applied means it is sent again).",
			}, []string{"outcome"}),
			calls: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "smaregi_pusher_stock_upd_calls_total",
				Help: "stock_upd calls made by the pusher, by result (ok, rejected, ambiguous, transient, config_error).",
			}, []string{"result"}),
		}
		m.latency = metricsreg.Register(m.latency)
		m.outcomes = metricsreg.Register(m.outcomes)
		m.calls = metricsreg.Register(m.calls)
		theMetrics = m
	})
	return theMetrics
}
