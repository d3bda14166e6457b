package boltstore

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// maxGroup bounds the calls one group commit carries (bolt's own
// MaxBatchSize default), so that one transaction stays short.
const maxGroup = 1000

// groupCommitter shares read-write transactions between concurrent callers
// (RecordSend, SubmitAdjustment) so that a burst costs few fsyncs. Unlike
// bolt's db.Batch, which always waits MaxBatchDelay for company, it commits
// at once when no commit is under way, and gathers only the calls that
// arrive while one is: an idle store pays no wait, a busy one still shares
// its fsyncs (the commit itself is the window).
type groupCommitter struct {
	db *bolt.DB

	mu    sync.Mutex
	queue []*groupCall
	busy  bool // a commit is under way; it takes the queue when done
}

type groupCall struct {
	fn   func(*bolt.Tx) error
	err  error
	done chan struct{}
}

// update runs fn in a read-write transaction, possibly shared, and returns
// after it committed. Like db.Batch, fn may run more than once: when
// another call's fn fails, the group is rolled back and run again without
// it, and the failing fn runs alone so that its error is its own.
func (g *groupCommitter) update(fn func(*bolt.Tx) error) error {
	call := &groupCall{fn: fn, done: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, call)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if lead {
		g.commitNext()
	}
	<-call.done
	return call.err
}

// commitNext commits the queued calls as one group; if more arrived
// meanwhile, a new goroutine commits them, so the caller that led this
// group returns as soon as its own commit is done.
func (g *groupCommitter) commitNext() {
	g.mu.Lock()
	n := min(len(g.queue), maxGroup)
	group := g.queue[:n:n]
	g.queue = g.queue[n:]
	g.mu.Unlock()

	g.commit(group)

	g.mu.Lock()
	more := len(g.queue) > 0
	g.busy = more
	g.mu.Unlock()
	if more {
		go g.commitNext()
	}
}

func (g *groupCommitter) commit(group []*groupCall) {
	for len(group) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range group {
				if err := c.fn(tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, c := range group {
				c.err = err
				close(c.done)
			}
			return
		}
		bad := group[failed]
		bad.err = g.db.Update(bad.fn)
		close(bad.done)
		rest := make([]*groupCall, 0, len(group)-1)
		rest = append(rest, group[:failed]...)
		group = append(rest, group[failed+1:]...)
	}
}
