// Package mirror is the sync engine: it keeps each SmaregiStore's stock
// mirror equal to Smaregi's, seconds after any change in the shop, and says
// in status how fresh and how correct it is.
//
// Design principle "edges trigger, levels decide": a send from Smaregi, a poll
// interval or start-up only wakes a store; the engine then reads stock levels
// with stock_ref and never derives stock from a send's payload. Per store at
// most one pull is in flight and any number of triggers during it coalesce
// into one follow-up pull (client-go's workqueue gives exactly that).
package mirror

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// FieldManager is the server-side apply field manager of the engine's status
// writes. It differs from the SmaregiStore controller's so that each owns
// only its own fields: InventorySynced and status.inventory here.
const FieldManager = "smaregi-operator-mirror"

// Defaults of Options.
const (
	DefaultWorkers            = 4
	DefaultOverlap            = 60 * time.Second
	DefaultStatusInterval     = 5 * time.Second
	DefaultTokenTTL           = 5 * time.Minute
	DefaultTick               = time.Second
	DefaultPollInterval       = time.Minute
	DefaultFullResyncInterval = time.Hour
	DefaultRetryBase          = time.Second
	DefaultRetryMax           = 5 * time.Minute
	DefaultConfigBackoff      = time.Minute
	DefaultConfigBackoffMax   = 15 * time.Minute
)

// Trigger says why a pull was asked for; it is the "trigger" label of
// smaregi_mirror_pulls_total.
type Trigger string

const (
	TriggerSend       Trigger = "send"
	TriggerPoll       Trigger = "poll"
	TriggerStartup    Trigger = "startup"
	TriggerFull       Trigger = "full"
	TriggerAdjustment Trigger = "adjustment"
)

type triggerSet uint8

const (
	trigSend triggerSet = 1 << iota
	trigPoll
	trigStartup
	trigFull
	trigAdjustment
)

func (t Trigger) bit() triggerSet {
	switch t {
	case TriggerSend:
		return trigSend
	case TriggerStartup:
		return trigStartup
	case TriggerFull:
		return trigFull
	case TriggerAdjustment:
		return trigAdjustment
	default:
		return trigPoll
	}
}

// label picks the trigger a pull is counted under when several coalesced:
// the most specific reason wins.
func (s triggerSet) label(kind string, initial bool) Trigger {
	switch {
	case kind == KindFull && initial:
		return TriggerStartup
	case kind == KindFull:
		return TriggerFull
	case s&trigSend != 0:
		return TriggerSend
	case s&trigAdjustment != 0:
		return TriggerAdjustment
	case s&trigStartup != 0:
		return TriggerStartup
	default:
		return TriggerPoll
	}
}

// StoreConfig is what the engine needs of one SmaregiStore. The watch fills
// it from the object; tests build it directly.
type StoreConfig struct {
	Key        inventory.StoreKey
	UID        types.UID
	Generation int64
	ContractID string
	StoreID    string
	Endpoint   string
	// CredentialsSecret and CredentialsKey locate the access token in the
	// store's namespace.
	CredentialsSecret  string
	CredentialsKey     string
	PollInterval       time.Duration
	FullResyncInterval time.Duration
	Suspend            bool
	// Synced is the InventorySynced condition found on the object, so that
	// a restarted leader keeps its lastTransitionTime.
	Synced *metav1.Condition
	// CredentialsValid and CredentialsValidSince are the status and
	// lastTransitionTime of the SmaregiStore controller's CredentialsValid
	// condition on the object (empty when it has none). Its turning True
	// says the user fixed the Secret (or what Smaregi rejected), so it lifts
	// a configuration back-off like a new generation does.
	CredentialsValid      metav1.ConditionStatus
	CredentialsValidSince time.Time
	// ResyncRequest is the resync-requested-at annotation; HandledResync the
	// request whose full reconcile status already reports. A request that
	// differs from both the handled one and the one in hand asks for a full
	// reconcile, so neither a restart nor a re-list repeats it.
	ResyncRequest string
	HandledResync string
}

// ConfigFromObject builds a StoreConfig from a SmaregiStore, with defaults.
func ConfigFromObject(obj *v1alpha1.SmaregiStore) StoreConfig {
	cfg := StoreConfig{
		Key:                inventory.StoreKey{Namespace: obj.Namespace, Name: obj.Name},
		UID:                obj.UID,
		Generation:         obj.Generation,
		ContractID:         obj.Spec.ContractID,
		StoreID:            obj.Spec.StoreID,
		Endpoint:           obj.EndpointURL(),
		CredentialsSecret:  obj.Spec.CredentialsRef.Name,
		CredentialsKey:     obj.CredentialsKey(),
		PollInterval:       DefaultPollInterval,
		FullResyncInterval: DefaultFullResyncInterval,
		Suspend:            obj.Spec.Suspend,
		ResyncRequest:      obj.Annotations[v1alpha1.ResyncRequestAnnotation],
	}
	if inv := obj.Status.Inventory; inv != nil {
		cfg.HandledResync = inv.LastHandledResyncRequest
	}
	if d := obj.Spec.Sync.PollInterval; d != nil && d.Duration > 0 {
		cfg.PollInterval = d.Duration
	}
	if d := obj.Spec.Sync.FullResyncInterval; d != nil && d.Duration > 0 {
		cfg.FullResyncInterval = d.Duration
	}
	for i := range obj.Status.Conditions {
		switch c := obj.Status.Conditions[i]; c.Type {
		case v1alpha1.InventorySyncedCondition:
			cfg.Synced = &c
		case v1alpha1.CredentialsValidCondition:
			cfg.CredentialsValid, cfg.CredentialsValidSince = c.Status, c.LastTransitionTime.Time
		}
	}
	return cfg
}

