// Package dirtyfeed fans dirty-store notifications out to subscribers without
// ever blocking the publisher: each subscriber has a coalescing set of keys
// not yet delivered, drained by its own goroutine.
package dirtyfeed

import (
	"context"
	"sync"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Feed is a fan-out of store keys. The zero value is not usable; use New.
type Feed struct {
	mu     sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

type subscriber struct {
	mu      sync.Mutex
	pending map[inventory.StoreKey]struct{}
	order   []inventory.StoreKey // pending keys in arrival order, for fairness
	wake    chan struct{}        // capacity 1: "pending is not empty"
	done    chan struct{}        // closed by Feed.Close
}

func New() *Feed { return &Feed{subs: map[*subscriber]struct{}{}} }

// Publish queues keys for every subscriber and returns at once.
func (f *Feed) Publish(keys ...inventory.StoreKey) {
	if len(keys) == 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for s := range f.subs {
		s.mu.Lock()
		for _, k := range keys {
			if _, ok := s.pending[k]; !ok {
				s.pending[k] = struct{}{}
				s.order = append(s.order, k)
			}
		}
		s.mu.Unlock()
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Subscribe returns a channel of keys published from now on; it is closed
// when ctx ends or the feed is closed.
func (f *Feed) Subscribe(ctx context.Context) <-chan inventory.StoreKey {
	out := make(chan inventory.StoreKey)
	s := &subscriber{
		pending: map[inventory.StoreKey]struct{}{},
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		close(out)
		return out
	}
	f.subs[s] = struct{}{}
	f.mu.Unlock()

	go func() {
		defer close(out)
		defer func() {
			f.mu.Lock()
			delete(f.subs, s)
			f.mu.Unlock()
		}()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.done:
				return
			case <-s.wake:
			}
			for {
				s.mu.Lock()
				if len(s.order) == 0 {
					s.mu.Unlock()
					break
				}
				k := s.order[0]
				s.order = s.order[1:]
				// Removed before delivery: a key published again while we
				// wait to deliver it is queued again, not lost.
				delete(s.pending, k)
				s.mu.Unlock()
				select {
				case out <- k:
				case <-ctx.Done():
					return
				case <-s.done:
					return
				}
			}
		}
	}()
	return out
}

// Close ends every subscription.
func (f *Feed) Close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.closed = true
	for s := range f.subs {
		close(s.done)
	}
}
