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
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
)

// FieldManager is the server-side apply field manager of the engine's status
// writes. It differs from the SmaregiStore controller's so that each owns
// only its own fields: InventorySynced and status.inventory here.
const FieldManager = "smaregi-operator-mirror"

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
	cfg   storeregistry.StoreConfig
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

	pending  triggerSet
	inflight bool
	// sendTokens, as of sendTokensAt, is the store's bucket of pulls that
	// sends alone may ask for (sendPullDelayLocked).
	sendTokens   float64
	sendTokensAt time.Time
	blockedUntil time.Time
	cfgBackoff   time.Duration

	skus  int64
	drift int64
	// pollStretch is how many times the poll interval is doubled (see
	// pollIntervalLocked): once for each poll in a row that found nothing
	// new while the last full reconcile found no drift.
	pollStretch uint8

	// Send tracking for lastSendTime and the send→mirror lag.
	lastSend time.Time
	// unannounced counts poll pulls in a row that found changes while no
	// send had arrived since the pull before: Smaregi's send settings are
	// then probably off (wrong URL, function not switched on).
	unannounced   int
	pendingSince  time.Time // oldest send not covered by a started pull
	inflightStart time.Time
	covered       time.Time // oldest send the in-flight pull covers

	cond         condState
	condDirty    bool
	statusDirty  bool
	lastWrite    time.Time
	reader       StockReader
	readerTarget storeaccess.Target
}

type condState struct {
	status  metav1.ConditionStatus
	reason  string
	message string
	since   time.Time
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
func (e *Engine) UpsertStore(cfg storeregistry.StoreConfig) {
	cfg.Defaults()
	e.mu.Lock()
	st := e.stateLocked(cfg.Key)
	first := !st.known
	changed := !first && storeregistry.RetryNeeded(st.cfg, cfg)
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
		e.tokens.Forget(cfg.Credentials())
	}
	if add {
		e.queue.Add(cfg.Key)
	}
}

// RemoveStore forgets a store and deletes its mirror rows, for a deleted
// SmaregiStore. Its adjustments go too, pending ones included: the
// SmaregiStore's deletion was seen, so it is taken as meant; dropping
// adjustments not yet applied in Smaregi (orders: the shop's stock there is
// then overstated) is logged as an error.
func (e *Engine) RemoveStore(ctx context.Context, key inventory.StoreKey) error {
	e.mu.Lock()
	if st := e.stores[key]; st != nil && st.known && e.tokens != nil {
		e.tokens.Forget(st.cfg.Credentials())
	}
	delete(e.stores, key)
	e.mu.Unlock()
	e.retry.Forget(key)
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

// StoreUpdated implements storeregistry.Subscriber.
func (e *Engine) StoreUpdated(cfg storeregistry.StoreConfig, _ bool) { e.UpsertStore(cfg) }

// StoreRemoved implements storeregistry.Subscriber.
func (e *Engine) StoreRemoved(ctx context.Context, key inventory.StoreKey) error {
	return e.RemoveStore(ctx, key)
}

// known reports whether the watch has registered the store.
func (e *Engine) known(key inventory.StoreKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stores[key]
	return st != nil && st.known
}

// forgetUnknown drops the state of a store the watch has not registered
// (triggers from its dirty mark, nothing more). It reports false, and drops
// nothing, when the watch has registered the store.
func (e *Engine) forgetUnknown(key inventory.StoreKey) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.stores[key]; st != nil {
		if st.known {
			return false
		}
		delete(e.stores, key)
	}
	return true
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

// takeDueStatus returns the status updates due at now, and takes them as
// written: a condition change at once, other changes once StatusInterval
// has passed since the store's last write. Stores whose condition is still
// unknown have nothing to say yet.
func (e *Engine) takeDueStatus(now time.Time) []StatusUpdate {
	var due []StatusUpdate
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, st := range e.stores {
		if !st.known || st.cond.status == "" {
			continue
		}
		if !st.condDirty && !(st.statusDirty && now.Sub(st.lastWrite) >= e.opts.StatusInterval) {
			continue
		}
		st.condDirty, st.statusDirty = false, false
		st.lastWrite = now
		due = append(due, StatusUpdate{
			Key: st.key, Condition: st.condition(), SKUs: st.skus, Drift: st.drift,
			LastPullTime: st.lastPull, LastFullSyncTime: st.lastFull,
			LastFullSyncDuration: st.fullDur, LastSendTime: st.lastSend,
			LastHandledResync: st.handledResync,
		})
	}
	return due
}

// markStatusDirty has the store's status written again after StatusInterval.
func (e *Engine) markStatusDirty(key inventory.StoreKey) {
	e.mu.Lock()
	if st := e.stores[key]; st != nil {
		st.statusDirty = true
	}
	e.mu.Unlock()
}

// statusChanged has a registered store's status written at its next due
// time, for a change the engine's state does not show (an adjustment).
func (e *Engine) statusChanged(key inventory.StoreKey) {
	e.mu.Lock()
	if st := e.stores[key]; st != nil && st.known {
		st.statusDirty = true
	}
	e.mu.Unlock()
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
	// PollInterval is the poll interval in force: spec.sync.pollInterval,
	// stretched while polls find nothing new (pollIntervalLocked).
	PollInterval time.Duration
}

// Snapshot returns the engine's view of a store.
func (e *Engine) Snapshot(key inventory.StoreKey) (Snapshot, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stores[key]
	if st == nil {
		return Snapshot{}, false
	}
	return e.snapshotLocked(st), true
}

// snapshots returns the engine's view of every store the watch has
// registered.
func (e *Engine) snapshots() map[inventory.StoreKey]Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[inventory.StoreKey]Snapshot, len(e.stores))
	for k, st := range e.stores {
		if st.known {
			out[k] = e.snapshotLocked(st)
		}
	}
	return out
}

func (e *Engine) snapshotLocked(st *storeState) Snapshot {
	s := st.snapshot()
	s.PollInterval = e.pollIntervalLocked(st)
	return s
}

func (st *storeState) snapshot() Snapshot {
	return Snapshot{
		Known: st.known, SKUs: st.skus, Drift: st.drift, LastPull: st.lastPull,
		LastFullSync: st.lastFull, LastFullSyncDuration: st.fullDur, LastSend: st.lastSend,
		Condition: st.condition(), BlockedUntil: st.blockedUntil,
	}
}

func (st *storeState) condition() metav1.Condition {
	return metav1.Condition{
		Type: v1alpha1.InventorySyncedCondition, Status: st.cond.status, Reason: st.cond.reason,
		Message: st.cond.message, ObservedGeneration: st.cfg.Generation,
		LastTransitionTime: metav1.NewTime(st.cond.since),
	}
}
