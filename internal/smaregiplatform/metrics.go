package smaregiplatform

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stocksync/smaregi-operator/internal/metricsreg"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// The outcome label values are the legacy client's (smaregi.Outcome*), so
// dashboards read both APIs alike.

type clientMetrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	throttled      *prometheus.CounterVec
	limitWait      prometheus.Histogram
	retryAfterWait prometheus.Histogram
}

var (
	metricsOnce sync.Once
	theMetrics  *clientMetrics
)

// getMetrics registers the collectors with controller-runtime's registry on
// first use. Labels are the call and outcome only: never a contract, client
// ID, store or token.
func getMetrics() *clientMetrics {
	metricsOnce.Do(func() {
		m := &clientMetrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "smaregi_platform_requests_total",
				Help: "Calls to the Smaregi Platform API (token requests included) by call and outcome (success, config_error, api_error, transient, ambiguous). Each attempt counts.",
			}, []string{"call", "outcome"}),
			duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "smaregi_platform_request_duration_seconds",
				Help:    "Duration of one Smaregi Platform API call (one attempt), from send to decoded answer.",
				Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
			}, []string{"call"}),
			throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "smaregi_platform_throttled_total",
				Help: "Smaregi Platform API answers 429 Too Many Requests, by call.",
			}, []string{"call"}),
			limitWait: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "smaregi_platform_rate_limiter_wait_seconds",
				Help:    "Time a Smaregi Platform call waited for its app and contract's rate limiter.",
				Buckets: []float64{.001, .01, .05, .1, .25, .5, 1, 2.5, 5, 10},
			}),
			retryAfterWait: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "smaregi_platform_retry_after_wait_seconds",
				Help:    "Time a Smaregi Platform call waited before a retry because of a 429's Retry-After.",
				Buckets: []float64{.1, .5, 1, 2, 5, 10, 30, 60},
			}),
		}
		m.requests = metricsreg.Register(m.requests)
		m.duration = metricsreg.Register(m.duration)
		m.throttled = metricsreg.Register(m.throttled)
		m.limitWait = metricsreg.Register(m.limitWait)
		m.retryAfterWait = metricsreg.Register(m.retryAfterWait)
		theMetrics = m
	})
	return theMetrics
}

// outcomeOf maps a call's error to its outcome label.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return smaregi.OutcomeSuccess
	case IsConfigError(err):
		return smaregi.OutcomeConfigError
	case IsAmbiguous(err):
		return smaregi.OutcomeAmbiguous
	case IsTransient(err):
		return smaregi.OutcomeTransient
	default:
		return smaregi.OutcomeAPIError
	}
}
