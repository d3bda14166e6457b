package hubapi

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Route templates, the only values of the route label. Paths are never used
// as labels: they carry namespaces, store names and caller-chosen IDs, which
// would make the series unbounded.
const (
	RouteStock       = "/api/v1/namespaces/{ns}/smaregistores/{name}/stock"
	RouteAdjustments = "/api/v1/namespaces/{ns}/smaregistores/{name}/adjustments"
	RouteAdjustment  = "/api/v1/namespaces/{ns}/smaregistores/{name}/adjustments/{id}"
	RouteOther       = "other"
)

// Values of the review metric's labels.
const (
	reviewToken  = "token"
	reviewAccess = "access"
	sourceCache  = "cache"
	sourceAPI    = "api"
	sourceError  = "error"
	// sourceBusy counts token reviews refused because the bound on
	// concurrent uncached reviews was reached (the caller got 429).
	sourceBusy = "busy"
)

var (
	requestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smaregi_hubapi_requests_total",
		Help: "Requests to the hub API, by route template, method and HTTP status code.",
	}, []string{"route", "method", "code"})

	requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "smaregi_hubapi_request_duration_seconds",
		Help: "Time to answer a hub API request, by route template and method.",
		// From cached reads (sub-millisecond) to a 100,000-row stock listing
		// on a slow link.
		Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"route", "method"})

	reviewsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "smaregi_hubapi_reviews_total",
		Help: "Token and access reviews, by kind (token, access) and where the answer came from (cache, api, error, busy: refused with 429 because too many token reviews were in flight).",
	}, []string{"review", "source"})
)

func init() {
	for _, r := range []string{reviewToken, reviewAccess} {
		for _, s := range []string{sourceCache, sourceAPI, sourceError} {
			reviewsTotal.WithLabelValues(r, s)
		}
	}
	reviewsTotal.WithLabelValues(reviewToken, sourceBusy)
	metrics.Registry.MustRegister(requestsTotal, requestDuration, reviewsTotal)
}

// methodLabel keeps the method label bounded whatever a client sends.
func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS":
		return m
	}
	return "other"
}
