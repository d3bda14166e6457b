package smaregihttp

import (
	"context"
	"errors"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

type limiterFunc func(context.Context) error

func (f limiterFunc) Wait(ctx context.Context) error { return f(ctx) }

// TestCallMetricsNamesAndCounts: the names come from the prefix, the call's
// label is the one given, and what the manager's /metrics would serve
// counts each attempt once; a failed limiter wait is not observed as a wait.
func TestCallMetricsNamesAndCounts(t *testing.T) {
	opts := MetricsOpts{Prefix: "smaregihttp_test", CallLabel: "call_name",
		RequestsHelp: "r", DurationHelp: "d", LimiterWaitHelp: "w"}
	m := NewCallMetrics(opts)
	ctx := context.Background()

	if err := m.WaitLimiter(ctx, nil); err != nil {
		t.Fatalf("no limiter: %v", err)
	}
	if err := m.WaitLimiter(ctx, limiterFunc(func(context.Context) error { return nil })); err != nil {
		t.Fatal(err)
	}
	refused := errors.New("would exceed the deadline")
	if err := m.WaitLimiter(ctx, limiterFunc(func(context.Context) error { return refused })); err != refused {
		t.Fatalf("limiter error = %v, want it as it is", err)
	}
	m.Count("ref", "transient")
	m.Observe("ref", "success", time.Now())
	// A second registration (a second client package instance, a test)
	// counts into the same series.
	NewCallMetrics(opts).Observe("ref", "success", time.Now())

	got := gather(t)
	want := map[string]float64{
		`smaregihttp_test_requests_total{call_name="ref",outcome="success"}`:   2,
		`smaregihttp_test_requests_total{call_name="ref",outcome="transient"}`: 1,
		`smaregihttp_test_request_duration_seconds{call_name="ref"}`:           2,
		`smaregihttp_test_rate_limiter_wait_seconds{}`:                         1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (served: %v)", k, got[k], v, got)
		}
	}
}

// gather reads controller-runtime's registry: counters by value,
// histograms by sample count, keyed name{label="value",…}.
func gather(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{"
			for i, l := range m.GetLabel() {
				if i > 0 {
					key += ","
				}
				key += l.GetName() + `="` + l.GetValue() + `"`
			}
			key += "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				out[key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}
