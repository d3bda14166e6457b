package hubapi

// The live feed of a StockPool: GET …/stockpools/{name}/stock?watch=true.
//
// A pool has no change log of its own: its resourceVersion is the list of
// its active members' resource versions ("shibuya:12,umeda:40", opaque to
// clients). A pool watcher follows each member's feed (watch.go), and for
// every product a member's change names it sends the product's pooled item
// as it is now, with the positions reached so far as resourceVersion, so a
// client resumes exactly where it stopped. When the pool's active members
// change (a store joins, leaves, is suspended or Stalled), positions of one
// member set say nothing about another, so the watch ends with a 410 event:
// list again.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/stockpool"
)

// poolVersion is a pool's resource version: one position per active
// member, in member name order.
type poolVersion struct {
	names    []string
	versions []uint64
}

func (v poolVersion) String() string {
	var b strings.Builder
	for i, n := range v.names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(v.versions[i], 10))
	}
	return b.String()
}

// parsePoolVersion reads a poolVersion; names must be in order, once each.
func parsePoolVersion(s string) (poolVersion, bool) {
	var v poolVersion
	if s == "" {
		return v, false
	}
	for _, part := range strings.Split(s, ",") {
		name, num, ok := strings.Cut(part, ":")
		n, err := strconv.ParseUint(num, 10, 64)
		if !ok || err != nil || name == "" || (len(v.names) > 0 && name <= v.names[len(v.names)-1]) {
			return v, false
		}
		v.names, v.versions = append(v.names, name), append(v.versions, n)
	}
	return v, true
}

// activeMembers are the members that count, in name order (Members sorts).
func activeMembers(ms []stockpool.Member) []stockpool.Member {
	var out []stockpool.Member
	for _, m := range ms {
		if m.Active {
			out = append(out, m)
		}
	}
	return out
}

func sameNames(ms []stockpool.Member, names []string) bool {
	if len(ms) != len(names) {
		return false
	}
	for i, m := range ms {
		if m.Name() != names[i] {
			return false
		}
	}
	return true
}

// poolWatchObject is a watch event's object: the product's pooled item and
// the pool's resourceVersion after it.
type poolWatchObject struct {
	PoolStockItem
	ResourceVersion string `json:"resourceVersion"`
}

func poolEventLine(typ string, obj any) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Object any    `json:"object"`
	}{typ, obj})
	return append(b, '\n')
}

func poolGoneEvent(message string) []byte {
	return poolEventLine("ERROR", map[string]any{"code": 410, "reason": "Expired", "message": message})
}

