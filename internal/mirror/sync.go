package mirror

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
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
