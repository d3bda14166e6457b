package metricsreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRegisterReusesTheCollectorAlreadyRegistered(t *testing.T) {
	opts := prometheus.CounterOpts{Name: "metricsreg_test_total", Help: "test counter"}
	first := Register(prometheus.NewCounter(opts))
	second := Register(prometheus.NewCounter(opts))
	second.Inc()
	if got := testutil.ToFloat64(first); got != 1 {
		t.Fatalf("the second registration counted apart: first counter = %v, want 1", got)
	}
}
