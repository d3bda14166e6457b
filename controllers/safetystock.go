package controllers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
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
	"github.com/stocksync/smaregi-operator/internal/statusapply"
)

// SafetyStockFieldManager is the server-side apply field manager of the
// safety stock controller: it owns SafetyStockOverridesValid only.
const SafetyStockFieldManager = "smaregi-operator-safetystock"

// SafetyStockOverridesIndex is the field index of SmaregiStores and of
// StockPools by spec.safetyStockOverridesRef.name, used to find the objects
// a ConfigMap event concerns.
const SafetyStockOverridesIndex = "spec.safetyStockOverridesRef.name"

// SafetyStockReconciler records each SmaregiStore's safety stock
// (spec.safetyStock and the ConfigMap of spec.safetyStockOverridesRef) in
// the inventory, and owns the SafetyStockOverridesValid condition.
//
// Why the inventory, and not the hub API reading the ConfigMap itself: a
// change of safety stock changes products' availability, which channels
// watch, and every such change needs a durable resource version assigned
// in commit order, per store, across replicas (inventory/versions.go).
// The inventory assigns them in the same transaction that stores the new
// values (SetSafetyStock), for exactly the products whose value changed;
// the hub API on every replica then reads values and versions from one
// place, so a listing and a watch always agree. This controller runs on
// the leader, like every other inventory writer.
type SafetyStockReconciler struct {
	// Client is the manager's cached client; its cache holds only
	// ConfigMaps labelled smaregiv1alpha1.SafetyStockOverridesLabel
	// (CacheOptions).
	Client client.Client
	// APIReader reads ConfigMap metadata uncached, only to tell a missing
	// ConfigMap from an unlabelled one.
	APIReader client.Reader
	// Store is the inventory store the hub API reads.
	Store inventory.SafetyStockStore
	// Clock stamps condition transitions; nil is the real clock.
	Clock clock.PassiveClock
	// MissingRecheckInterval is how often a store whose ConfigMap is missing
	// or unlabelled is looked at again. An unlabelled ConfigMap is not in
	// the cache, so creating one without the label makes no event: only
	// this re-check turns ConfigMapNotFound into ConfigMapNotLabelled.
	// Labelling it is an event, so the overrides apply at once. Default
	// DefaultMissingRecheckInterval.
	MissingRecheckInterval time.Duration
}

// DefaultMissingRecheckInterval is SafetyStockReconciler's default
// MissingRecheckInterval.
const DefaultMissingRecheckInterval = time.Minute

// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch

// Reconcile records the store's safety stock and reports the ConfigMap.
func (r *SafetyStockReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var store smaregiv1alpha1.SmaregiStore
	if err := r.Client.Get(ctx, req.NamespacedName, &store); err != nil {
		// A deleted store's inventory data goes with DeleteStore (the
		// sync engine), safety stock included.
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	var res safetystock.Result
	if ref := store.Spec.SafetyStockOverridesRef; ref != nil {
		var err error
		if res, err = safetystock.Read(ctx, r.Client, r.APIReader, store.Namespace, ref.Name); err != nil {
			return ctrl.Result{}, err
		}
	}
	key := inventory.StoreKey{Namespace: store.Namespace, Name: store.Name}
	changed, err := r.Store.SetSafetyStock(ctx, key, inventory.SafetyStock{Default: store.Spec.SafetyStock, Overrides: res.Overrides})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("recording the safety stock of %s: %w", key, err)
	}
	if changed > 0 {
		logf.FromContext(ctx).V(1).Info("safety stock changed", "products", changed, "overrides", len(res.Overrides))
	}
	if err := r.applyCondition(ctx, &store, res); err != nil {
		return ctrl.Result{}, err
	}
	if overridesMissing(res) {
		return ctrl.Result{RequeueAfter: r.MissingRecheckInterval}, nil
	}
	return ctrl.Result{}, nil
}

