package pusher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// readyScan bounds the adjustments read per batch decision; a batch holds at
// most smaregi.MaxBatchSize products, so this is plenty.
const readyScan = 2000

// worker pushes one store's adjustments; one at a time per store.
type worker struct {
	p    *Pusher
	key  inventory.StoreKey
	wake chan struct{}

	// isolate holds groups of adjustment IDs from a rejected batch, sent
	// alone (split further on rejection) before anything else.
	isolate  [][]string
	failures int
	// prunedAt is when retention last ran for the store (zero: not yet).
	prunedAt time.Time
}

// sleep waits d on the pusher's clock; false when ctx ended.
func (w *worker) sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := w.p.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// sleepOrWake waits for d or a kick, whichever comes first; false when ctx
// ended.
func (w *worker) sleepOrWake(ctx context.Context, d time.Duration) bool {
	t := w.p.opts.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
	case <-w.wake:
	}
	return true
}

func (w *worker) run(ctx context.Context) {
	logger := log.FromContext(ctx).WithValues("store", w.key.String())
	ctx = log.IntoContext(ctx, logger)
	for {
		// No wait by default (Window 0): what arrives during this
		// worker's calls is gathered by its next step.
		if !w.sleep(ctx, w.p.opts.Window) {
			return
		}
		for {
			select { // kicks from here on are seen by retire
			case <-w.wake:
			default:
			}
			wait, more, err := w.step(ctx)
			if ctx.Err() != nil {
				return
			}
			switch {
			case err == nil:
			case isTargetConfig(err):
				// A suspended store or missing credentials: reported in
				// the SmaregiStore's status; not an operator failure.
				logger.Info("adjustments wait for the store's configuration", "reason", err.Error(), "retryIn", wait.String())
			default:
				logger.Error(err, "pushing adjustments", "retryIn", wait.String())
			}
			if wait > 0 {
				// A configuration wait ends early on a kick: the store's
				// configuration changed (StoreUpdated, from the store
				// registry) or an adjustment arrived; either
				// costs only an in-memory target look-up if it is not fixed.
				if isTargetConfig(err) {
					if !w.sleepOrWake(ctx, wait) {
						return
					}
				} else if !w.sleep(ctx, wait) {
					return
				}
				continue
			}
			if !more {
				break
			}
		}
		if w.p.retire(w) {
			return
		}
	}
}

func (w *worker) backoff() time.Duration {
	b := w.p.opts.Backoff
	ceil := b.Initial << min(w.failures, 16)
	if ceil <= 0 || ceil > b.Max {
		ceil = b.Max
	}
	w.failures++
	return ceil/2 + time.Duration(rand.Int64N(int64(ceil/2)+1))
}

// step settles open attempts, then sends one batch. more reports whether
// there may be more work; wait > 0 asks for a pause before the next step.
func (w *worker) step(ctx context.Context) (wait time.Duration, more bool, err error) {
	st := w.p.opts.Store
	w.prune(ctx)
	opens, err := st.OpenAttempts(ctx, w.key)
	if err != nil {
		return w.backoff(), true, err
	}
	for _, a := range opens {
		if err := w.resolve(ctx, a); err != nil {
			if d, ok := w.awaiting(ctx, a, err); ok {
				return d, true, nil
			}
			if isTargetConfig(err) {
				// Not stuck but switched off: no page.
				w.p.setBlocked(w.key, time.Time{})
				return w.p.opts.ConfigBackoff, true, err
			}
			w.unresolved(ctx, a)
			if storeaccess.IsRefusedConfig(err) {
				return w.p.opts.ConfigBackoff, true, err
			}
			return w.backoff(), true, err
		}
	}
	w.p.setBlocked(w.key, time.Time{})
	maxRows := w.p.maxRows(ctx, w.key)
	adjs, isolated, err := w.nextBatch(ctx, maxRows)
	if err != nil || len(adjs) == 0 {
		if err != nil {
			return w.backoff(), true, err
		}
		return 0, false, nil
	}
	wait, err = w.push(ctx, adjs, isolated, maxRows)
	return wait, true, err
}

// prune applies the retentions of settled attempts and adjustments: when
// the worker starts, then at most every SweepInterval while it runs. A
// failure is retried at the next step.
func (w *worker) prune(ctx context.Context) {
	o := w.p.opts
	now := o.Clock.Now()
	if !w.prunedAt.IsZero() && now.Sub(w.prunedAt) < o.SweepInterval {
		return
	}
	_, errA := o.Store.PruneAttempts(ctx, w.key, now.Add(-o.AttemptRetention))
	_, errB := o.Store.PruneAdjustments(ctx, w.key, now.Add(-o.AdjustmentRetention))
	if errA == nil && errB == nil {
		w.prunedAt = now
	} else if ctx.Err() == nil {
		log.FromContext(ctx).Error(errors.Join(errA, errB), "applying retention")
	}
}

// errAwaiting says the history does not show the attempt yet, but the call
// may still be applied by the server: it is re-read until settleBy.
type errAwaiting struct{ until time.Time }

func (e *errAwaiting) Error() string {
	return "stock history does not show the attempt yet; awaiting confirmation until " + e.until.Format(time.RFC3339)
}

