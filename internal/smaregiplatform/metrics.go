package smaregiplatform

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stocksync/smaregi-operator/internal/metricsreg"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
)

// The outcome label values are the legacy client's (smaregi.Outcome*), so
// dashboards read both APIs alike.

// clientMetrics are the shared call metrics (smaregihttp.CallMetrics) and
// the two only this API has: answers of 429, and waits a 429's Retry-After
// imposed.
type clientMetrics struct {
	calls          *smaregihttp.CallMetrics
	throttled      *prometheus.CounterVec
	retryAfterWait prometheus.Histogram
}

// getMetrics registers the collectors with controller-runtime's registry on
// first use (a process without a Platform store shows none). Labels are the
// call and outcome only: never a contract, client ID, store or token.
// Dashboards, alerts and the e2e tests read these names and labels: keep
// them.
var getMetrics = sync.OnceValue(func() *clientMetrics {
	return &clientMetrics{
		calls: smaregihttp.NewCallMetrics(smaregihttp.MetricsOpts{
			Prefix:          "smaregi_platform",
			CallLabel:       "call",
			RequestsHelp:    "Calls to the Smaregi Platform API (token requests included) by call and outcome (success, config_error, api_error, transient, ambiguous). Each attempt counts.",
			DurationHelp:    "Duration of one Smaregi Platform API call (one attempt), from send to decoded answer.",
			LimiterWaitHelp: "Time a Smaregi Platform call waited for its app and contract's rate limiter.",
		}),
		throttled: metricsreg.Register(prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "smaregi_platform_throttled_total",
			Help: "Smaregi Platform API answers 429 Too Many Requests, by call.",
		}, []string{"call"})),
		retryAfterWait: metricsreg.Register(prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "smaregi_platform_retry_after_wait_seconds",
			Help:    "Time a Smaregi Platform call waited before a retry because of a 429's Retry-After.",
			Buckets: []float64{.1, .5, 1, 2, 5, 10, 30, 60},
		})),
	}
})

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
