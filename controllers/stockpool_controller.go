package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/safetystock"
	"github.com/stocksync/smaregi-operator/internal/stockpool"
)

// DefaultPoolResyncInterval is how often a pool's SKU count is recounted
// when nothing else wakes it: the mirrors change without any Kubernetes
// event.
const DefaultPoolResyncInterval = time.Minute

// poolSKUPageSize is the page of each member's mirror the SKU count reads.
const poolSKUPageSize = 1000

// StockPoolReconciler writes a StockPool's status: its members and their
// readiness, the distinct products of its active members, and the Ready,
// Reconciling, Stalled and SafetyStockOverridesValid conditions. It is the
// only writer of that status.
// The hub API serves the pool's stock and orders (internal/hubapi), both by
// internal/stockpool's rules, so status and API agree.
type StockPoolReconciler struct {
	// Client is the manager's (cached) client; its cache holds only
	// ConfigMaps labelled smaregiv1alpha1.SafetyStockOverridesLabel.
	Client client.Client
	// APIReader reads ConfigMap metadata uncached, only to tell a missing
	// overrides ConfigMap from an unlabelled one. Required.
	APIReader client.Reader
	// Rows reads the members' mirrors for the SKU count. Required.
	Rows stockpool.RowsPager
	// Clock stamps condition transitions; defaults to the real clock.
	Clock clock.PassiveClock
	// ResyncInterval between recounts; default DefaultPoolResyncInterval.
	ResyncInterval time.Duration
	// MissingRecheckInterval is how often a pool whose overrides ConfigMap
	// is missing or unlabelled is looked at again (when sooner than
	// ResyncInterval), as SafetyStockReconciler.MissingRecheckInterval;
	// default DefaultMissingRecheckInterval.
	MissingRecheckInterval time.Duration
}

// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=stockpools,verbs=get;list;watch
// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=stockpools/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch

// Reconcile implements reconcile.Reconciler.
func (r *StockPoolReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := logf.FromContext(ctx)
	var pool smaregiv1alpha1.StockPool
	if err := r.Client.Get(ctx, req.NamespacedName, &pool); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if pool.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	status := smaregiv1alpha1.StockPoolStatus{ObservedGeneration: pool.Generation, SKUs: pool.Status.SKUs}
	var ready, reason, message string
	var stalled bool
	var retryErr error
	if _, err := metav1.LabelSelectorAsSelector(&pool.Spec.StoreSelector); err != nil {
		ready, reason, stalled = string(metav1.ConditionFalse), smaregiv1alpha1.ReasonInvalidSelector, true
		message = fmt.Sprintf("spec.storeSelector is invalid (%v): fix it", err)
	} else if ms, err := stockpool.Members(ctx, r.Client, &pool); err != nil {
		return ctrl.Result{}, err
	} else {
		var keys []inventory.StoreKey
		for _, m := range ms {
			status.Members = append(status.Members, smaregiv1alpha1.StockPoolMember{Name: m.Name(), Priority: m.Priority, Ready: m.Ready, Active: m.Active})
			if m.Active {
				status.ActiveMembers++
				keys = append(keys, inventory.StoreKey{Namespace: pool.Namespace, Name: m.Name()})
			}
		}
		skus, err := countSKUs(ctx, r.Rows, keys)
		if err != nil {
			// The count is kept; the conditions say why it may be stale.
			log.Error(err, "counting a StockPool's products")
			retryErr = err
		} else {
			status.SKUs = skus
		}
		switch {
		case len(ms) == 0:
			ready, reason = string(metav1.ConditionFalse), smaregiv1alpha1.ReasonNoMembers
			message = "spec.storeSelector selects no SmaregiStore in this namespace: the pool has nothing to sell"
		case status.ActiveMembers == 0:
			ready, reason = string(metav1.ConditionFalse), smaregiv1alpha1.ReasonNoActiveMembers
			message = fmt.Sprintf("none of the %d member SmaregiStores takes orders (suspended, being deleted or Stalled; see their status): the pool has nothing to sell", len(ms))
		default:
			ready, reason = string(metav1.ConditionTrue), smaregiv1alpha1.ReasonSucceeded
			message = fmt.Sprintf("%d of %d member SmaregiStores take orders", status.ActiveMembers, len(ms))
		}
	}
	// The overrides ConfigMap is reported, not used: the hub API reads it
	// itself (see hubapi's poolSafety). It does not affect Ready, as for a
	// store: the pool works with spec.safetyStock alone.
	var overrides *metav1.Condition
	recheck := r.ResyncInterval
	if ref := pool.Spec.SafetyStockOverridesRef; ref != nil {
		res, err := safetystock.Read(ctx, r.Client, r.APIReader, pool.Namespace, ref.Name)
		switch {
		case err != nil:
			log.Error(err, "reading a StockPool's safety stock overrides")
			retryErr = errors.Join(retryErr, err)
			// What was last seen stands until the ConfigMap can be read.
			overrides = meta.FindStatusCondition(pool.Status.Conditions, smaregiv1alpha1.SafetyStockOverridesValidCondition)
		default:
			c := overridesCondition(res, pool.Generation)
			overrides = &c
			if overridesMissing(res) {
				recheck = min(recheck, r.MissingRecheckInterval)
			}
		}
	}
	reconciling := retryErr != nil
	conds := []metav1.Condition{
		{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionStatus(ready), Reason: reason, Message: message},
		boolCondition(smaregiv1alpha1.ReconcilingCondition, reconciling, smaregiv1alpha1.ReasonProgressing, "reading the pool's products or its safety stock overrides failed; retrying"),
		boolCondition(smaregiv1alpha1.StalledCondition, stalled, reason, message),
	}
	for _, c := range conds {
		c.ObservedGeneration = pool.Generation
		status.Conditions = append(status.Conditions, condition(pool.Status.Conditions, c, now))
	}
	if overrides != nil {
		status.Conditions = append(status.Conditions, condition(pool.Status.Conditions, *overrides, now))
	}
	if !equalPoolStatus(pool.Status, status) {
		patch := client.MergeFrom(pool.DeepCopy())
		pool.Status = status
		if err := r.Client.Status().Patch(ctx, &pool, patch); err != nil {
			if apierrors.IsNotFound(err) {
				return ctrl.Result{}, nil
			}
			return ctrl.Result{}, fmt.Errorf("writing the status of StockPool %s: %w", req.NamespacedName, err)
		}
	}
	if retryErr != nil {
		return ctrl.Result{}, retryErr
	}
	return ctrl.Result{RequeueAfter: recheck}, nil
}

