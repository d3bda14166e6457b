package mirror

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// ControllerName names the engine's SmaregiStore watch (distinct from the
// SmaregiStore controller's, so their workqueue metrics do not mix).
const ControllerName = "smaregistore-mirror"

// RBAC of the engine: it reads SmaregiStores and the credential Secrets they
// name (uncached, one Get per token TTL), applies its part of their status
// and emits events.
// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=smaregistores,verbs=get;list;watch
// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=smaregistores/status,verbs=get;patch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// SetupWithManager adds the engine to mgr as a leader-only runnable, a
// controller that keeps the engine's store registry in step with the
// SmaregiStore objects, and the per-store metrics collector. Options left
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
	err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		// Status writes (the engine's own included) do not change what the
		// engine needs, except the first sight, which Create covers; a new
		// generation, annotations (a resync request) and the controller's
		// CredentialsValid changing (a fixed Secret lifts the back-off) are
		// what matter.
		For(&v1alpha1.SmaregiStore{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			credentialsValidChanged()))).
		Complete(&registryReconciler{e: e, c: mgr.GetClient()})
	if err != nil {
		return fmt.Errorf("mirror: building the %s controller: %w", ControllerName, err)
	}
	return nil
}

// credentialsValidChanged passes updates whose CredentialsValid condition
// (written by the SmaregiStore controller) changed status or
// lastTransitionTime. Its reason and message, and the controller's periodic
// re-checks that confirm it, do not matter to the engine.
func credentialsValidChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc: func(e event.UpdateEvent) bool {
			o, ok1 := e.ObjectOld.(*v1alpha1.SmaregiStore)
			n, ok2 := e.ObjectNew.(*v1alpha1.SmaregiStore)
			if !ok1 || !ok2 {
				return false
			}
			get := func(s *v1alpha1.SmaregiStore) (metav1.ConditionStatus, time.Time) {
				if c := meta.FindStatusCondition(s.Status.Conditions, v1alpha1.CredentialsValidCondition); c != nil {
					return c.Status, c.LastTransitionTime.Time
				}
				return "", time.Time{}
			}
			s0, t0 := get(o)
			s1, t1 := get(n)
			return s0 != s1 || !t0.Equal(t1)
		},
	}
}

// registryReconciler mirrors SmaregiStore objects into the engine's
// registry. It does no I/O towards Smaregi; pulls run on the engine's own
// workers, so a slow shop never holds this controller.
type registryReconciler struct {
	e *Engine
	c client.Reader
}

func (r *registryReconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := inventory.StoreKey{Namespace: req.Namespace, Name: req.Name}
	var obj v1alpha1.SmaregiStore
	if err := r.c.Get(ctx, req.NamespacedName, &obj); err != nil {
		if apierrors.IsNotFound(err) {
			if err := r.e.RemoveStore(ctx, key); err != nil {
				return reconcile.Result{}, err
			}
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, fmt.Errorf("reading SmaregiStore %s: %w", key, err)
	}
	if !obj.DeletionTimestamp.IsZero() {
		// Being deleted (another finalizer holds it): stop pulling now; the
		// rows go when the object is gone.
		cfg := ConfigFromObject(&obj)
		cfg.Suspend = true
		r.e.UpsertStore(cfg)
		return reconcile.Result{}, nil
	}
	r.e.UpsertStore(ConfigFromObject(&obj))
	return reconcile.Result{}, nil
}