// awaiting handles a resolution that ended in errAwaiting: the attempt stays
// open (its adjustments pending, awaiting confirmation) and the history is
// read again after a back-off, never later than the settle deadline. It is
// the expected course of an ambiguous call, not a stuck store: the store is
// not counted as blocked and nothing is logged as an error.
func (w *worker) awaiting(ctx context.Context, a inventory.Attempt, err error) (time.Duration, bool) {
	var aw *errAwaiting
	if !errors.As(err, &aw) {
		return 0, false
	}
	w.p.setBlocked(w.key, time.Time{})
	d := w.backoff()
	if rest := aw.until.Sub(w.p.opts.Clock.Now()); rest < d {
		d = max(rest, 0)
	}
	log.FromContext(ctx).V(1).Info("push not visible in stock history yet; awaiting confirmation",
		"attempt", a.ID, "settleBy", aw.until, "retryIn", d.String())
	return d, true
}

// unresolved records that open attempt a could not be settled: the store is
// blocked (nothing else is sent) until a later resolution succeeds.
func (w *worker) unresolved(ctx context.Context, a inventory.Attempt) {
	if ctx.Err() == nil {
		w.p.setBlocked(w.key, a.StartedAt)
	}
}

// nextBatch picks the adjustments of the next call: an isolation group if
// any (isolated), else the oldest ready ones whose merged rows fit one
// all-or-none call of maxRows products.
func (w *worker) nextBatch(ctx context.Context, maxRows int) (adjs []inventory.Adjustment, isolated bool, err error) {
	st := w.p.opts.Store
	for len(w.isolate) > 0 {
		group := w.isolate[0]
		w.isolate = w.isolate[1:]
		adjs = adjs[:0]
		for _, id := range group {
			a, ok, err := st.GetAdjustment(ctx, w.key, id)
			if err != nil {
				w.isolate = append([][]string{group}, w.isolate...)
				return nil, false, err
			}
			if ok && a.State == inventory.AdjustmentPending {
				adjs = append(adjs, a)
			}
		}
		if len(adjs) > 0 {
			return adjs, true, nil
		}
	}
	ready, err := st.ReadyAdjustments(ctx, w.key, readyScan)
	if err != nil {
		return nil, false, err
	}
	products := map[string]bool{}
	var out []inventory.Adjustment
	for _, a := range ready {
		added := 0
		for _, l := range a.Lines {
			if !products[l.ProductID] {
				added++
			}
		}
		if len(products)+added > maxRows {
			if len(out) == 0 {
				// Alone it is over the limit of one atomic call: it can
				// never be applied all-or-nothing.
				return []inventory.Adjustment{a}, false, nil
			}
			// It waits for a later call; younger adjustments of the
			// products already in this one still join it (stock changes
			// of different products do not depend on each other's
			// order). This is what batches a store whose calls carry one
			// product (the Platform API): a burst of orders of a product
			// goes in one call instead of one each.
			continue
		}
		for _, l := range a.Lines {
			products[l.ProductID] = true
		}
		out = append(out, a)
	}
	return out, false, nil
}

