package mirror

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
)

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
	p, ok := e.claim(ctx, key)
	if !ok {
		return
	}
	res, err := e.pull(ctx, &p)
	if err != nil {
		e.failed(ctx, p, err)
		return
	}
	e.commit(ctx, p, res)
}

// attempt is one pull being made.
type attempt struct {
	key inventory.StoreKey
	st  *storeState
	cfg storeregistry.StoreConfig
	// start is when the pull was claimed: adjustments applied in Smaregi
	// before it are in the rows it reads.
	start     time.Time
	triggers  triggerSet
	trig      Trigger
	kind      string
	initial   bool   // a full pull that is the store's first (an import)
	requested bool   // a full reconcile had been asked for explicitly
	resync    string // the resync request a full pull answers
	widen     time.Duration
	// mark is the store's dirty mark as read before the pull (set by pull).
	mark dirtyMark
}

func (p *attempt) full() bool { return p.kind == KindFull }

// dirtyMark is a store's dirty mark: its sequence, and whether there is one.
type dirtyMark struct {
	seq uint64
	ok  bool
}

// claim decides, under the lock, whether the store is to be pulled now and
// what pull, and marks that pull in flight. It reports false when there is
// nothing to do (unknown, suspended, backing off, or a timer fired for a
// pull that already happened), and when the store's summary could not be
// loaded, which it has recorded as a failed pull.
func (e *Engine) claim(ctx context.Context, key inventory.StoreKey) (attempt, bool) {
	st, cfg, now, loaded, ok := e.admit(key)
	if !ok {
		return attempt{}, false
	}
	if !loaded {
		if err := e.loadSummary(ctx, key, st); err != nil {
			e.failed(ctx, attempt{key: key, st: st, cfg: cfg, trig: TriggerPoll, kind: KindIncremental}, err)
			return attempt{}, false
		}
	}
	return e.take(key, st, cfg, now)
}

// admit returns the store's state if it may be pulled now: a suspended
// store gets its condition said, a store in back-off is queued for its end.
func (e *Engine) admit(key inventory.StoreKey) (st *storeState, cfg storeregistry.StoreConfig, now time.Time, loaded, ok bool) {
	e.mu.Lock()
	st = e.stores[key]
	if st == nil || !st.known {
		e.mu.Unlock()
		return nil, storeregistry.StoreConfig{}, time.Time{}, false, false
	}
	cfg = st.cfg
	now = e.clock.Now()
	if cfg.Suspend {
		st.pending = 0
		e.setCondLocked(st, metav1.ConditionFalse, v1alpha1.ReasonSuspended,
			"spec.suspend is true: stock is not read from Smaregi. Sends are still recorded and pulled after resuming.")
		e.mu.Unlock()
		return nil, storeregistry.StoreConfig{}, time.Time{}, false, false
	}
	if now.Before(st.blockedUntil) {
		d := st.blockedUntil.Sub(now)
		e.mu.Unlock()
		e.queue.AddAfter(key, d)
		return nil, storeregistry.StoreConfig{}, time.Time{}, false, false
	}
	loaded = st.loaded
	e.mu.Unlock()
	return st, cfg, now, loaded, true
}

// loadSummary fills the store's state from the inventory the first time
// the store is pulled: what earlier leaders already synced.
func (e *Engine) loadSummary(ctx context.Context, key inventory.StoreKey, st *storeState) error {
	sum, err := e.inv.Summary(ctx, key)
	if err != nil {
		return fmt.Errorf("reading the mirror summary of %s: %w", key, err)
	}
	e.mu.Lock()
	st.loaded = true
	st.everFull = !sum.LastFullSync.IsZero()
	st.lastFull = sum.LastFullSync
	st.lastPull = sum.LastPull
	st.skus = sum.SKUs
	st.drift = sum.LastDrift
	e.mu.Unlock()
	return nil
}

// take chooses the kind of pull, takes the pending triggers into the
// attempt and marks it in flight; the sends pending so far are the ones it
// covers.
func (e *Engine) take(key inventory.StoreKey, st *storeState, cfg storeregistry.StoreConfig, now time.Time) (attempt, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	initial := !st.everFull
	full := initial || st.fullRequested || now.Sub(st.lastFull) >= cfg.FullResyncInterval
	if !full && st.pending == 0 && now.Sub(st.lastPull) < e.pollIntervalLocked(st) {
		return attempt{}, false // a timer fired for a pull that already happened
	}
	if !full && st.pending == trigSend {
		if d := e.sendPullDelayLocked(st, now); d > 0 {
			// The sends stay pending; this pull covers them all.
			e.queue.AddAfter(key, d)
			return attempt{}, false
		}
	}
	p := attempt{key: key, st: st, cfg: cfg, start: now, triggers: st.pending,
		initial: initial, requested: st.fullRequested, widen: st.widen, kind: KindIncremental}
	if full {
		p.kind = KindFull
		p.resync = st.resyncInHand
	}
	p.trig = p.triggers.label(p.kind, initial)
	st.pending = 0
	st.fullRequested = false
	st.inflight = true
	st.inflightStart = now
	st.covered = st.pendingSince
	st.pendingSince = time.Time{}
	return p, true
}

