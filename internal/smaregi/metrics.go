package smaregi

import (
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Outcome label values of smaregi_client_requests_total.
const (
	OutcomeSuccess     = "success"
	OutcomeConfigError = "config_error"
	OutcomeAPIError    = "api_error"
	OutcomeTransient   = "transient"
	OutcomeAmbiguous   = "ambiguous"
)

type clientMetrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	limitWait prometheus.Histogram
}

var (
	metricsOnce sync.Once
	theMetrics  *clientMetrics
)

// getMetrics registers the collectors with controller-runtime's registry on
// first use, so the manager's /metrics endpoint serves them. Labels are the
// proc name and outcome only: never a contract, store or token.
func getMetrics() *clientMetrics {
	metricsOnce.Do(func() {
		m := &clientMetrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "smaregi_client_requests_total",
				Help: "Calls to the Smaregi legacy API by proc name and outcome (success, config_error, api_error, transient, ambiguous). Each attempt counts.",
			}, []string{"proc_name", "outcome"}),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "smaregi_client_request_duration_seconds",
				Help:    "Duration of one Smaregi legacy API call (one attempt), from send to decoded answer.",
				Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			}, []string{"proc_name"}),
			limitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "smaregi_client_rate_limiter_wait_seconds",
				Help:    "Time a Smaregi call waited for its contract's rate limiter.",
				Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
			}),
		}
		m.requests = registerOrReuse(m.requests).(*prometheus.CounterVec)
		m.duration = registerOrReuse(m.duration).(*prometheus.HistogramVec)
		m.limitWait = registerOrReuse(m.limitWait).(prometheus.Histogram)
		theMetrics = m
	})
	return theMetrics
}

// registerOrReuse tolerates a collector already registered under the same
// name and shape (say, by another package exposing the same series): the
// existing one is used so counts are not split.
func registerOrReuse(c prometheus.Collector) prometheus.Collector {
	if err := metrics.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			return are.ExistingCollector
		}
		// Any other error is a programming error in the descriptors above;
		// serve metrics unregistered rather than crash the operator.
	}
	return c
}

// outcomeOf maps a call's error to its outcome label.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeSuccess
	case IsConfigError(err):
		return OutcomeConfigError
	case IsAmbiguous(err):
		return OutcomeAmbiguous
	case IsTransient(err):
		return OutcomeTransient
	default:
		return OutcomeAPIError
	}
}