// applyCondition writes SafetyStockOverridesValid, or removes it when the
// store names no ConfigMap (applying no condition drops the one this field
// manager owned); nothing when the object already shows it.
func (r *SafetyStockReconciler) applyCondition(ctx context.Context, store *smaregiv1alpha1.SmaregiStore, res safetystock.Result) error {
	prev := meta.FindStatusCondition(store.Status.Conditions, smaregiv1alpha1.SafetyStockOverridesValidCondition)
	conds := []metav1.Condition{}
	if store.Spec.SafetyStockOverridesRef != nil {
		c := condition(store.Status.Conditions, overridesCondition(res, store.Generation), r.Clock.Now())
		if prev != nil && prev.Status == c.Status && prev.Reason == c.Reason && prev.Message == c.Message &&
			prev.ObservedGeneration == c.ObservedGeneration {
			return nil
		}
		conds = append(conds, c)
	} else if prev == nil {
		return nil
	}
	raw, err := json.Marshal(struct {
		Conditions []metav1.Condition `json:"conditions"`
	}{conds})
	if err != nil {
		return fmt.Errorf("encode status of %s/%s: %w", store.Namespace, store.Name, err)
	}
	var status map[string]any
	if err := json.Unmarshal(raw, &status); err != nil {
		return fmt.Errorf("decode status of %s/%s: %w", store.Namespace, store.Name, err)
	}
	err = statusapply.Apply(ctx, r.Client, SafetyStockFieldManager, store.Namespace, store.Name, status)
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// overridesCondition is SafetyStockOverridesValid for what
// safetystock.Read found, on a SmaregiStore or a StockPool.
func overridesCondition(res safetystock.Result, generation int64) metav1.Condition {
	return metav1.Condition{
		Type: smaregiv1alpha1.SafetyStockOverridesValidCondition, Status: res.Status, Reason: res.Reason,
		Message: res.Message, ObservedGeneration: generation,
	}
}

// overridesMissing: the ConfigMap is missing or unlabelled, which no cache
// event will report (see SafetyStockReconciler.MissingRecheckInterval).
func overridesMissing(res safetystock.Result) bool {
	return res.Reason == smaregiv1alpha1.ReasonConfigMapNotFound || res.Reason == smaregiv1alpha1.ReasonConfigMapNotLabelled
}

// SetupWithManager registers the index and the watches: SmaregiStores
// (spec changes) and the labelled ConfigMaps, mapped to the stores whose
// safetyStockOverridesRef names them. A ConfigMap that loses its label
// leaves the cache, which is a delete event, so its stores are reconciled
// then too.
func (r *SafetyStockReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.APIReader == nil || r.Store == nil {
		return errors.New("safety stock controller: Client, APIReader and Store are required")
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.MissingRecheckInterval <= 0 {
		r.MissingRecheckInterval = DefaultMissingRecheckInterval
	}
	if err := indexSafetyStockOverrides(mgr, &smaregiv1alpha1.SmaregiStore{}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("safetystock").
		For(&smaregiv1alpha1.SmaregiStore{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.ConfigMap{}, referrersOfConfigMap(r.Client, &smaregiv1alpha1.SmaregiStoreList{}),
			builder.WithPredicates(predicate.ResourceVersionChangedPredicate{})).
		Complete(r)
}

// overridesRefName is the ConfigMap name that a SmaregiStore's or a
// StockPool's spec.safetyStockOverridesRef names (none without one).
func overridesRefName(o client.Object) []string {
	var ref *smaregiv1alpha1.ConfigMapReference
	switch v := o.(type) {
	case *smaregiv1alpha1.SmaregiStore:
		ref = v.Spec.SafetyStockOverridesRef
	case *smaregiv1alpha1.StockPool:
		ref = v.Spec.SafetyStockOverridesRef
	}
	if ref == nil {
		return nil
	}
	return []string{ref.Name}
}

// indexSafetyStockOverrides registers SafetyStockOverridesIndex for obj's
// kind (a SmaregiStore or a StockPool).
func indexSafetyStockOverrides(mgr ctrl.Manager, obj client.Object) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), obj, SafetyStockOverridesIndex, overridesRefName); err != nil {
		return fmt.Errorf("index %T by %s: %w", obj, SafetyStockOverridesIndex, err)
	}
	return nil
}

// referrersOfConfigMap maps a ConfigMap event to the objects of list's kind
// (indexed by indexSafetyStockOverrides) whose safetyStockOverridesRef
// names it. The manager's cache holds only labelled ConfigMaps, so one that
// loses its label leaves the cache: a delete event, which maps the same.
func referrersOfConfigMap(c client.Reader, list client.ObjectList) handler.EventHandler {
	return handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, cm client.Object) []reconcile.Request {
		l, ok := list.DeepCopyObject().(client.ObjectList)
		if !ok {
			return nil
		}
		if err := c.List(ctx, l, client.InNamespace(cm.GetNamespace()),
			client.MatchingFields{SafetyStockOverridesIndex: cm.GetName()}); err != nil {
			logf.FromContext(ctx).Error(err, "listing the referrers of a safety stock ConfigMap", "kind", fmt.Sprintf("%T", l), "configmap", cm.GetName())
			return nil
		}
		var reqs []reconcile.Request
		_ = meta.EachListItem(l, func(o runtime.Object) error {
			if obj, ok := o.(client.Object); ok {
				reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(obj)})
			}
			return nil
		})
		return reqs
	})
}
