package smaregisim

import (
	"context"
	"fmt"
	"sync"
)

// postLoop is the lifecycle the simulator's two outgoing posters share (the
// legacy API送信 sender and the Platform webhook outbox): one goroutine posts
// in order, is woken by changes, and stops on close. The poster embeds it
// and guards its own queue with mu.
type postLoop struct {
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed by the poster's goroutine when it returns

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	closed  bool
}

// init readies the loop before its goroutine starts.
func (p *postLoop) init() {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.done = make(chan struct{})
	p.changed = make(chan struct{})
}

// notify wakes waiters. The caller holds mu.
func (p *postLoop) notify() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// waitIdle returns once idle (called with mu held) reports nothing queued
// or in flight, or the loop is closed; what names the poster in errors.
func (p *postLoop) waitIdle(ctx context.Context, what string, idle func() bool) error {
	for {
		p.mu.Lock()
		done := idle() || p.closed
		ch := p.changed
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("smaregisim: waiting for %s: %w", what, ctx.Err())
		}
	}
}

// close stops the goroutine and waits for it.
func (p *postLoop) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.notify()
	p.mu.Unlock()
	p.cancel()
	<-p.done
}
