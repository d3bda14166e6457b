package mirror

import (
	"context"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// NoteSend tells the engine that a send for the store, received at
// receivedAt, was recorded durably by this process's receiver (see
// webhookserver.NewDurableSink), for lastSendTime and the send→mirror lag
// metric. It is only a hint: the pull itself is woken by the dirty mark the
// recording made, on whichever replica leads. Safe to call before Start and
// on a follower, where it does nothing.
func (e *Engine) NoteSend(key inventory.StoreKey, receivedAt time.Time) {
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

// recentSendsLimit bounds the read of recent sends per wake-up. Sends
// accepted by this replica are noted directly (NoteSend); the read is for
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
