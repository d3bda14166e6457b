package smaregi

import (
	"errors"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stocksync/smaregi-operator/internal/metricsreg"
)

// Outcome label values of smaregi_client_requests_total.
const (
	OutcomeSuccess     = "success"
	OutcomeConfigError = "config_error"
	OutcomeAPIError    = "api_error"
	OutcomeTransient   = "transient"
	OutcomeAmbiguous   = "ambiguous"
	// OutcomeThrottled is an answer of HTTP 429: Smaregi refused the call
	// for its rate (nothing was applied). The SmaregiThrottled alert reads it.
	OutcomeThrottled = "throttled"
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
				Help: "Calls to the Smaregi legacy API by proc name and outcome (success, config_error, api_error, transient, ambiguous, throttled). Each attempt counts.",
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
		m.requests = metricsreg.Register(m.requests)
		m.duration = metricsreg.Register(m.duration)
		m.limitWait = metricsreg.Register(m.limitWait)
		theMetrics = m
	})
	return theMetrics
}

// outcomeOf maps a call's error to its outcome label.
func outcomeOf(err error) string {
	switch {
	case err == nil:
		return OutcomeSuccess
	case isThrottled(err):
		return OutcomeThrottled
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

// isThrottled reports whether Smaregi answered 429 Too Many Requests.
func isThrottled(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.HTTPStatus == http.StatusTooManyRequests
}
