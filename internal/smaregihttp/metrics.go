package smaregihttp

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stocksync/smaregi-operator/internal/metricsreg"
)

// MetricsOpts names a client's call metrics. The names are
// {Prefix}_requests_total, {Prefix}_request_duration_seconds and
// {Prefix}_rate_limiter_wait_seconds: dashboards, alerts (charts/) and the
// e2e tests read them, so a client's Prefix, CallLabel and help texts must
// not change.
type MetricsOpts struct {
	Prefix    string // e.g. "smaregi_client"
	CallLabel string // label of the call's name, e.g. "proc_name"
	// Help texts of the three metrics.
	RequestsHelp, DurationHelp, LimiterWaitHelp string
}

// CallMetrics count one client's calls: each attempt by call and outcome,
// its duration, and the time spent waiting for a rate limiter. Labels are
// the call and outcome only: never a contract, store or secret.
type CallMetrics struct {
	requests    *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	limiterWait prometheus.Histogram
}

// NewCallMetrics builds the collectors and registers them with
// controller-runtime's registry (metricsreg), so the manager's /metrics
// serves them. Call it once per client package, on first use (a
// sync.OnceValue), so a process that never talks to one API does not show
// its limiter histogram.
func NewCallMetrics(o MetricsOpts) *CallMetrics {
	return &CallMetrics{
		requests: metricsreg.Register(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: o.Prefix + "_requests_total",
			Help: o.RequestsHelp,
		}, []string{o.CallLabel, "outcome"})),
		duration: metricsreg.Register(prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    o.Prefix + "_request_duration_seconds",
			Help:    o.DurationHelp,
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{o.CallLabel})),
		limiterWait: metricsreg.Register(prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    o.Prefix + "_rate_limiter_wait_seconds",
			Help:    o.LimiterWaitHelp,
			Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
		})),
	}
}

// Limiter is the part of *rate.Limiter a client uses.
type Limiter interface {
	Wait(ctx context.Context) error
}

// WaitLimiter waits for lim (nil: unthrottled) and observes how long it
// took. A wait that ends with an error (context ended, or a wait longer than
// the deadline) is not observed: the caller counts that attempt (Count).
func (m *CallMetrics) WaitLimiter(ctx context.Context, lim Limiter) error {
	if lim == nil {
		return nil
	}
	start := time.Now()
	if err := lim.Wait(ctx); err != nil {
		return err
	}
	m.limiterWait.Observe(time.Since(start).Seconds())
	return nil
}

// Count counts one attempt that ended before an exchange (it has no
// duration).
func (m *CallMetrics) Count(call, outcome string) {
	m.requests.WithLabelValues(call, outcome).Inc()
}

// Observe records one attempt's exchange: its duration since start and its
// outcome.
func (m *CallMetrics) Observe(call, outcome string, start time.Time) {
	m.duration.WithLabelValues(call).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(call, outcome).Inc()
}