// sendPullDelayLocked takes a token from the store's bucket of send pulls
// (SendPullRate, SendPullBurst) and returns 0, or returns how long until
// one is due, taking nothing.
func (e *Engine) sendPullDelayLocked(st *storeState, now time.Time) time.Duration {
	rate, burst := e.opts.SendPullRate, float64(e.opts.SendPullBurst)
	tokens := burst
	if !st.sendTokensAt.IsZero() {
		tokens = min(burst, st.sendTokens+now.Sub(st.sendTokensAt).Seconds()*rate)
	}
	st.sendTokensAt = now
	if tokens >= 1 {
		st.sendTokens = tokens - 1
		return 0
	}
	st.sendTokens = tokens
	return time.Duration((1 - tokens) / rate * float64(time.Second))
}

// pull reads the store from Smaregi into the mirror, without the lock.
func (e *Engine) pull(ctx context.Context, p *attempt) (pullResult, error) {
	// The mark's sequence is read before the pull: a send recorded while
	// the pull runs gets a newer sequence and survives ClearDirty, so it
	// wakes a follow-up pull.
	mark, err := e.dirtyMark(ctx, p.key)
	if err != nil {
		return pullResult{}, err
	}
	p.mark = mark
	reader, err := e.readerFor(ctx, p.key, p.cfg)
	if err != nil {
		return pullResult{}, err
	}
	if p.full() {
		return e.puller.full(ctx, p.key, p.cfg.StoreID, reader)
	}
	res, err := e.puller.incremental(ctx, p.key, p.cfg.StoreID, reader, p.widen)
	if err != nil && storeaccess.NeedsFullReconcile(err) {
		// The watermark is older than the API lists incrementally (the
		// Platform's 31 days: the store was suspended, or the operator
		// off, that long): only reading every row closes the gap.
		e.log.Info("watermark outside the incremental window; reading every row", "store", p.key.String())
		p.kind = KindFull
		return e.puller.full(ctx, p.key, p.cfg.StoreID, reader)
	}
	return res, err
}

// commit records a successful pull: the store's state and metrics, then the
// dirty mark cleared, adjustments marked reflected and the pull reported.
func (e *Engine) commit(ctx context.Context, p attempt, res pullResult) {
	key := p.key
	skus, skusKnown := e.skuCount(ctx, p, res)
	end := e.clock.Now()
	e.metrics.pullDuration.WithLabelValues(p.kind).Observe(res.Duration.Seconds())
	e.metrics.pulls.WithLabelValues(string(p.trig), OutcomeSuccess).Inc()

	lag, current, quiet := e.succeeded(p, res, end, skus, skusKnown)
	if quiet {
		e.event(p.cfg, "Warning", "SendsMissing", unannouncedNote)
	}
	if !current {
		// Deleted while pulling: the pull may have written rows back.
		if err := e.inv.DeleteStore(ctx, key); err != nil {
			e.log.Error(err, "deleting the mirror of a store removed during its pull", "store", key.String())
		}
		return
	}
	if lag > 0 {
		e.metrics.sendLag.Observe(lag.Seconds())
		if e.opts.OnSendSynced != nil {
			e.opts.OnSendSynced(key, lag)
		}
	}
	if p.mark.ok {
		if _, err := e.inv.ClearDirty(ctx, key, p.mark.seq); err != nil {
			e.log.Error(err, "clearing the dirty mark", "store", key.String())
		}
	}
	// Adjustments applied in Smaregi before this pull began are now in the
	// mirror's rows, so the hub API must stop subtracting them as pending;
	// p.start was read before the pull started, so nothing is marked early.
	if _, err := e.inv.MarkAdjustmentsReflected(ctx, key, p.start); err != nil {
		e.log.Error(err, "marking adjustments reflected in the mirror", "store", key.String())
	}
	log := e.log.WithValues("store", key.String(), "kind", p.kind, "trigger", p.trig)
	if p.full() {
		e.reportFull(log, p.cfg, res, p.initial, p.resync)
	} else {
		log.V(1).Info("pulled", "rows", res.Rows, "changed", res.Changed, "since", res.Since, "watermark", res.Watermark, "duration", res.Duration)
	}
}