func (c *StoreConfig) defaults() {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.FullResyncInterval <= 0 {
		c.FullResyncInterval = DefaultFullResyncInterval
	}
	if c.Endpoint == "" {
		c.Endpoint = v1alpha1.DefaultEndpoint
	}
	if c.CredentialsKey == "" {
		c.CredentialsKey = v1alpha1.DefaultCredentialsKey
	}
}

// Options configures an Engine. Inventory is required; Readers too until the
// smaregi client is linked in by default (see DefaultReaders).
type Options struct {
	Inventory inventory.Store
	// Client writes status with server-side apply. Ignored when Status is
	// set. SetupWithManager fills it from the manager.
	Client client.Client
	// APIReader reads credential Secrets uncached: the manager's cache holds
	// only labelled Secrets. Ignored when Tokens is set. SetupWithManager
	// fills it from the manager.
	APIReader client.Reader
	// Limiters is the process-wide per-contract rate limiter registry,
	// shared with every other Smaregi caller.
	Limiters *smaregi.LimiterRegistry
	// Recorder emits Kubernetes events (initial import, drift). Optional.
	Recorder events.EventRecorder
	// Clock drives scheduling, back-off and status rate limiting.
	Clock clock.WithTicker
	// Workers is the number of stores pulled at once.
	Workers int
	// Overlap is re-read below the watermark on each incremental pull.
	Overlap time.Duration
	// StatusInterval is the least time between two status writes of one
	// store; a change of the InventorySynced condition is written at once.
	StatusInterval time.Duration
	// TokenTTL is how long an access token read from its Secret is reused.
	TokenTTL time.Duration
	// Tick is the resolution of the poll and full-resync schedule.
	Tick time.Duration
	// RetryBase and RetryMax bound the per-store exponential back-off after
	// transient errors; ConfigBackoff and ConfigBackoffMax after
	// configuration errors, which need a human and must not hammer Smaregi.
	RetryBase, RetryMax             time.Duration
	ConfigBackoff, ConfigBackoffMax time.Duration
	Log                             logr.Logger
	// Readers builds StockReaders; default DefaultReaders with Limiters.
	Readers ReaderFactory
	// Tokens supplies access tokens; default reads the Secret via APIReader.
	Tokens TokenSource
	// Status writes status; default applies it via Client.
	Status StatusWriter
	// OnSendSynced, if set, is called with the send→mirror lag each time a
	// pull finishes that covers a pending send: the time from the oldest
	// such send's ReceivedAt to the end of the first successful pull that
	// started after it. It is also observed in smaregi_mirror_send_lag_seconds.
	OnSendSynced func(key inventory.StoreKey, lag time.Duration)
	// OnStoreChanged, if set, is called when a known store's configuration
	// changes in a way that may end a configuration error (a new
	// generation such as an unsuspend, other credentials, credentials found
	// valid), so that others waiting on the store (the adjustment pusher)
	// retry now rather than after their back-off.
	OnStoreChanged func(key inventory.StoreKey)
}

// Engine is the sync engine. Create it with New; run it with Start (on the
// leader only) or add it to a manager with SetupWithManager.
type Engine struct {
	opts    Options
	inv     inventory.Store
	clock   clock.WithTicker
	log     logr.Logger
	puller  puller
	queue   workqueue.TypedRateLimitingInterface[inventory.StoreKey]
	retry   workqueue.TypedRateLimiter[inventory.StoreKey]
	readers ReaderFactory
	tokens  TokenSource
	status  StatusWriter
	metrics *engineMetrics

	started   atomic.Bool
	startedAt atomic.Pointer[time.Time]
	kick      chan struct{} // wakes the status loop for a condition change

	mu     sync.Mutex
	stores map[inventory.StoreKey]*storeState

	// onSweep, set by tests before Start, sees the start-up orphan sweep's
	// outcome.
	onSweep func(OrphanSweep, error)
}

