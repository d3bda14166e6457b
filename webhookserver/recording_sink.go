package webhookserver

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrSinkFull is returned by a RecordingSink that holds Limit sends.
var ErrSinkFull = errors.New("recording sink is full")

// RecordingSink keeps accepted sends in memory, in arrival order. It is for
// tests and for running the receiver before the sync engine exists: it is
// NOT durable (a restart loses everything), so with it a 2xx answer means
// only "seen by this process". It does not deduplicate; Sends shows exactly
// what the receiver handed on. The zero value is ready to use.
type RecordingSink struct {
	// Limit caps how many sends are kept; when reached, Accept returns
	// ErrSinkFull and the receiver answers 503, as a real sink would when
	// it cannot record. Zero means no limit.
	Limit int

	mu    sync.Mutex
	sends []Send
}

var _ Sink = (*RecordingSink)(nil)

// Accept records s unless ctx is done or the sink is full.
func (r *RecordingSink) Accept(ctx context.Context, s Send) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("record send %s: %w", s.ID, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.Limit > 0 && len(r.sends) >= r.Limit {
		return fmt.Errorf("record send %s: %w (%d sends)", s.ID, ErrSinkFull, r.Limit)
	}
	r.sends = append(r.sends, s)
	return nil
}

// Sends returns a copy of the recorded sends, oldest first.
func (r *RecordingSink) Sends() []Send {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Send(nil), r.sends...)
}

// Len returns how many sends are recorded.
func (r *RecordingSink) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.sends)
}

// Reset forgets every recorded send.
func (r *RecordingSink) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends = nil
}
