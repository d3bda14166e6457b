package storeregistry

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storepredicate"
)

// ControllerName names the registry controller (distinct from the
// SmaregiStore controller's, so their workqueue metrics do not mix).
const ControllerName = "smaregistore-registry"

// RBAC of the registry controller: it only reads SmaregiStores.
// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=smaregistores,verbs=get;list;watch

// Controller keeps a Registry in step with the SmaregiStore objects. It
// does no I/O beyond the cache: pulls and pushes run on their own workers,
// so a slow shop never holds it. Like its consumers (the engine and the
// pusher) it runs on the leader only, controller-runtime's default.
type Controller struct {
	Registry *Registry
	Reader   client.Reader
}

// SetupWithManager registers the controller with mgr.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	if c.Reader == nil {
		c.Reader = mgr.GetClient()
	}
	err := ctrl.NewControllerManagedBy(mgr).
		Named(ControllerName).
		// Status writes (the engine's own included) do not change what the
		// consumers need, except the first sight, which Create covers; a
		// new generation, annotations (a resync request) and the
		// controller's CredentialsValid changing (a fixed Secret lifts the
		// back-off) are what matter.
		For(&v1alpha1.SmaregiStore{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{},
			credentialsValidChanged()))).
		Complete(c)
	if err != nil {
		return fmt.Errorf("building the %s controller: %w", ControllerName, err)
	}
	return nil
}

// Reconcile mirrors one SmaregiStore into the registry.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	key := inventory.StoreKey{Namespace: req.Namespace, Name: req.Name}
	var obj v1alpha1.SmaregiStore
	if err := c.Reader.Get(ctx, req.NamespacedName, &obj); err != nil {
		if apierrors.IsNotFound(err) {
			return reconcile.Result{}, c.Registry.Remove(ctx, key)
		}
		return reconcile.Result{}, fmt.Errorf("reading SmaregiStore %s: %w", key, err)
	}
	// A store being deleted stays in the registry, unsuspended, until the
	// object is gone: the SmaregiStore controller's finalizer holds it
	// while its outbox still has adjustments for Smaregi, and those must be
	// pushed (StoreConfig.Deleting).
	c.Registry.Upsert(ConfigFromObject(&obj))
	return reconcile.Result{}, nil
}

// credentialsValidChanged passes updates whose CredentialsValid condition
// (written by the SmaregiStore controller) changed status or
// lastTransitionTime. Its reason and message, and the controller's periodic
// re-checks that confirm it, do not matter here.
func credentialsValidChanged() predicate.Funcs {
	type verdict struct {
		status metav1.ConditionStatus
		since  time.Time
	}
	return storepredicate.ConditionChanged(v1alpha1.CredentialsValidCondition,
		func(c metav1.Condition) verdict { return verdict{c.Status, c.LastTransitionTime.UTC()} })
}
