package mirror

import (
	"context"
	"fmt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

// SendRecorder is the receiver's Sink: it records each send durably with
// inventory.RecordSend, which dedupes by the send's ID and marks its target
// stores dirty in the same commit. It runs on every replica and needs no
// leader: the leader's engine learns of the marks through
// inventory.Subscribe (PostgreSQL LISTEN/NOTIFY across replicas).
type SendRecorder struct {
	inv inventory.Store
	// noted, when set, tells this process's engine the receive time at once,
	// for lastSendTime and the lag metric.
	noted func(key inventory.StoreKey, s webhookserver.Send)
}

var _ webhookserver.Sink = (*SendRecorder)(nil)

// NewSendRecorder returns a Sink that records sends in inv.
func NewSendRecorder(inv inventory.Store) *SendRecorder { return &SendRecorder{inv: inv} }

// Sink returns a Sink recording into the engine's inventory that also tells
// this engine of each send directly. Use it on every replica.
func (e *Engine) Sink() *SendRecorder {
	return &SendRecorder{inv: e.inv, noted: func(k inventory.StoreKey, s webhookserver.Send) {
		e.noteSend(k, s.ReceivedAt)
	}}
}

// Accept records the send. The receiver answers Smaregi 2xx only after it
// returns nil, so an error here makes Smaregi list the send as failed and
// the shop can resend it. A duplicate is success: it was recorded before.
func (r *SendRecorder) Accept(ctx context.Context, s webhookserver.Send) error {
	targets := make([]inventory.StoreKey, len(s.Targets))
	for i, t := range s.Targets {
		targets[i] = inventory.StoreKey{Namespace: t.Namespace, Name: t.Name}
	}
	dup, err := r.inv.RecordSend(ctx, inventory.SendRecord{
		ID:         s.ID,
		Namespace:  s.Namespace,
		ProcName:   s.ProcName,
		Targets:    targets,
		Rows:       s.Rows,
		ReceivedAt: s.ReceivedAt,
	})
	if err != nil {
		return fmt.Errorf("recording %s send %.12s for %d stores: %w", s.ProcName, s.ID, len(targets), err)
	}
	// A duplicate marked nothing dirty, so no pull will follow it: noting
	// it would leave a send pending and report a bogus lag.
	if r.noted != nil && !dup {
		for _, k := range targets {
			r.noted(k, s)
		}
	}
	return nil
}