// boolCondition is a kstatus condition: True with reason and message, or
// False.
func boolCondition(typ string, on bool, reason, message string) metav1.Condition {
	if on {
		return metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: message}
	}
	return metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonSucceeded}
}

// equalPoolStatus compares what the controller writes, conditions without
// their times (condition() keeps the time of an unchanged status).
func equalPoolStatus(a, b smaregiv1alpha1.StockPoolStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.ActiveMembers != b.ActiveMembers || a.SKUs != b.SKUs ||
		len(a.Members) != len(b.Members) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Members {
		if a.Members[i] != b.Members[i] {
			return false
		}
	}
	for _, c := range b.Conditions {
		p := meta.FindStatusCondition(a.Conditions, c.Type)
		if p == nil || p.Status != c.Status || p.Reason != c.Reason || p.Message != c.Message ||
			p.ObservedGeneration != c.ObservedGeneration || !p.LastTransitionTime.Equal(&c.LastTransitionTime) {
			return false
		}
	}
	return true
}

// countSKUs counts the distinct products of the stores' mirrors, in pages.
func countSKUs(ctx context.Context, rows stockpool.RowsPager, keys []inventory.StoreKey) (int64, error) {
	var n int64
	err := stockpool.Merge(ctx, rows, keys, poolSKUPageSize, func(string, []stockpool.MemberRow) error {
		n++
		return nil
	})
	return n, err
}

// SetupWithManager registers the controller: it reconciles a pool when the
// pool changes, when a SmaregiStore of its namespace does (a store may
// join, leave or change readiness) and when the ConfigMap its
// safetyStockOverridesRef names does.
func (r *StockPoolReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.APIReader == nil || r.Rows == nil {
		return errors.New("stockpool controller: Client, APIReader and Rows are required")
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.ResyncInterval <= 0 {
		r.ResyncInterval = DefaultPoolResyncInterval
	}
	if r.MissingRecheckInterval <= 0 {
		r.MissingRecheckInterval = DefaultMissingRecheckInterval
	}
	if err := indexSafetyStockOverrides(mgr, &smaregiv1alpha1.StockPool{}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&smaregiv1alpha1.StockPool{}).
		Watches(&smaregiv1alpha1.SmaregiStore{}, handler.EnqueueRequestsFromMapFunc(r.poolsOfStore)).
		Watches(&corev1.ConfigMap{}, referrersOfConfigMap(r.Client, &smaregiv1alpha1.StockPoolList{}),
			builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		Named("stockpool").
		Complete(r)
}

// poolsOfStore maps a SmaregiStore to every pool of its namespace: pools
// are few, and a label change can take a store into or out of any of them.
func (r *StockPoolReconciler) poolsOfStore(ctx context.Context, o client.Object) []reconcile.Request {
	var list smaregiv1alpha1.StockPoolList
	if err := r.Client.List(ctx, &list, client.InNamespace(o.GetNamespace())); err != nil {
		logf.FromContext(ctx).Error(err, "listing the StockPools of a SmaregiStore's namespace")
		return nil
	}
	out := make([]reconcile.Request, len(list.Items))
	for i, p := range list.Items {
		out[i] = reconcile.Request{NamespacedName: types.NamespacedName{Namespace: p.Namespace, Name: p.Name}}
	}
	return out
}
