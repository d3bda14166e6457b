// Package controller reconciles SmaregiStore objects: it checks each shop's
// credentials against Smaregi, provisions and rotates the receiver key
// Secret, publishes the receiver URL, and owns the Ready, Reconciling,
// Stalled, CredentialsValid and ReceiverReady conditions.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/storepredicate"
	"github.com/stocksync/smaregi-operator/internal/watchscope"
)

// Defaults for the reconciler's intervals.
const (
	DefaultRecheckInterval        = 10 * time.Minute
	DefaultStalledRecheckInterval = time.Hour
	DefaultKeyRotationGrace       = 24 * time.Hour
)

// DefaultStoreConcurrentReconciles is how many SmaregiStores the controller
// reconciles at once by default. One (controller-runtime's default) made
// 10,000 new stores wait ~25 minutes for Ready, one credential check and a
// few API writes after another. More workers do not call Smaregi faster
// than allowed: every credential check waits for its contract's limiter
// (--smaregi-rate-limit), and stores of one contract that update the shared
// key Secret at once get a conflict and retry. Small, because each worker
// also writes to the API server.
const DefaultStoreConcurrentReconciles = 4

// CredentialsSecretIndex is the field index of SmaregiStores by
// spec.credentialsRef.name, used to find the stores a Secret event concerns.
const CredentialsSecretIndex = "spec.credentialsRef.name"

// CacheOptions returns the manager cache options the controllers need:
// full Secret objects are cached only when labelled as created by this
// operator (the receiver key Secrets), so the operator never holds every
// token and certificate of the cluster in memory; ConfigMaps only when
// labelled as safety stock overrides (SafetyStockReconciler,
// StockPoolReconciler and the hub API's pool safety stock). With namespaces
// (--watch-namespaces) every informer lists and watches only there; none
// means every namespace. cmd/main.go and the tests both use it.
//
// Cached objects carry no metadata.managedFields: with several status
// writers (internal/statusapply) each SmaregiStore has four or more field
// managers, whose field sets were the largest part of every cached store
// (docs/benchmarks.md, the scale section), and nothing in the operator reads
// them: status is written by server-side apply, which the API server
// computes from its own copy, and an Update of an object without
// managedFields leaves the server's unchanged.
func CacheOptions(namespaces ...string) cache.Options {
	return cache.Options{
		DefaultNamespaces: watchscope.CacheNamespaces(namespaces),
		DefaultTransform:  cache.TransformStripManagedFields(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}:    {Label: labels.SelectorFromSet(labels.Set{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue})},
			&corev1.ConfigMap{}: {Label: labels.SelectorFromSet(labels.Set{smaregiv1alpha1.SafetyStockOverridesLabel: "true"})},
		},
	}
}

// SmaregiStoreReconciler reconciles a SmaregiStore. Set the exported fields,
// then call SetupWithManager; zero durations and a nil Clock get defaults.
type SmaregiStoreReconciler struct {
	// Client is the manager's (cached) client.
	Client client.Client
	// APIReader reads the credentials Secret uncached (mgr.GetAPIReader()).
	APIReader client.Reader
	Scheme    *runtime.Scheme
	// Recorder emits events (mgr.GetEventRecorder("smaregi-operator")).
	Recorder events.EventRecorder
	// Clock drives rotation grace, expiry and re-check timing; tests use a
	// fake one.
	Clock clock.PassiveClock
	// Checker verifies credentials; NewSmaregiChecker in production.
	Checker CredentialChecker
	// ReceiverBaseURL is the external base URL of the receiver (scheme and
	// host, optionally a path); status.receiver.url is this plus
	// /smaregi/v1/<routeID>.
	ReceiverBaseURL string
	// PlatformWebhook is where the operator-wide Platform webhook key is
	// and how Smaregi must send it, published as status.receiver.webhookKey
	// of every Platform store (with ReceiverBaseURL +
	// PlatformWebhookPath as status.receiver.url). Nil means the operator
	// runs without a Platform webhook route.
	PlatformWebhook *smaregiv1alpha1.WebhookKeyReference
	// KeyRotationGrace is how long the previous receiver key stays valid
	// after a rotation. Default 24h.
	KeyRotationGrace time.Duration
	// RecheckInterval between credential checks that succeeded (±10%
	// jitter), and the cap of the transient back-off. Default 10m.
	RecheckInterval time.Duration
	// StalledRecheckInterval between checks after Smaregi reported a
	// configuration error (bad token, function off). A changed token is
	// checked at once regardless. Default 1h.
	StalledRecheckInterval time.Duration
	// WatchNamespaces limits the Secret metadata watch to these namespaces
	// (--watch-namespaces, the same list as CacheOptions); empty watches
	// every namespace.
	WatchNamespaces []string
	// Outbox reads (and on request discards) the store's pending
	// adjustments, so that a deleted store stays until they reached
	// Smaregi. Required.
	Outbox Outbox
	// DeletionRecheckInterval between reads of a deleted store's outbox
	// while the deletion waits. Default DefaultDeletionRecheckInterval.
	DeletionRecheckInterval time.Duration
	// MaxConcurrentReconciles is how many stores are reconciled at once.
	// Default DefaultStoreConcurrentReconciles.
	MaxConcurrentReconciles int

	states sync.Map // types.NamespacedName -> *storeState
	// wake brings a store back into the queue from outside the watches
	// (NoteUnknownStore).
	wake chan event.TypedGenericEvent[client.Object]
}