// settleCtx outlives the worker's context briefly, so that an outcome known
// when the operator is told to stop is still recorded. Its bound is real
// time, not Options.Clock: it limits a store write (I/O), as
// RequestTimeout limits a call, and is not part of the pusher's schedule.
func settleCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// push sends adjs as one all-or-none call of at most maxRows products;
// isolated says they are an isolation group (put back if nothing was
// recorded).
func (w *worker) push(ctx context.Context, adjs []inventory.Adjustment, isolated bool, maxRows int) (time.Duration, error) {
	st, m := w.p.opts.Store, w.p.metrics
	rows := inventory.MergeAttemptRows(adjs)
	now := w.p.opts.Clock.Now()
	at := inventory.Attempt{Key: w.key, ID: newAttemptID(now, !w.p.opts.DisableMemo), Rows: rows, StartedAt: now, Leader: w.p.opts.Identity}
	for _, a := range adjs {
		at.AdjustmentIDs = append(at.AdjustmentIDs, a.ID)
	}
	if len(rows) > maxRows {
		if err := st.BeginAttempt(ctx, at); err != nil {
			return w.backoff(), err
		}
		reason := fmt.Sprintf("the adjustment changes %d products; one all-or-none Smaregi update of this store carries at most %d "+
			"(send one adjustment per product)", len(rows), maxRows)
		return w.finishFailed(ctx, at, adjs, reason)
	}
	// Look the target up before recording anything: a store that cannot be
	// sent to (suspended, no credentials) must not churn the outbox.
	var (
		c   storeaccess.Backend
		t   storeaccess.Target
		err error
	)
	if len(rows) > 0 {
		if c, t, err = w.p.client(ctx, w.key); err != nil {
			if isolated {
				w.isolate = append([][]string{at.AdjustmentIDs}, w.isolate...)
			}
			if isTargetConfig(err) {
				return w.p.opts.ConfigBackoff, err
			}
			return w.backoff(), err
		}
	}
	at.StartedAt = w.p.opts.Clock.Now() // after the lookup, which may read a Secret
	// The call runs under this deadline, so the request has ended by then
	// whatever happens to this process: the durable bound a resolver on
	// another replica counts the settle period from.
	at.RequestDeadline = at.StartedAt.Add(w.p.opts.RequestTimeout)
	if err := st.BeginAttempt(ctx, at); err != nil {
		if errors.Is(err, inventory.ErrAttemptConflict) {
			w.isolate = nil // the stored state moved on; start over from it
			return 0, nil
		}
		return w.backoff(), err
	}
	if len(rows) == 0 {
		// The lines cancel out: applied without a call.
		return 0, w.finishApplied(ctx, at, adjs, inventory.AttemptResult{}, OutcomeApplied)
	}
	upd := make([]smaregi.StockUpdate, len(rows))
	for i, r := range rows {
		upd[i] = smaregi.StockUpdate{StoreID: t.StoreID, ProductID: r.ProductID, Amount: r.Amount,
			StockDivision: smaregi.DefaultStockDivision}
		if sentWithMemo(at) {
			upd[i].Memo = inventory.AttemptMemo(at.ID)
		}
	}
	// The call is not cancelled with the worker (shutdown, lost
	// leadership): cut off mid-request, it could still be applied by the
	// server while the next leader resolves it. It finishes on a detached
	// context bounded by the request timeout, and Start waits for it
	// before returning, so the manager gives the lease up only after.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.p.opts.RequestTimeout)
	err = c.AddStock(cctx, upd)
	cancel()
	switch {
	case err == nil:
		m.calls.WithLabelValues(CallOK).Inc()
		w.failures = 0
		return 0, w.finishApplied(ctx, at, adjs, inventory.AttemptResult{}, OutcomeApplied)
	case storeaccess.IsAmbiguous(err):
		m.calls.WithLabelValues(CallAmbiguous).Inc()
		if ctx.Err() != nil {
			return 0, nil // stays open: the next Start resolves it
		}
		w.p.noteEnded(at.ID, w.p.opts.Clock.Now())
		log.FromContext(ctx).V(1).Info("ambiguous stock_upd; resolving from stock history", "attempt", at.ID, "error", err.Error())
		if err := w.resolve(ctx, at); err != nil {
			if d, ok := w.awaiting(ctx, at, err); ok {
				return d, nil
			}
			w.unresolved(ctx, at)
			return w.backoff(), err
		}
		return 0, nil
	}
	// Not applied: void the attempt (failing adjustments where Smaregi
	// rejected a lone one).
	var wait time.Duration
	res := inventory.AttemptResult{}
	switch {
	case storeaccess.IsRefusedConfig(err):
		m.calls.WithLabelValues(CallConfig).Inc()
		wait = w.p.opts.ConfigBackoff
	case storeaccess.IsTransient(err):
		m.calls.WithLabelValues(CallTransient).Inc()
		wait = w.backoff()
	default:
		// A definite rejection (Smaregi's error code) or a row this client
		// refused before sending: in both cases nothing was applied.
		m.calls.WithLabelValues(CallRejected).Inc()
		if len(adjs) == 1 {
			return w.finishFailed(ctx, at, adjs, storeaccess.Refusal(err))
		}
		half := len(at.AdjustmentIDs) / 2
		w.isolate = append([][]string{at.AdjustmentIDs[:half], at.AdjustmentIDs[half:]}, w.isolate...)
		err = nil
	}
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	if ferr := st.FinishAttempt(sctx, w.key, at.ID, res); ferr != nil {
		return w.backoff(), errors.Join(err, ferr)
	}
	if err != nil {
		err = fmt.Errorf("stock update for %d adjustments not applied: %w", len(adjs), err)
	}
	return wait, err
}

func (w *worker) finishFailed(ctx context.Context, at inventory.Attempt, adjs []inventory.Adjustment, reason string) (time.Duration, error) {
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	failed := make(map[string]string, len(adjs))
	for _, a := range adjs {
		failed[a.ID] = reason
	}
	if err := w.p.opts.Store.FinishAttempt(sctx, w.key, at.ID, inventory.AttemptResult{Failed: failed}); err != nil {
		return w.backoff(), err
	}
	w.p.metrics.outcomes.WithLabelValues(w.key.Namespace, w.key.Name, OutcomeFailed).Add(float64(len(adjs)))
	return 0, nil
}

func (w *worker) finishApplied(ctx context.Context, at inventory.Attempt, adjs []inventory.Adjustment, res inventory.AttemptResult, outcome string) error {
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	res.Applied, res.At = true, w.p.opts.Clock.Now()
	if err := w.p.opts.Store.FinishAttempt(sctx, w.key, at.ID, res); err != nil {
		return err
	}
	m := w.p.metrics
	m.outcomes.WithLabelValues(w.key.Namespace, w.key.Name, outcome).Add(float64(len(at.AdjustmentIDs)))
	for _, a := range adjs {
		m.latency.Observe(res.At.Sub(a.CreatedAt).Seconds())
	}
	if w.p.opts.OnApplied != nil {
		w.p.opts.OnApplied(w.key)
	}
	return nil
}
