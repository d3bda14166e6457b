package smaregi

import (
	"errors"
	"net/http"
	"sync"

	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
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

// getMetrics registers the collectors with controller-runtime's registry on
// first use, so the manager's /metrics endpoint serves them (and a process
// without a legacy store shows none). Labels are the proc name and outcome
// only: never a contract, store or token. Dashboards, alerts and the e2e
// tests read these names and labels: keep them.
var getMetrics = sync.OnceValue(func() *smaregihttp.CallMetrics {
	return smaregihttp.NewCallMetrics(smaregihttp.MetricsOpts{
		Prefix:          "smaregi_client",
		CallLabel:       "proc_name",
		RequestsHelp:    "Calls to the Smaregi legacy API by proc name and outcome (success, config_error, api_error, transient, ambiguous, throttled). Each attempt counts.",
		DurationHelp:    "Duration of one Smaregi legacy API call (one attempt), from send to decoded answer.",
		LimiterWaitHelp: "Time a Smaregi call waited for its contract's rate limiter.",
	})
})

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
