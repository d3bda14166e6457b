// Package metricsreg registers the operator's collectors on
// controller-runtime's registry, the one the manager serves on /metrics.
package metricsreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// Register registers c and returns the collector to use. A collector already
// registered under the same name and shape (by a second instance of the same
// package, or a test) is returned instead, so counts are not split. Any other
// error is a programming error in a descriptor; the collector is then served
// unregistered rather than crashing the operator.
func Register[C prometheus.Collector](c C) C {
	if err := metrics.Registry.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
