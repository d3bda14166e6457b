package mirror

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// RBAC of the engine: it reads the credential Secrets SmaregiStores name
// (uncached, one Get per token TTL), applies its part of their status and
// emits events. It learns of the stores from the registry
// (internal/storeregistry), whose controller reads them.
// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=smaregistores/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager adds the engine to mgr as a leader-only runnable and
// registers the per-store metrics collector. Subscribe the engine to the
// store registry (storeregistry.Registry.Subscribe) to tell it of stores. Options left
// empty are filled from mgr: Client, APIReader (uncached, for the credential
// Secrets) and Recorder.
//
// The receiver's Sink is separate: webhookserver.NewDurableSink with
// Engine.NoteSend, on every replica; it does not need the leader.
func (e *Engine) SetupWithManager(mgr ctrl.Manager) error {
	if e.started.Load() {
		return errors.New("mirror: SetupWithManager after Start")
	}
	if e.opts.Client == nil {
		e.opts.Client = mgr.GetClient()
	}
	if e.opts.APIReader == nil {
		e.opts.APIReader = mgr.GetAPIReader()
	}
	if e.opts.Recorder == nil {
		e.opts.Recorder = mgr.GetEventRecorder(FieldManager)
	}
	e.wire()
	if err := metrics.Registry.Register(e.Collector()); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return fmt.Errorf("mirror: registering the per-store metrics: %w", err)
		}
	}
	if err := mgr.Add(e); err != nil {
		return fmt.Errorf("mirror: adding the engine to the manager: %w", err)
	}
	return nil
}
