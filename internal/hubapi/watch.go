package hubapi

// The live feed: GET …/stock?watch=true&resourceVersion=N streams every
// change after N as newline-delimited JSON, Kubernetes' list-then-watch
// (docs/hub-api.md, "Watch stock").
//
// One storeFeed per watched store and replica reads the store's change log
// (inventory.VersionStore) once for all its watchers, turns each change into
// its event line (the product's current row and availability) and keeps the
// newest lines in a bounded ring. Watchers copy lines from the ring to their
// connection. A watcher starting older than the ring reads the log itself
// until it reaches the ring; a watcher that falls behind the ring while
// writing (a slow client) is cut off and resumes from its last version with
// a new request. So a watcher holds no memory but a small slice of line
// references and no store read while it writes, and every write has a
// deadline.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Defaults of the watch options.
const (
	DefaultWatchBookmarkInterval = 30 * time.Second
	// DefaultWatchTimeout is how long a watch runs at most (plus up to a
	// fifth more, at random, so that reconnections spread out); the client
	// resumes from its last resourceVersion.
	DefaultWatchTimeout = 10 * time.Minute
	// DefaultWatchWriteTimeout is how long one write to a watcher may take
	// before the watcher is cut off.
	DefaultWatchWriteTimeout = 10 * time.Second
	// DefaultWatchRing is how many event lines a store's feed keeps for its
	// watchers (about 200 bytes each). A watcher more than this many events
	// behind is cut off.
	DefaultWatchRing = 4096
	// watchPoll is how often a feed re-reads its store without a
	// notification: a safety net for notifications lost while PostgreSQL's
	// LISTEN reconnects (edges trigger, levels decide).
	watchPoll = 2 * time.Second
	// watchPage is how many changes one read of the log takes.
	watchPage = 500
)

// watchEvent is one encoded event line, the version it carries and the
// product it is about (for pool watches, pool_watch.go).
type watchEvent struct {
	version   uint64
	line      []byte
	productID string
}

// storeFeed reads one store's change log for the watchers of one replica.
type storeFeed struct {
	key  inventory.StoreKey
	wake chan struct{} // capacity 1

	mu       sync.Mutex
	watchers int
	// events hold versions first+1 … version, contiguous.
	first, version uint64
	events         []watchEvent
	// changed is closed and replaced when events grow or the feed fails.
	changed chan struct{}
	// gone: the store's log no longer continues what the feed read (the
	// store was deleted and recreated); every watcher ends with 410.
	gone   bool
	cancel context.CancelFunc
}

// watchHub owns the feeds of one Server.
type watchHub struct {
	s    *Server
	mu   sync.Mutex
	subs bool
	// feeds are the feeds with watchers.
	feeds map[inventory.StoreKey]*storeFeed
}

func newWatchHub(s *Server) *watchHub {
	return &watchHub{s: s, feeds: map[inventory.StoreKey]*storeFeed{}}
}

// acquire returns the store's feed, starting it for the first watcher.
func (h *watchHub) acquire(ctx context.Context, key inventory.StoreKey) (*storeFeed, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.subs {
		h.subs = true
		// One subscription per Server fans notifications out by key, so
		// that a notification costs one map lookup, not one wake-up per
		// watched store.
		go func() {
			for key := range h.s.opts.Store.SubscribeVersions(h.s.stopCtx) {
				h.mu.Lock()
				f := h.feeds[key]
				h.mu.Unlock()
				if f != nil {
					f.poke()
				}
			}
		}()
	}
	if f := h.feeds[key]; f != nil {
		f.mu.Lock()
		f.watchers++
		f.mu.Unlock()
		return f, nil
	}
	v, err := h.s.opts.Store.StoreVersion(ctx, key)
	if err != nil {
		return nil, err
	}
	fctx, cancel := context.WithCancel(h.s.stopCtx)
	f := &storeFeed{key: key, wake: make(chan struct{}, 1), watchers: 1, first: v, version: v,
		changed: make(chan struct{}), cancel: cancel}
	h.feeds[key] = f
	go h.run(fctx, f)
	return f, nil
}

// release drops a watcher; the last one stops the feed and frees its ring.
func (h *watchHub) release(f *storeFeed) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f.mu.Lock()
	f.watchers--
	last := f.watchers == 0
	f.mu.Unlock()
	if last {
		f.cancel()
		if h.feeds[f.key] == f {
			delete(h.feeds, f.key)
		}
	}
}