// storeState is the per-store memory that must not live in the object.
type storeState struct {
	mu        sync.Mutex
	check     *checkRecord
	announced map[string]condKey
	// deletionPending is the pending count last announced while the
	// deletion waits, so that the event repeats only when it changes.
	deletionPending int64
	// refusedStore: Smaregi refused an adjustment because the store ID
	// does not exist (NoteUnknownStore); cleared when a check finds stock
	// rows for it.
	refusedStore bool
}

func (r *SmaregiStoreReconciler) state(key types.NamespacedName) *storeState {
	v, _ := r.states.LoadOrStore(key, &storeState{})
	return v.(*storeState)
}

// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=smaregistores,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=smaregistores/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=smaregi.stocksync.io,resources=smaregistores/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile is thin: load the object, run the steps in order, and write
// the status in a deferred function so that every exit path reports what
// was found. Each step owns one condition.
func (r *SmaregiStoreReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	log := logf.FromContext(ctx)
	store := &smaregiv1alpha1.SmaregiStore{}
	if err := r.Client.Get(ctx, req.NamespacedName, store); err != nil {
		if apierrors.IsNotFound(err) {
			// Deleted: the key Secret goes with the garbage collector.
			r.states.Delete(req.NamespacedName)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, fmt.Errorf("get SmaregiStore %s: %w", req.NamespacedName, err)
	}
	// Design principle 5: a deleted store stays until its outbox has
	// reached Smaregi (or the user discards it on purpose).
	var waiting string
	if store.DeletionTimestamp.IsZero() {
		if err := r.ensureFinalizer(ctx, store); err != nil {
			return ctrl.Result{}, err
		}
	} else {
		if !controllerutil.ContainsFinalizer(store, smaregiv1alpha1.OutboxFinalizer) {
			return ctrl.Result{}, nil
		}
		w, err := r.finalize(ctx, store)
		if err != nil || w == "" {
			return ctrl.Result{}, err
		}
		waiting = w
	}

	var (
		recv, cred stepResult
		receiver   *smaregiv1alpha1.ReceiverStatus
	)
	defer func() {
		desired := summarize(store, cred, recv, receiver, r.Clock.Now())
		if waiting != "" {
			deletionStatus(&desired, store, waiting, r.Clock.Now())
		}
		if err := r.applyStatus(ctx, store, desired); err != nil {
			result, retErr = ctrl.Result{}, errors.Join(retErr, err)
			return
		}
		r.announce(store, desired)
		if ready := meta.FindStatusCondition(desired.Conditions, smaregiv1alpha1.ReadyCondition); ready != nil {
			log.V(1).Info("reconciled", "ready", ready.Status, "reason", ready.Reason, "requeueAfter", result.RequeueAfter)
		}
	}()

	switch {
	case waiting != "" && !store.IsPlatform():
		// A store on its way out gets no new or rotated key.
		recv = stepResult{keepPrevious: true}
	case store.IsPlatform():
		// Smaregi has one webhook URL per app: a Platform store has no
		// route or key Secret of its own.
		recv, receiver = r.reconcilePlatformReceiver(store)
	default:
		recv, receiver = r.reconcileReceiver(ctx, store)
	}
	cred = r.reconcileCredentials(ctx, store)

	if err := errors.Join(recv.err, cred.err); err != nil {
		return ctrl.Result{}, err
	}
	next := soonest(recv.requeueAfter, cred.requeueAfter)
	if waiting != "" {
		next = soonest(next, r.DeletionRecheckInterval)
	}
	return ctrl.Result{RequeueAfter: next}, nil
}

// soonest returns the smallest positive duration, or 0.
func soonest(ds ...time.Duration) time.Duration {
	var out time.Duration
	for _, d := range ds {
		if d > 0 && (out == 0 || d < out) {
			out = d
		}
	}
	return out
}

// secretMetadataCache is a cache with no label restriction, used only for
// the metadata watch on Secrets. It implements GetCache so that the manager
// starts and syncs it with its own caches, before the controllers.
//
// Why not the builder's WatchesMetadata: the manager's cache selects by
// GVK, so a metadata informer for Secrets in it inherits the managed-by
// label selector of CacheOptions and would never see users' credentials
// Secrets. This second cache holds only names (see stripToIdentity).
type secretMetadataCache struct{ cache.Cache }

func (c secretMetadataCache) GetCache() cache.Cache { return c.Cache }

// stripToIdentity keeps only what mapping an event to stores needs, so
// watching every Secret of the cluster costs a few bytes each.
func stripToIdentity(obj any) (any, error) {
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		m.ObjectMeta = metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion}
	}
	return obj, nil
}

