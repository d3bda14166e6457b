package mirror

import (
	"context"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
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
		case now.Sub(st.lastPull) >= e.pollIntervalLocked(st):
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

// pollIntervalLocked is the time between two polls of the store: its
// spec.sync.pollInterval doubled once for each poll in a row that found
// nothing new (pollStretch), up to Options.PollStretchMax times it and
// never past its full resync interval.
//
// Why stretching is safe. Every change in Smaregi reaches the mirror by one
// of three ways: a send's pull (seconds), a poll, or a full reconcile. The
// poll is the safety net for changes no send announced (a send lost, the
// send settings off, a movement Smaregi does not send). Stretching it
// delays only those, and by at most the cap (8 minutes at the defaults,
// against the 5–10 minute sync of the anchors the design compares with);
// sends still pull at once. The stretch is earned only by evidence that
// the safety net is catching nothing: each poll that found no row the
// mirror lacked doubles the interval, and only while the last full
// reconcile found no drift. It is lost at the first sign that the net is
// needed: a poll that finds a change (the sends missed it, or it was
// never sent) or a full reconcile that finds drift puts the store back on
// its configured interval at once, so only the first unannounced change
// after quiet polls waits for the stretched poll. Send pulls neither earn
// nor lose it: they find changes by design.
func (e *Engine) pollIntervalLocked(st *storeState) time.Duration {
	base := st.cfg.PollInterval
	return min(base<<st.pollStretch, e.pollIntervalCapLocked(st))
}

func (e *Engine) pollIntervalCapLocked(st *storeState) time.Duration {
	base := st.cfg.PollInterval
	return max(base, min(base*time.Duration(e.opts.PollStretchMax), st.cfg.FullResyncInterval))
}

// stretchPollLocked updates the store's poll stretch after a successful
// pull (st.drift already holds a full reconcile's drift).
func (e *Engine) stretchPollLocked(st *storeState, p attempt, res pullResult) {
	poll := p.trig == TriggerPoll && !p.full()
	switch {
	case p.full() && !p.initial && st.drift > 0, poll && res.Changed > 0:
		st.pollStretch = 0
	case poll && st.drift == 0 && e.pollIntervalLocked(st) < e.pollIntervalCapLocked(st):
		st.pollStretch++
	}
}