// storeState is the engine's in-memory view of one store. Guarded by
// Engine.mu; nothing in it is written while I/O is in progress without the
// lock.
type storeState struct {
	key   inventory.StoreKey
	cfg   StoreConfig
	known bool // a SmaregiStore object exists (triggers may come earlier)

	loaded   bool // summary read from the inventory
	everFull bool // a full sync was committed (no initial import needed)
	lastPull time.Time
	lastFull time.Time
	fullDur  time.Duration
	// widen enlarges the next incremental query window by the duration of
	// the last full reconcile: rows changed while a long full scan was
	// under way may have been read before their change.
	widen         time.Duration
	fullRequested bool
	// resyncInHand is the resync request a queued or running full reconcile
	// answers; handledResync the last one a full reconcile finished.
	resyncInHand, handledResync string

	pending      triggerSet
	inflight     bool
	blockedUntil time.Time
	cfgBackoff   time.Duration

	skus  int64
	drift int64

	// Send tracking for lastSendTime and the send→mirror lag.
	lastSend      time.Time
	pendingSince  time.Time // oldest send not covered by a started pull
	inflightStart time.Time
	covered       time.Time // oldest send the in-flight pull covers

	cond         condState
	condDirty    bool
	statusDirty  bool
	lastWrite    time.Time
	reader       StockReader
	readerConfig ReaderConfig
}

type condState struct {
	status  metav1.ConditionStatus
	reason  string
	message string
	since   time.Time
}