// skuCount returns the mirror's SKU count after a pull, and whether it is a
// count to publish: a full pull counts the rows itself; an incremental one
// that changed rows reads the count back, and when that read fails the
// previous count stays (a zero would say the mirror emptied).
func (e *Engine) skuCount(ctx context.Context, p attempt, res pullResult) (int64, bool) {
	skus := res.Drift.SKUs
	if p.full() || res.Changed == 0 {
		return skus, p.full()
	}
	sum, err := e.inv.Summary(ctx, p.key)
	if err != nil {
		e.log.Error(err, "reading the mirror summary after a pull; keeping the previous SKU count", "store", p.key.String())
		return skus, false
	}
	return sum.SKUs, true
}

// succeeded updates the store's state after a successful pull ending at end
// and returns the send→mirror lag it measured. current is false when the
// store was removed during the pull; its state is then left alone.
func (e *Engine) succeeded(p attempt, res pullResult, end time.Time, skus int64, skusKnown bool) (lag time.Duration, current, quiet bool) {
	st := p.st
	e.mu.Lock()
	defer e.mu.Unlock()
	st.inflight = false
	if e.stores[p.key] != st {
		return 0, false, false
	}
	// A poll that finds changes no send announced: once is a stocktake or
	// a movement Smaregi does not send; several in a row mean the sends do
	// not arrive.
	switch {
	case st.lastSend.After(st.lastPull):
		st.unannounced = 0
	case p.trig == TriggerPoll && !p.full() && res.Changed > 0:
		st.unannounced++
		quiet = st.unannounced == UnannouncedPolls
	}
	e.retry.Forget(p.key)
	st.cfgBackoff = 0
	st.blockedUntil = time.Time{}
	st.lastPull = end
	if p.full() {
		st.everFull = true
		st.lastFull = end
		if p.resync != "" {
			st.handledResync = p.resync
		}
		st.fullDur = res.Duration
		st.widen = res.Duration
		st.skus = skus
		if p.initial {
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
	e.stretchPollLocked(st, p, res)
	if !st.covered.IsZero() {
		lag = end.Sub(st.covered)
		st.covered = time.Time{}
	}
	msg := "The stock mirror is in step with Smaregi."
	if st.unannounced >= UnannouncedPolls {
		msg += " " + unannouncedNote
	}
	e.setCondLocked(st, metav1.ConditionTrue, v1alpha1.ReasonSucceeded, msg)
	st.statusDirty = true
	return lag, true, quiet
}

// UnannouncedPolls is how many poll pulls in a row must find changes that
// no send announced before the store says its sends are probably off.
const UnannouncedPolls = 3

// unannouncedNote is what InventorySynced and the SendsMissing event say
// then.
const unannouncedNote = "Polls keep finding stock changes that no send from Smaregi announced: the send settings in " +
	"Smaregi's API送信設定 are probably off (送信URL, 4.パラメータ情報, 5.取引情報送信); kubectl smaregi setup prints them. " +
	"Until they are fixed, changes show only at each poll."

// dirtyMark reads the store's dirty mark.
func (e *Engine) dirtyMark(ctx context.Context, key inventory.StoreKey) (dirtyMark, error) {
	marks, err := e.inv.Dirty(ctx)
	if err != nil {
		return dirtyMark{}, fmt.Errorf("listing dirty marks: %w", err)
	}
	for _, m := range marks {
		if m.Key == key {
			return dirtyMark{seq: m.Seq, ok: true}, nil
		}
	}
	return dirtyMark{}, nil
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
		st.readerTarget = storeaccess.Target{}
	}
	e.setCondLocked(st, metav1.ConditionFalse, f.reason, f.message)
	st.statusDirty = true
	e.mu.Unlock()

	if f.authFailed && e.tokens != nil {
		e.tokens.Forget(cfg.Credentials())
	}
	e.metrics.pulls.WithLabelValues(string(p.trig), f.outcome).Inc()
	e.log.Info("pull failed", "store", key.String(), "kind", p.kind, "trigger", p.trig,
		"reason", f.reason, "retryIn", delay, "error", err.Error())
	e.queue.AddAfter(key, delay)
}

func (e *Engine) readerFor(ctx context.Context, key inventory.StoreKey, cfg storeregistry.StoreConfig) (StockReader, error) {
	creds, err := e.tokens.Credentials(ctx, cfg.Credentials())
	if err != nil {
		return nil, err
	}
	rc := cfg.Target(creds)
	e.mu.Lock()
	st := e.stores[key]
	if st != nil && st.reader != nil && st.readerTarget == rc {
		r := st.reader
		e.mu.Unlock()
		return r, nil
	}
	e.mu.Unlock()
	r, err := e.readers(rc)
	if err != nil {
		return nil, err // names the contract, never the token
	}
	e.mu.Lock()
	if st != nil {
		st.reader, st.readerTarget = r, rc
	}
	e.mu.Unlock()
	return r, nil
}