func (f *storeFeed) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// run reads the log whenever the store's version may have grown.
func (h *watchHub) run(ctx context.Context, f *storeFeed) {
	t := time.NewTicker(watchPoll)
	defer t.Stop()
	for {
		if err := h.catchUp(ctx, f); err != nil && ctx.Err() == nil {
			if errors.Is(err, inventory.ErrGone) {
				f.fail()
				h.mu.Lock()
				if h.feeds[f.key] == f {
					delete(h.feeds, f.key) // the next watcher starts afresh
				}
				h.mu.Unlock()
				return
			}
			h.s.log.Error(err, "reading the change log for watchers; retrying", "store", f.key.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-t.C:
		}
	}
}

func (h *watchHub) catchUp(ctx context.Context, f *storeFeed) error {
	for {
		f.mu.Lock()
		from := f.version
		f.mu.Unlock()
		evs, err := h.s.changeEvents(ctx, f.key, from, watchPage)
		if err != nil {
			return err
		}
		if len(evs) > 0 {
			f.append(evs, h.s.opts.WatchRing)
		}
		if len(evs) < watchPage {
			return nil
		}
	}
}

func (f *storeFeed) append(evs []watchEvent, ring int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, evs...)
	f.version = evs[len(evs)-1].version
	if over := len(f.events) - ring; over > 0 {
		// Copy rather than re-slice, so the dropped lines can be freed.
		f.events = slices.Clone(f.events[over:])
		f.first += uint64(over)
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *storeFeed) fail() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gone = true
	close(f.changed)
	f.changed = make(chan struct{})
}

// since returns the events after pos (at most max; a copy of the slice of
// shared, immutable lines), the channel that is closed when there are more,
// and whether pos is no longer in the ring (behind) or the feed failed
// (gone).
func (f *storeFeed) since(pos uint64, max int) (evs []watchEvent, changed <-chan struct{}, behind, gone bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return nil, nil, false, true
	}
	if pos < f.first {
		return nil, f.changed, true, false
	}
	if pos >= f.version {
		return nil, f.changed, false, false
	}
	i := int(pos - f.first)
	n := min(len(f.events)-i, max)
	return slices.Clone(f.events[i : i+n]), f.changed, false, false
}

