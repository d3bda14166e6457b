package webhookserver

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Values of the result label. The label never carries the route, the key,
// the proc_name or anything else a sender chooses, so its cardinality is
// fixed and no secret can reach the metrics.
const (
	ResultAccepted         = "accepted"
	ResultIgnored          = "ignored"
	ResultUnauthorized     = "unauthorized"
	ResultNotFound         = "not_found"
	ResultMethodNotAllowed = "method_not_allowed"
	ResultTooLarge         = "too_large"
	ResultBadRequest       = "bad_request"
	ResultSinkError        = "sink_error"
	// ResultUnavailable counts sends refused with 503 because the cache
	// could not be read (not synced yet, say): neither the shop's fault nor
	// the sink's.
	ResultUnavailable = "unavailable"
	// ResultDuplicate counts Platform webhooks dropped because their
	// Smaregi-Event-Id was recorded shortly before.
	ResultDuplicate = "duplicate"
	// ResultNoStores counts authenticated Platform webhooks that concern no
	// Platform SmaregiStore (a contract or store ID nobody declared).
	ResultNoStores = "no_stores"
	// ResultBusy counts requests refused with 503 because the bytes in
	// flight of other requests filled Options.MaxInFlightBytes.
	ResultBusy = "busy"
)

var allResults = []string{
	ResultAccepted, ResultIgnored, ResultUnauthorized, ResultNotFound, ResultMethodNotAllowed,
	ResultTooLarge, ResultBadRequest, ResultSinkError, ResultUnavailable, ResultBusy,
}

// platformResults are the results of the Platform webhook route.
var platformResults = []string{
	ResultAccepted, ResultIgnored, ResultDuplicate, ResultNoStores, ResultUnauthorized, ResultNotFound,
	ResultMethodNotAllowed, ResultTooLarge, ResultBadRequest, ResultSinkError, ResultUnavailable,
}

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smaregi_receiver_requests_total",
		Help: "Requests to the Smaregi send receiver, by result.",
	}, []string{"result"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "smaregi_receiver_request_duration_seconds",
		Help: "Time from a request's arrival at the receiver to its answer, including the sink, by result.",
		// Sends are answered after a durable write, so the interesting range
		// is a millisecond to a few seconds.
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
	}, []string{"result"})

	platformRequestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smaregi_receiver_platform_requests_total",
		Help: "Requests to the Platform webhook route of the receiver, by result.",
	}, []string{"result"})

	platformRequestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "smaregi_receiver_platform_request_duration_seconds",
		Help: "Time from a Platform webhook's arrival to its answer, including the durable record, by result.",
		// Smaregi waits about 3 s: the buckets around it matter.
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5},
	}, []string{"result"})

	sendsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smaregi_receiver_sends_total",
		Help: "Authenticated sends answered 2xx by the send receiver, by kind (stock_send, transaction_send, other) and pull (stores: recorded, stores marked dirty; none: no store of the contract pulled).",
	}, []string{"kind", "pull"})

	inFlightBytes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "smaregi_receiver_in_flight_bytes",
		Help: "Body bytes the send receiver holds for requests in flight (capped by --receiver-max-in-flight-bytes).",
	})
)

func init() {
	// Pre-create every series so dashboards and alerts see zeros rather
	// than absent series before the first send of each kind.
	for _, r := range allResults {
		requestsTotal.WithLabelValues(r)
		requestDuration.WithLabelValues(r)
	}
	for _, r := range platformResults {
		platformRequestsTotal.WithLabelValues(r)
		platformRequestDuration.WithLabelValues(r)
	}
	for _, k := range []string{KindStockSend, KindTransactionSend, KindOther} {
		for _, p := range []string{PullStores, PullNone} {
			sendsTotal.WithLabelValues(k, p)
		}
	}
	metrics.Registry.MustRegister(requestsTotal, requestDuration, platformRequestsTotal, platformRequestDuration, sendsTotal, inFlightBytes)
}