// New returns an engine. It does no I/O; Start runs it.
func New(opts Options) (*Engine, error) {
	if opts.Inventory == nil {
		return nil, errors.New("mirror: Options.Inventory is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Overlap <= 0 {
		opts.Overlap = DefaultOverlap
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = DefaultStatusInterval
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = DefaultRetryBase
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.ConfigBackoff <= 0 {
		opts.ConfigBackoff = DefaultConfigBackoff
	}
	if opts.ConfigBackoffMax <= 0 {
		opts.ConfigBackoffMax = DefaultConfigBackoffMax
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	e := &Engine{
		opts:    opts,
		inv:     opts.Inventory,
		clock:   opts.Clock,
		log:     opts.Log,
		puller:  puller{inv: opts.Inventory, overlap: opts.Overlap, now: opts.Clock.Now},
		retry:   workqueue.NewTypedItemExponentialFailureRateLimiter[inventory.StoreKey](opts.RetryBase, opts.RetryMax),
		kick:    make(chan struct{}, 1),
		stores:  map[inventory.StoreKey]*storeState{},
		metrics: getMetrics(),
	}
	// The queue's own rate limiter is unused (back-off is decided per store
	// in sync, where triggers arriving during a back-off are held rather
	// than hammering Smaregi); the queue gives per-key dedupe and "re-queue
	// once after Done" coalescing.
	e.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedMaxOfRateLimiter[inventory.StoreKey](),
		workqueue.TypedRateLimitingQueueConfig[inventory.StoreKey]{Name: "smaregi_mirror_pulls", Clock: opts.Clock},
	)
	e.wire()
	return e, nil
}

// wire builds the collaborators that depend on options SetupWithManager may
// fill in late.
func (e *Engine) wire() {
	e.readers = e.opts.Readers
	if e.readers == nil {
		e.readers = DefaultReaders(smaregi.Options{Limiters: e.opts.Limiters})
	}
	e.tokens = e.opts.Tokens
	if e.tokens == nil && e.opts.APIReader != nil {
		e.tokens = NewSecretTokens(e.opts.APIReader, e.opts.TokenTTL, e.clock)
	}
	e.status = e.opts.Status
	if e.status == nil && e.opts.Client != nil {
		e.status = NewStatusApplier(e.opts.Client)
	}
}

// NeedLeaderElection makes the engine a leader-only runnable: two replicas
// pulling the same store would only double the calls to Smaregi.
func (e *Engine) NeedLeaderElection() bool { return true }

// Start runs the engine until ctx ends. It implements manager.Runnable.
func (e *Engine) Start(ctx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("mirror: engine started twice")
	}
	if e.tokens == nil {
		return errors.New("mirror: no TokenSource and no APIReader to read credentials with")
	}
	now := e.clock.Now()
	e.startedAt.Store(&now)
	// Subscribe before listing the dirty marks, so a mark made in between is
	// delivered rather than lost.
	subCtx, cancelSub := context.WithCancel(ctx)
	defer cancelSub()
	sub := e.inv.Subscribe(subCtx)
	marks, err := e.inv.Dirty(ctx)
	if err != nil {
		return fmt.Errorf("mirror: listing dirty stores at start-up: %w", err)
	}
	for _, m := range marks {
		e.trigger(m.Key, trigSend)
	}
	e.log.Info("sync engine starting", "workers", e.opts.Workers, "dirtyStores", len(marks))

	adjSub := e.inv.SubscribeAdjustments(subCtx)

	var wg sync.WaitGroup
	wg.Go(func() { e.subscribeLoop(ctx, sub) })
	wg.Go(func() { e.adjustmentLoop(ctx, adjSub) })
	wg.Go(func() { e.scheduleLoop(ctx) })
	wg.Go(func() { e.statusLoop(ctx) })
	// Data of SmaregiStores deleted while no engine watched (sweepOrphans).
	wg.Go(func() { e.runOrphanSweep(ctx) })
	for range e.opts.Workers {
		wg.Go(func() {
			for e.processNext(ctx) {
			}
		})
	}
	<-ctx.Done()
	e.queue.ShutDown()
	wg.Wait()
	e.log.Info("sync engine stopped")
	return nil
}

// UpsertStore adds or updates a store. The first sight of a store triggers
// a pull (an initial import when the inventory has never had a full sync of
// it); a new generation, a changed credentialsRef or CredentialsValid
// turning True lifts any back-off, forgets the cached token and pulls, since
// the user may have fixed what a configuration error pointed at (the
// controller checks the credentials as soon as the Secret changes).
func (e *Engine) UpsertStore(cfg StoreConfig) {
	cfg.defaults()
	e.mu.Lock()
	st := e.stateLocked(cfg.Key)
	first := !st.known
	// A True seen with another lastTransitionTime went through a False (or
	// Unknown) this engine did not see.
	credsValidated := cfg.CredentialsValid == metav1.ConditionTrue &&
		(st.cfg.CredentialsValid != metav1.ConditionTrue || !st.cfg.CredentialsValidSince.Equal(cfg.CredentialsValidSince))
	changed := st.cfg.Generation != cfg.Generation || credsValidated ||
		st.cfg.CredentialsSecret != cfg.CredentialsSecret || st.cfg.CredentialsKey != cfg.CredentialsKey
	if first && cfg.Synced != nil && st.cond.status == "" {
		st.cond = condState{status: cfg.Synced.Status, reason: cfg.Synced.Reason,
			message: cfg.Synced.Message, since: cfg.Synced.LastTransitionTime.Time}
	}
	st.cfg = cfg
	st.known = true
	if first {
		st.pending |= trigStartup
		st.handledResync = cfg.HandledResync
	}
	if r := cfg.ResyncRequest; r != "" && r != st.handledResync && r != st.resyncInHand {
		st.resyncInHand = r
		st.fullRequested = true
		st.pending |= trigPoll
	}
	if changed && !first {
		st.blockedUntil = time.Time{}
		st.cfgBackoff = 0
		st.pending |= trigPoll
	}
	add := first || changed || st.pending != 0
	e.mu.Unlock()
	if changed && e.tokens != nil {
		e.tokens.Forget(cfg.Key)
	}
	if add {
		e.queue.Add(cfg.Key)
	}
	if changed && !first && e.opts.OnStoreChanged != nil {
		e.opts.OnStoreChanged(cfg.Key)
	}
}

// RemoveStore forgets a store and deletes its mirror rows, for a deleted
// SmaregiStore. Its adjustments go too, pending ones included: the
// SmaregiStore's deletion was seen, so it is taken as meant; dropping
// adjustments not yet applied in Smaregi (orders: the shop's stock there is
// then overstated) is logged as an error.
func (e *Engine) RemoveStore(ctx context.Context, key inventory.StoreKey) error {
	e.mu.Lock()
	delete(e.stores, key)
	e.mu.Unlock()
	e.retry.Forget(key)
	if e.tokens != nil {
		e.tokens.Forget(key)
	}
	if n, oldest, err := e.inv.PendingAdjustments(ctx, key); err != nil {
		e.log.Error(err, "counting the pending adjustments of a deleted SmaregiStore", "store", key.String())
	} else if n > 0 {
		e.log.Error(nil, "deleting a SmaregiStore dropped adjustments never applied in Smaregi; its stock there misses them",
			"store", key.String(), "pendingAdjustments", n, "oldestPending", oldest)
	}
	if err := e.inv.DeleteStore(ctx, key); err != nil {
		return fmt.Errorf("mirror: deleting the mirror of %s: %w", key, err)
	}
	return nil
}

// adjustmentLoop marks a store's status due when an adjustment is submitted
// for it (on any replica), so status.inventory.pendingAdjustments follows the
// outbox; the pusher's pull request after applying covers the way down.
func (e *Engine) adjustmentLoop(ctx context.Context, sub <-chan inventory.StoreKey) {
	for {
		select {
		case <-ctx.Done():
			return
		case key, ok := <-sub:
			if !ok {
				return
			}
			e.mu.Lock()
			if st := e.stores[key]; st != nil && st.known {
				st.statusDirty = true
			}
			e.mu.Unlock()
		}
	}
}

// Target returns what a caller needs to reach the store's Smaregi API — its
// configuration and access token — for the adjustment pusher, which shares
// the engine's registry and token cache rather than reading Secrets again.
func (e *Engine) Target(ctx context.Context, key inventory.StoreKey) (StoreConfig, string, error) {
	e.mu.Lock()
	st := e.stores[key]
	var cfg StoreConfig
	known := st != nil && st.known
	if known {
		cfg = st.cfg
	}
	e.mu.Unlock()
	if !known {
		return StoreConfig{}, "", fmt.Errorf("mirror: no SmaregiStore %s is known", key)
	}
	if cfg.Suspend {
		return StoreConfig{}, "", &CredentialsError{Message: fmt.Sprintf("SmaregiStore %s is suspended", key)}
	}
	token, err := e.tokens.Token(ctx, cfg)
	if err != nil {
		return StoreConfig{}, "", err
	}
	return cfg, token, nil
}

// RequestPull asks for a pull of the store, e.g. by the adjustment pusher
// after it changed stock in Smaregi. Requests coalesce.
func (e *Engine) RequestPull(key inventory.StoreKey, why Trigger) {
	if why == TriggerFull {
		e.mu.Lock()
		e.stateLocked(key).fullRequested = true
		e.mu.Unlock()
	}
	e.trigger(key, why.bit())
}

// stateLocked returns the store's state, creating an unknown one: a trigger
// may arrive before the SmaregiStore is seen and must not be lost.
func (e *Engine) stateLocked(key inventory.StoreKey) *storeState {
	st := e.stores[key]
	if st == nil {
		st = &storeState{key: key}
		e.stores[key] = st
	}
	return st
}

func (e *Engine) trigger(key inventory.StoreKey, t triggerSet) {
	e.mu.Lock()
	st := e.stateLocked(key)
	st.pending |= t
	// During a back-off the trigger is kept but not queued: the schedule
	// loop queues the store when the back-off ends. This is what keeps a
	// busy shop's sends from hammering Smaregi while its API is off.
	ready := st.known && !e.clock.Now().Before(st.blockedUntil)
	e.mu.Unlock()
	if ready {
		e.queue.Add(key)
	}
}

// noteSend records sends for lastSendTime and the lag metric.
func (e *Engine) noteSend(key inventory.StoreKey, receivedAt time.Time) {
	// A follower's engine does not run: the leader learns of the send from
	// the dirty feed and syncs it. Noted here, the send would stay pending
	// until this replica leads, and its first pull would then report a lag
	// as long as this replica had followed.
	if !e.started.Load() {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.noteSendLocked(e.stateLocked(key), receivedAt)
}

func (e *Engine) noteSendLocked(st *storeState, receivedAt time.Time) {
	if receivedAt.After(st.lastSend) {
		st.lastSend = receivedAt
		st.statusDirty = true
	}
	// A pull that started after the send was received sees its change
	// (Smaregi applied it before sending), so it covers the send.
	if st.inflight && !receivedAt.After(st.inflightStart) {
		st.covered = minTime(st.covered, receivedAt)
	} else {
		st.pendingSince = minTime(st.pendingSince, receivedAt)
	}
}

// minTime is the earlier of two times, a zero time meaning "none".
func minTime(a, b time.Time) time.Time {
	if b.IsZero() {
		return a
	}
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// subscribeLoop turns dirty marks (from any replica) into triggers.
func (e *Engine) subscribeLoop(ctx context.Context, sub <-chan inventory.StoreKey) {
	for key := range sub {
		keys := []inventory.StoreKey{key}
	drain:
		for len(keys) < 1024 {
			select {
			case k, ok := <-sub:
				if !ok {
					break drain
				}
				keys = append(keys, k)
			default:
				break drain
			}
		}
		// Learn the receive times before queueing, so that a pull starting
		// at once is known to cover these sends.
		e.scanRecentSends(ctx, keys)
		for _, k := range keys {
			e.trigger(k, trigSend)
		}
	}
}

// recentSendsLimit bounds the read of recent sends per wake-up. Sends
// accepted by this replica are noted directly by the Sink; the read is for
// those accepted by other replicas, whose times would otherwise be unknown.
const recentSendsLimit = 256

func (e *Engine) scanRecentSends(ctx context.Context, keys []inventory.StoreKey) {
	recs, err := e.inv.RecentSends(ctx, recentSendsLimit)
	if err != nil {
		e.log.Error(err, "reading recent sends; lastSendTime and the lag metric may lag")
		return
	}
	startedAt := e.clock.Now()
	if p := e.startedAt.Load(); p != nil {
		startedAt = *p
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	// Thresholds are taken before any update: records come newest first.
	seen := map[inventory.StoreKey]time.Time{}
	for _, rec := range recs {
		// Sends from before this leader started were covered by the
		// start-up pulls; counting them as pending would report a lag that
		// only measures the failover.
		if rec.ReceivedAt.Before(startedAt) {
			continue
		}
		for _, k := range rec.Targets {
			st := e.stateLocked(k)
			th, ok := seen[k]
			if !ok {
				th = st.lastSend
				seen[k] = th
			}
			if rec.ReceivedAt.After(th) {
				e.noteSendLocked(st, rec.ReceivedAt)
			}
		}
	}
}

// scheduleLoop queues stores whose poll or full resync is due or whose
// back-off has ended.
func (e *Engine) scheduleLoop(ctx context.Context) {
	t := e.clock.NewTicker(e.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		e.scheduleDue()
	}
}

func (e *Engine) scheduleDue() {
	now := e.clock.Now()
	var due []inventory.StoreKey
	e.mu.Lock()
	for key, st := range e.stores {
		if !st.known || !st.loaded || st.inflight || st.cfg.Suspend || now.Before(st.blockedUntil) {
			continue
		}
		switch {
		case st.pending != 0 || st.fullRequested:
		case now.Sub(st.lastFull) >= st.cfg.FullResyncInterval:
			st.pending |= trigFull
		case now.Sub(st.lastPull) >= st.cfg.PollInterval:
			st.pending |= trigPoll
		default:
			continue
		}
		due = append(due, key)
	}
	e.mu.Unlock()
	for _, k := range due {
		e.queue.Add(k)
	}
}

func (e *Engine) processNext(ctx context.Context) bool {
	key, shutdown := e.queue.Get()
	if shutdown {
		return false
	}
	defer e.queue.Done(key)
	e.sync(ctx, key)
	return true
}

// sync runs at most one pull of one store; the workqueue guarantees no other
// worker holds the same key meanwhile.
func (e *Engine) sync(ctx context.Context, key inventory.StoreKey) {
	e.mu.Lock()
	st := e.stores[key]
	if st == nil || !st.known {
		e.mu.Unlock()
		return
	}
	cfg := st.cfg
	now := e.clock.Now()
	if cfg.Suspend {
		st.pending = 0
		e.setCondLocked(st, metav1.ConditionFalse, v1alpha1.ReasonSuspended,
			"spec.suspend is true: stock is not read from Smaregi. Sends are still recorded and pulled after resuming.")
		e.mu.Unlock()
		return
	}
	if now.Before(st.blockedUntil) {
		d := st.blockedUntil.Sub(now)
		e.mu.Unlock()
		e.queue.AddAfter(key, d)
		return
	}
	loaded := st.loaded
	e.mu.Unlock()

	if !loaded {
		sum, err := e.inv.Summary(ctx, key)
		if err != nil {
			e.failed(ctx, attempt{key: key, st: st, cfg: cfg, trig: TriggerPoll, kind: KindIncremental},
				fmt.Errorf("reading the mirror summary of %s: %w", key, err))
			return
		}
		e.mu.Lock()
		st.loaded = true
		st.everFull = !sum.LastFullSync.IsZero()
		st.lastFull = sum.LastFullSync
		st.lastPull = sum.LastPull
		st.skus = sum.SKUs
		st.drift = sum.LastDrift
		e.mu.Unlock()
	}

	e.mu.Lock()
	initial := !st.everFull
	full := initial || st.fullRequested || now.Sub(st.lastFull) >= cfg.FullResyncInterval
	if !full && st.pending == 0 && now.Sub(st.lastPull) < cfg.PollInterval {
		e.mu.Unlock()
		return // a timer fired for a pull that already happened
	}
	triggers := st.pending
	st.pending = 0
	requested := st.fullRequested
	st.fullRequested = false
	resync := ""
	if full {
		resync = st.resyncInHand
	}
	st.inflight = true
	st.inflightStart = now
	st.covered = st.pendingSince
	st.pendingSince = time.Time{}
	widen := st.widen
	e.mu.Unlock()

	kind := KindIncremental
	if full {
		kind = KindFull
	}
	trig := triggers.label(kind, initial)
	p := attempt{key: key, st: st, cfg: cfg, triggers: triggers, trig: trig, kind: kind, requested: requested}

	// The mark's sequence is read before the pull: a send recorded while
	// the pull runs gets a newer sequence and survives ClearDirty, so it
	// wakes a follow-up pull.
	seq, hasMark, err := e.dirtySeq(ctx, key)
	if err != nil {
		e.failed(ctx, p, err)
		return
	}
	reader, err := e.readerFor(ctx, key, cfg)
	if err != nil {
		e.failed(ctx, p, err)
		return
	}
	var res pullResult
	if full {
		res, err = e.puller.full(ctx, key, cfg.StoreID, reader)
	} else {
		res, err = e.puller.incremental(ctx, key, cfg.StoreID, reader, widen)
	}
	if err != nil {
		e.failed(ctx, p, err)
		return
	}
	skus := res.Drift.SKUs
	// skusKnown says skus is a count to publish: a full pull counts the
	// rows itself; an incremental one that changed rows reads the count
	// back, and when that read fails the previous count stays (a zero
	// would say the mirror emptied).
	skusKnown := full
	if !full && res.Changed > 0 {
		sum, serr := e.inv.Summary(ctx, key)
		if serr != nil {
			e.log.Error(serr, "reading the mirror summary after a pull; keeping the previous SKU count", "store", key.String())
		} else {
			skus, skusKnown = sum.SKUs, true
		}
	}
	end := e.clock.Now()
	e.metrics.pullDuration.WithLabelValues(kind).Observe(res.Duration.Seconds())
	e.metrics.pulls.WithLabelValues(string(trig), OutcomeSuccess).Inc()

	var lag time.Duration
	e.mu.Lock()
	st.inflight = false
	if e.stores[key] != st {
		// Deleted while pulling: the pull may have written rows back.
		e.mu.Unlock()
		if err := e.inv.DeleteStore(ctx, key); err != nil {
			e.log.Error(err, "deleting the mirror of a store removed during its pull", "store", key.String())
		}
		return
	}
	e.retry.Forget(key)
	st.cfgBackoff = 0
	st.blockedUntil = time.Time{}
	st.lastPull = end
	if full {
		st.everFull = true
		st.lastFull = end
		if resync != "" {
			st.handledResync = resync
		}
		st.fullDur = res.Duration
		st.widen = res.Duration
		st.skus = skus
		if initial {
			st.drift = 0 // an import is not drift
		} else {
			st.drift = int64(res.Drift.Total())
		}
	} else {
		st.widen = 0
		if skusKnown {
			st.skus = skus
		}
	}
	if !st.covered.IsZero() {
		lag = end.Sub(st.covered)
		st.covered = time.Time{}
	}
	e.setCondLocked(st, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, "The stock mirror is in step with Smaregi.")
	st.statusDirty = true
	e.mu.Unlock()

	if lag > 0 {
		e.metrics.sendLag.Observe(lag.Seconds())
		if e.opts.OnSendSynced != nil {
			e.opts.OnSendSynced(key, lag)
		}
	}
	if hasMark {
		if _, err := e.inv.ClearDirty(ctx, key, seq); err != nil {
			e.log.Error(err, "clearing the dirty mark", "store", key.String())
		}
	}
	// Adjustments applied in Smaregi before this pull began are now in the
	// mirror's rows, so the hub API must stop subtracting them as pending;
	// now was read before the pull started, so nothing is marked early.
	if _, err := e.inv.MarkAdjustmentsReflected(ctx, key, now); err != nil {
		e.log.Error(err, "marking adjustments reflected in the mirror", "store", key.String())
	}
	log := e.log.WithValues("store", key.String(), "kind", kind, "trigger", trig)
	if full {
		e.reportFull(log, cfg, res, initial)
	} else {
		log.V(1).Info("pulled", "rows", res.Rows, "changed", res.Changed, "since", res.Since, "watermark", res.Watermark, "duration", res.Duration)
	}
}

func (e *Engine) dirtySeq(ctx context.Context, key inventory.StoreKey) (uint64, bool, error) {
	marks, err := e.inv.Dirty(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("listing dirty marks: %w", err)
	}
	for _, m := range marks {
		if m.Key == key {
			return m.Seq, true, nil
		}
	}
	return 0, false, nil
}

// attempt is one pull being made.
type attempt struct {
	key       inventory.StoreKey
	st        *storeState
	cfg       StoreConfig
	triggers  triggerSet
	trig      Trigger
	kind      string
	requested bool // a full reconcile had been asked for explicitly
}

// failed records a failed pull: triggers are kept for the retry, the
// back-off starts, and the condition says why.
func (e *Engine) failed(ctx context.Context, p attempt, err error) {
	key, st, cfg := p.key, p.st, p.cfg
	now := e.clock.Now()
	e.mu.Lock()
	st.inflight = false
	st.pending |= p.triggers
	if p.requested {
		st.fullRequested = true
	}
	st.pendingSince = minTime(st.pendingSince, st.covered)
	st.covered = time.Time{}
	if ctx.Err() != nil {
		// Shutting down (or lost the lease): not the store's fault.
		e.mu.Unlock()
		return
	}
	f := classify(err, cfg)
	var delay time.Duration
	if f.config {
		if st.cfgBackoff == 0 {
			st.cfgBackoff = e.opts.ConfigBackoff
		} else {
			st.cfgBackoff = min(2*st.cfgBackoff, e.opts.ConfigBackoffMax)
		}
		delay = st.cfgBackoff
	} else {
		delay = e.retry.When(key)
	}
	st.blockedUntil = now.Add(delay)
	if f.authFailed {
		st.reader = nil
		st.readerConfig = ReaderConfig{}
	}
	e.setCondLocked(st, metav1.ConditionFalse, f.reason, f.message)
	st.statusDirty = true
	e.mu.Unlock()

	if f.authFailed && e.tokens != nil {
		e.tokens.Forget(key)
	}
	e.metrics.pulls.WithLabelValues(string(p.trig), f.outcome).Inc()
	e.log.Info("pull failed", "store", key.String(), "kind", p.kind, "trigger", p.trig,
		"reason", f.reason, "retryIn", delay, "error", err.Error())
	e.queue.AddAfter(key, delay)
}

func (e *Engine) readerFor(ctx context.Context, key inventory.StoreKey, cfg StoreConfig) (StockReader, error) {
	tok, err := e.tokens.Token(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rc := ReaderConfig{Endpoint: cfg.Endpoint, ContractID: cfg.ContractID, AccessToken: tok}
	e.mu.Lock()
	st := e.stores[key]
	if st != nil && st.reader != nil && st.readerConfig == rc {
		r := st.reader
		e.mu.Unlock()
		return r, nil
	}
	e.mu.Unlock()
	r, err := e.readers(rc)
	if err != nil {
		return nil, fmt.Errorf("building the Smaregi client for contract %s: %w", cfg.ContractID, err)
	}
	e.mu.Lock()
	if st != nil {
		st.reader, st.readerConfig = r, rc
	}
	e.mu.Unlock()
	return r, nil
}

// setCondLocked updates the InventorySynced condition in memory; a change
// is written at once by the status loop, bypassing the rate limit.
func (e *Engine) setCondLocked(st *storeState, status metav1.ConditionStatus, reason, message string) {
	c := st.cond
	if c.status == status && c.reason == reason && c.message == message {
		return
	}
	if c.status != status {
		c.since = e.clock.Now()
	}
	c.status, c.reason, c.message = status, reason, message
	st.cond = c
	st.condDirty = true
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

func (e *Engine) reportFull(log logr.Logger, cfg StoreConfig, res pullResult, initial bool) {
	if initial {
		log.Info("initial import finished", "skus", res.Drift.SKUs, "rows", res.Rows, "duration", res.Duration)
		e.event(cfg, "Normal", "InitialImport", fmt.Sprintf("Imported %d stock rows from Smaregi store %s in %s.", res.Drift.SKUs, cfg.StoreID, res.Duration.Round(time.Millisecond)))
		return
	}
	d := res.Drift
	if d.Total() == 0 {
		log.Info("full reconcile found no drift", "skus", d.SKUs, "duration", res.Duration)
		return
	}
	sample := driftSample(d, 5)
	log.Info("full reconcile corrected drift", "drift", d.Total(), "changed", d.Changed, "added", d.Added,
		"removed", d.Removed, "skus", d.SKUs, "duration", res.Duration, "sample", sample)
	e.event(cfg, "Warning", "DriftCorrected", fmt.Sprintf(
		"Full reconcile corrected %d rows that no send or pull had brought in (changed %d, added %d, removed %d): %s",
		d.Total(), d.Changed, d.Added, d.Removed, sample))
}

// driftSample renders the first n drifted products, e.g.
// "8000001 5→3, 8000007 added 2, …".
func driftSample(d inventory.Drift, n int) string {
	var b strings.Builder
	for i, s := range d.Sample {
		if i == n {
			fmt.Fprintf(&b, ", …")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		switch s.Kind {
		case inventory.DriftAdded:
			fmt.Fprintf(&b, "%s added %d", s.ProductID, s.After.StockAmount)
		case inventory.DriftRemoved:
			fmt.Fprintf(&b, "%s removed (was %d)", s.ProductID, s.Before.StockAmount)
		default:
			fmt.Fprintf(&b, "%s %d→%d", s.ProductID, s.Before.StockAmount, s.After.StockAmount)
		}
	}
	return b.String()
}

func (e *Engine) event(cfg StoreConfig, typ, reason, note string) {
	if e.opts.Recorder == nil {
		return
	}
	obj := &v1alpha1.SmaregiStore{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SmaregiStore"},
		ObjectMeta: metav1.ObjectMeta{Namespace: cfg.Key.Namespace, Name: cfg.Key.Name, UID: cfg.UID},
	}
	e.opts.Recorder.Eventf(obj, nil, typ, reason, "Sync", "%s", note)
}

// Snapshot is the engine's view of one store, for tests and diagnostics.
type Snapshot struct {
	Known                  bool
	SKUs, Drift            int64
	LastPull, LastFullSync time.Time
	LastFullSyncDuration   time.Duration
	LastSend               time.Time
	Condition              metav1.Condition
	BlockedUntil           time.Time
}

// Snapshot returns the engine's view of a store.
func (e *Engine) Snapshot(key inventory.StoreKey) (Snapshot, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stores[key]
	if st == nil {
		return Snapshot{}, false
	}
	return Snapshot{
		Known: st.known, SKUs: st.skus, Drift: st.drift, LastPull: st.lastPull,
		LastFullSync: st.lastFull, LastFullSyncDuration: st.fullDur, LastSend: st.lastSend,
		Condition: st.condition(), BlockedUntil: st.blockedUntil,
	}, true
}

func (st *storeState) condition() metav1.Condition {
	return metav1.Condition{
		Type: v1alpha1.InventorySyncedCondition, Status: st.cond.status, Reason: st.cond.reason,
		Message: st.cond.message, ObservedGeneration: st.cfg.Generation,
		LastTransitionTime: metav1.NewTime(st.cond.since),
	}
}