// changeEvents reads up to limit changes after version and encodes them:
// the product's current row, or DELETED when it has none. Product IDs are
// read once per call, with one read of the pending sums.
func (s *Server) changeEvents(ctx context.Context, key inventory.StoreKey, version uint64, limit int) ([]watchEvent, error) {
	changes, err := s.opts.Store.ChangesSince(ctx, key, version, limit)
	if err != nil || len(changes) == 0 {
		return nil, err
	}
	ids := make([]string, 0, len(changes))
	for _, c := range changes {
		ids = append(ids, c.ProductID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	rows, err := s.opts.Store.RowsByID(ctx, key, ids)
	if err != nil {
		return nil, err
	}
	pending, err := s.opts.Store.PendingDeltas(ctx, key)
	if err != nil {
		return nil, err
	}
	safety, err := s.effectiveSafety(ctx, key, nil, ids)
	if err != nil {
		return nil, err
	}
	out := make([]watchEvent, 0, len(changes))
	for _, c := range changes {
		var b []byte
		if r, ok := rows[c.ProductID]; ok {
			b = append(b, `{"type":"MODIFIED","object":`...)
			b = appendItem(b, r, safety.For(c.ProductID), pending[c.ProductID], c.Version)
		} else {
			b = append(b, `{"type":"DELETED","object":{"productId":`...)
			b = strconv.AppendQuote(b, c.ProductID)
			b = appendVersion(b, c.Version)
			b = append(b, '}')
		}
		b = append(b, "}\n"...)
		out = append(out, watchEvent{version: c.Version, line: b, productID: c.ProductID})
	}
	return out, nil
}

func appendVersion(b []byte, v uint64) []byte {
	b = append(b, `,"resourceVersion":"`...)
	b = strconv.AppendUint(b, v, 10)
	return append(b, '"')
}

// serveWatch streams changes after the resourceVersion in the query.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, store *smaregiv1alpha1.SmaregiStore, rv uint64, timeout time.Duration) {
	ctx := r.Context()
	key := storeKey(store)
	current, err := s.opts.Store.StoreVersion(ctx, key)
	if err != nil {
		s.storeFailure(w, err, "reading the store's resource version", key)
		return
	}
	if rv > current {
		writeGone(w, rv)
		return
	}
	// Check the log still reaches back to rv before answering 200.
	if _, err := s.opts.Store.ChangesSince(ctx, key, rv, 1); err != nil {
		if errors.Is(err, inventory.ErrGone) {
			writeGone(w, rv)
			return
		}
		s.storeFailure(w, err, "reading the change log", key)
		return
	}
	feed, err := s.watches.acquire(ctx, key)
	if err != nil {
		s.storeFailure(w, err, "starting the watch", key)
		return
	}
	defer s.watches.release(feed)
	watchersGauge.Inc()
	defer watchersGauge.Dec()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		// A deadline per write: the server's WriteTimeout would end a
		// healthy long watch, and no deadline would let a stalled client
		// keep its connection forever.
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WatchWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return true
	}
	flush := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WatchWriteTimeout))
		return rc.Flush() == nil
	}
	if !flush() {
		return
	}
	end := time.NewTimer(timeout)
	defer end.Stop()
	bookmark := time.NewTicker(s.opts.WatchBookmarkInterval)
	defer bookmark.Stop()
	pos := rv
	joined := false // served from the ring at least once
	for {
		evs, changed, behind, gone := feed.since(pos, watchPage)
		switch {
		case gone:
			_ = write(goneEvent(pos))
			_ = flush()
			return
		case behind && joined:
			// Fell behind the ring while writing: a slow client. Cut it
			// off; it resumes from pos with a new request, reading the log
			// itself, or it would hold the ring's memory without bound.
			watchCutOff.Inc()
			s.log.V(1).Info("cut off a slow watcher", "store", key.String(), "resourceVersion", pos)
			return
		case behind:
			// Started older than the ring: read the log directly.
			evs, err = s.changeEvents(ctx, key, pos, watchPage)
			if errors.Is(err, inventory.ErrGone) {
				_ = write(goneEvent(pos))
				_ = flush()
				return
			}
			if err != nil {
				s.log.Error(err, "reading the change log for a watcher", "store", key.String())
				panic(http.ErrAbortHandler)
			}
			if len(evs) == 0 {
				return // the log moved under us (store deleted); the client resumes
			}
		default:
			joined = true
		}
		if len(evs) > 0 {
			for _, e := range evs {
				if !write(e.line) {
					return
				}
			}
			pos = evs[len(evs)-1].version
			if !flush() {
				return
			}
			continue
		}
		select {
		case <-changed:
		case <-bookmark.C:
			if !write(bookmarkEvent(pos)) || !flush() {
				return
			}
		case <-end.C:
			return
		case <-ctx.Done():
			return
		case <-s.stopCtx.Done():
			return
		}
	}
}

func bookmarkEvent(v uint64) []byte {
	b := []byte(`{"type":"BOOKMARK","object":{"resourceVersion":"`)
	b = strconv.AppendUint(b, v, 10)
	return append(b, "\"}}\n"...)
}

func goneEvent(v uint64) []byte {
	return fmt.Appendf(nil, `{"type":"ERROR","object":{"code":410,"reason":"Expired","message":"changes after resourceVersion %d are no longer kept; list again"}}`+"\n", v)
}

func writeGone(w http.ResponseWriter, rv uint64) {
	writeError(w, http.StatusGone, reasonGone, fmt.Sprintf("changes after resourceVersion %d are no longer kept (or the store was recreated); list again and watch from the listing's resourceVersion", rv), nil)
}

// watchTimeout is the watch's duration: timeoutSeconds if given (capped),
// else the default with jitter.
func (s *Server) watchTimeout(q string) (time.Duration, bool) {
	if q == "" {
		return s.opts.WatchTimeout + time.Duration(rand.Int64N(int64(s.opts.WatchTimeout/5)+1)), true
	}
	n, err := strconv.ParseUint(q, 10, 32)
	if err != nil || n == 0 {
		return 0, false
	}
	return min(time.Duration(n)*time.Second, s.opts.WatchTimeout), true
}