// SetupWithManager validates the options, registers the field index and
// the watches: SmaregiStores, the owned key Secrets, and the metadata of
// every Secret (mapped to the stores whose credentialsRef names it).
func (r *SmaregiStoreReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Client == nil || r.APIReader == nil || r.Scheme == nil || r.Recorder == nil || r.Checker == nil || r.Outbox == nil {
		return errors.New("smaregistore controller: Client, APIReader, Scheme, Recorder, Checker and Outbox are required")
	}
	u, err := url.Parse(r.ReceiverBaseURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("smaregistore controller: ReceiverBaseURL %q must be an absolute http(s) URL", r.ReceiverBaseURL)
	}
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.KeyRotationGrace <= 0 {
		r.KeyRotationGrace = DefaultKeyRotationGrace
	}
	if r.RecheckInterval <= 0 {
		r.RecheckInterval = DefaultRecheckInterval
	}
	if r.StalledRecheckInterval <= 0 {
		r.StalledRecheckInterval = DefaultStalledRecheckInterval
	}
	if r.DeletionRecheckInterval <= 0 {
		r.DeletionRecheckInterval = DefaultDeletionRecheckInterval
	}
	if r.MaxConcurrentReconciles <= 0 {
		r.MaxConcurrentReconciles = DefaultStoreConcurrentReconciles
	}

	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &smaregiv1alpha1.SmaregiStore{}, CredentialsSecretIndex,
		func(o client.Object) []string {
			s, ok := o.(*smaregiv1alpha1.SmaregiStore)
			if !ok || s.Spec.CredentialsRef.Name == "" {
				return nil
			}
			return []string{s.Spec.CredentialsRef.Name}
		}); err != nil {
		return fmt.Errorf("index SmaregiStores by %s: %w", CredentialsSecretIndex, err)
	}

	metaCache, err := cache.New(mgr.GetConfig(), cache.Options{
		HTTPClient: mgr.GetHTTPClient(), Scheme: mgr.GetScheme(), Mapper: mgr.GetRESTMapper(),
		DefaultTransform: stripToIdentity,
		// Outside the watched namespaces the operator may have no right
		// to list Secrets at all (namespaced RBAC).
		DefaultNamespaces: watchscope.CacheNamespaces(r.WatchNamespaces),
		// Nothing may read full objects through this cache by accident.
		ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return fmt.Errorf("create Secret metadata cache: %w", err)
	}
	if err := mgr.Add(secretMetadataCache{metaCache}); err != nil {
		return fmt.Errorf("add Secret metadata cache: %w", err)
	}
	r.wake = make(chan event.TypedGenericEvent[client.Object], 64)
	secretMeta := &metav1.PartialObjectMetadata{}
	secretMeta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))

	return ctrl.NewControllerManagedBy(mgr).
		Named("smaregistore").
		WithOptions(controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles}).
		// Our own status writes must not trigger us again (that would
		// re-run the steps for nothing); spec, annotation (rotate-key) and
		// the sync engine's InventorySynced (an input of Ready) do.
		For(&smaregiv1alpha1.SmaregiStore{}, builder.WithPredicates(predicate.Or[client.Object](
			predicate.GenerationChangedPredicate{},
			predicate.AnnotationChangedPredicate{},
			inventorySyncedChanged(),
		))).
		// The contract's key Secret has every store of the contract as an
		// owner (no controller): a change to it concerns all of them.
		Watches(&corev1.Secret{}, handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &smaregiv1alpha1.SmaregiStore{})).
		WatchesRawSource(source.Kind[client.Object](metaCache, secretMeta,
			handler.EnqueueRequestsFromMapFunc(r.storesForSecret),
			predicate.ResourceVersionChangedPredicate{})).
		WatchesRawSource(source.Channel(r.wake, &handler.EnqueueRequestForObject{})).
		Complete(r)
}

// storesForSecret maps a Secret to the stores whose credentialsRef names it.
func (r *SmaregiStoreReconciler) storesForSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var stores smaregiv1alpha1.SmaregiStoreList
	if err := r.Client.List(ctx, &stores, client.InNamespace(secret.GetNamespace()),
		client.MatchingFields{CredentialsSecretIndex: secret.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "listing SmaregiStores for a credentials Secret", "secret", secret.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(stores.Items))
	for _, s := range stores.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&s)})
	}
	return reqs
}

// inventorySyncedChanged passes updates whose InventorySynced condition
// changed status, reason or message, because Ready depends on it and quotes
// its reason and message while it is False. Nothing else of the condition
// is compared (the sync engine rewrites status often; observedGeneration and
// status.inventory changes say nothing new to Ready).
func inventorySyncedChanged() predicate.Funcs {
	type verdict struct {
		status          metav1.ConditionStatus
		reason, message string
	}
	return storepredicate.ConditionChanged(smaregiv1alpha1.InventorySyncedCondition,
		func(c metav1.Condition) verdict { return verdict{c.Status, c.Reason, c.Message} })
}
