package webhookserver

import (
	"context"
	"fmt"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// DurableSink is the receiver's production Sink: it records each send
// durably with inventory.RecordSend, which dedupes by the send's ID and marks
// its target stores dirty in the same commit. It runs on every replica and
// needs no leader: the leader's sync engine learns of the marks through
// inventory.Subscribe (PostgreSQL LISTEN/NOTIFY across replicas).
type DurableSink struct {
	inv inventory.Store
	// onRecorded, when set, tells this process's engine the receive time at
	// once, for lastSendTime and the send→mirror lag metric.
	onRecorded func(key inventory.StoreKey, receivedAt time.Time)
}

var _ Sink = (*DurableSink)(nil)

// NewDurableSink returns a Sink that records sends in inv. onRecorded, if
// not nil, is called for each target store of every send newly recorded (not
// for duplicates); pass the sync engine's NoteSend.
func NewDurableSink(inv inventory.Store, onRecorded func(key inventory.StoreKey, receivedAt time.Time)) *DurableSink {
	return &DurableSink{inv: inv, onRecorded: onRecorded}
}

// Accept records the send. The receiver answers Smaregi 2xx only after it
// returns nil, so an error here makes Smaregi list the send as failed and
// the shop can resend it. A duplicate is success: it was recorded before.
func (r *DurableSink) Accept(ctx context.Context, s Send) error {
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
	if r.onRecorded != nil && !dup {
		for _, k := range targets {
			r.onRecorded(k, s.ReceivedAt)
		}
	}
	return nil
}