// servePoolWatch streams the pool's changes after rv.
func (s *Server) servePoolWatch(w http.ResponseWriter, r *http.Request, pool *smaregiv1alpha1.StockPool, rvText string, timeout time.Duration) {
	ctx := r.Context()
	rv, ok := parsePoolVersion(rvText)
	if !ok {
		writeError(w, http.StatusBadRequest, reasonBadRequest, "a pool watch needs resourceVersion: the pool listing's, or the last event's", nil)
		return
	}
	ms, ok := s.members(w, r, pool)
	if !ok {
		return
	}
	active := activeMembers(ms)
	if !sameNames(active, rv.names) {
		writeError(w, http.StatusGone, reasonGone, "the pool's active members changed since this resourceVersion; list again and watch from the listing's resourceVersion", nil)
		return
	}
	keys := make([]inventory.StoreKey, len(active))
	for i, m := range active {
		keys[i] = storeKey(m.Store)
		current, err := s.opts.Store.StoreVersion(ctx, keys[i])
		if err != nil {
			s.storeFailure(w, err, "reading a member's resource version", keys[i])
			return
		}
		if _, err := s.opts.Store.ChangesSince(ctx, keys[i], rv.versions[i], 1); rv.versions[i] > current || errors.Is(err, inventory.ErrGone) {
			writeError(w, http.StatusGone, reasonGone, "changes after this resourceVersion are no longer kept; list again", nil)
			return
		} else if err != nil {
			s.storeFailure(w, err, "reading a member's change log", keys[i])
			return
		}
	}
	feeds := make([]*storeFeed, 0, len(keys))
	defer func() {
		for _, f := range feeds {
			s.watches.release(f)
		}
	}()
	for _, k := range keys {
		f, err := s.watches.acquire(ctx, k)
		if err != nil {
			s.storeFailure(w, err, "starting the watch", k)
			return
		}
		feeds = append(feeds, f)
	}
	watchersGauge.Inc()
	defer watchersGauge.Dec()

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "application/x-ndjson")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(s.opts.WatchWriteTimeout))
		_, err := w.Write(b)
		return err == nil
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
	pos := poolVersion{names: rv.names, versions: slices.Clone(rv.versions)}
	joined := make([]bool, len(feeds))
	waits := make([]reflect.SelectCase, 0, len(feeds)+5)
	for {
		// Gather what the members' feeds have after each position.
		changed := map[string]bool{}
		waits = waits[:0]
		for i, f := range feeds {
			evs, ch, behind, gone := f.since(pos.versions[i], watchPage)
			switch {
			case gone:
				_ = write(poolGoneEvent("a member's changes are no longer kept; list again"))
				_ = flush()
				return
			case behind && joined[i]:
				watchCutOff.Inc()
				return // a slow client, as in serveWatch
			case behind:
				var err error
				if evs, err = s.changeEvents(ctx, keys[i], pos.versions[i], watchPage); errors.Is(err, inventory.ErrGone) {
					_ = write(poolGoneEvent("a member's changes are no longer kept; list again"))
					_ = flush()
					return
				} else if err != nil {
					s.log.Error(err, "reading a member's change log for a pool watcher", "store", keys[i].String())
					panic(http.ErrAbortHandler)
				}
			default:
				joined[i] = true
			}
			for _, e := range evs {
				changed[e.productID] = true
			}
			if len(evs) > 0 {
				pos.versions[i] = evs[len(evs)-1].version
			}
			waits = append(waits, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if len(changed) > 0 {
			lines, err := s.poolEvents(ctx, pool, active, keys, changed, pos.String())
			if err != nil {
				s.log.Error(err, "reading the members' rows for a pool watcher", "pool", poolKey(pool).String())
				panic(http.ErrAbortHandler)
			}
			for _, l := range lines {
				if !write(l) {
					return
				}
			}
			if !flush() {
				return
			}
			continue
		}
		// Nothing new: still the same members? (The cache is in memory.)
		if now, err := stockpool.Members(ctx, s.opts.Reader, pool); err == nil && !sameNames(activeMembers(now), pos.names) {
			_ = write(poolGoneEvent("the pool's active members changed; list again"))
			_ = flush()
			return
		}
		const (
			caseBookmark = iota
			caseEnd
			caseCtx
			caseStop
			casePoll
		)
		// A member change is a cache event, not a log entry: look again at
		// least every watchPoll.
		poll := time.NewTimer(watchPoll)
		fixed := []reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(bookmark.C)},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(end.C)},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(s.stopCtx.Done())},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(poll.C)},
		}
		chosen, _, _ := reflect.Select(append(fixed, waits...))
		poll.Stop()
		switch chosen {
		case caseBookmark:
			if !write(poolEventLine("BOOKMARK", map[string]string{"resourceVersion": pos.String()})) || !flush() {
				return
			}
		case caseEnd, caseCtx, caseStop:
			return
		}
	}
}

// poolEvents encodes the pooled item of each changed product as it is now
// (DELETED when no active member has a row for it).
func (s *Server) poolEvents(ctx context.Context, pool *smaregiv1alpha1.StockPool, active []stockpool.Member, keys []inventory.StoreKey,
	changed map[string]bool, version string) ([][]byte, error) {
	ids := make([]string, 0, len(changed))
	for id := range changed {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	items := make(map[string]*PoolStockItem, len(ids))
	cands := map[string][]stockpool.Candidate{}
	for i, m := range active {
		rows, err := s.opts.Store.RowsByID(ctx, keys[i], ids)
		if err != nil {
			return nil, err
		}
		pending, err := s.opts.Store.PendingDeltas(ctx, keys[i])
		if err != nil {
			return nil, err
		}
		avail, err := s.memberAvailable(ctx, m, keys[i], rows, pending)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			a, ok := avail[id]
			if !ok {
				continue
			}
			it := items[id]
			if it == nil {
				it = &PoolStockItem{ProductID: id}
				items[id] = it
			}
			it.Members = append(it.Members, PoolMemberStock{Store: m.Name(), Available: a})
			cands[id] = append(cands[id], stockpool.Candidate{Store: m.Name(), Available: a})
		}
	}
	out := make([][]byte, 0, len(ids))
	for _, id := range ids {
		it := items[id]
		if it == nil {
			out = append(out, poolEventLine("DELETED", map[string]string{"productId": id, "resourceVersion": version}))
			continue
		}
		it.Available = stockpool.Pooled(cands[id], pool.Spec.SafetyStock)
		out = append(out, poolEventLine("MODIFIED", poolWatchObject{PoolStockItem: *it, ResourceVersion: version}))
	}
	return out, nil
}
