package hubapi

// The live feed of a StockPool: GET …/stockpools/{name}/stock?watch=true.
//
// A pool has no change log of its own: its resourceVersion is the list of
// its active members' resource versions and a fingerprint of the pool's
// safety stock ("shibuya:12,umeda:40~3fa1…", opaque to clients). A pool
// watcher follows each member's feed (watch.go), and for every product a
// member's change names it sends the product's pooled item as it is now,
// with the positions reached so far as resourceVersion, so a client resumes
// exactly where it stopped. A member's own safety stock is in its feed
// (recorded in the inventory), so its changes are events here too.
//
// Two changes are not in any member's feed, and end the watch with a 410
// event (list again): the pool's active members (a store joins, leaves, is
// suspended or Stalled: positions of one member set say nothing about
// another), and the pool's own safety stock (spec.safetyStock or its
// overrides ConfigMap, see pool_safety.go: giving them events would need a
// change log of the pool's own, numbered across replicas). Both are rare,
// deliberate edits; a relist costs what the events for every product would.

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

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/stockpool"
)

// poolVersion is a pool's resource version: one position per active
// member, in member name order, and the fingerprint of the pool's safety
// stock (poolSafety) that the listing used.
type poolVersion struct {
	names    []string
	versions []uint64
	safety   string
}

// safetySeparator ends the member positions; it is in no Kubernetes name,
// and needs no escaping in a query.
const safetySeparator = "~"

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
	b.WriteString(safetySeparator)
	b.WriteString(v.safety)
	return b.String()
}

// parsePoolVersion reads a poolVersion; names must be in order, once each.
// One without a fingerprint (made before pools had per-product safety
// stock) parses, and then matches no pool's: a watch from it answers 410.
func parsePoolVersion(s string) (poolVersion, bool) {
	var v poolVersion
	s, v.safety, _ = strings.Cut(s, safetySeparator)
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
	safety, err := s.poolSafety(ctx, pool)
	if err != nil {
		s.storeFailure(w, err, "reading the pool's safety stock overrides", poolKey(pool))
		return
	}
	if safety.fingerprint != rv.safety {
		writeError(w, http.StatusGone, reasonGone, "the pool's safety stock changed since this resourceVersion; list again and watch from the listing's resourceVersion", nil)
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
	pos := poolVersion{names: rv.names, versions: slices.Clone(rv.versions), safety: rv.safety}
	// The pool and its members are looked at again when the feeds are
	// quiet, and at least every watchPoll while they are not.
	checked := time.Now()
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
		if len(changed) == 0 || time.Since(checked) >= watchPoll {
			checked = time.Now()
			if gone := s.poolChanged(ctx, pool, pos); gone != "" {
				_ = write(poolGoneEvent(gone))
				_ = flush()
				return
			}
		}
		if len(changed) > 0 {
			lines, err := s.poolEvents(ctx, safety.SafetyStock, active, keys, changed, pos.String())
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
		const (
			caseBookmark = iota
			caseEnd
			caseCtx
			caseStop
			casePoll
		)
		// A member or safety stock change is a cache event, not a log
		// entry: look again at least every watchPoll.
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

// poolChanged says why a watch from pos must end (410), or "": the pool
// is gone, its active members or its safety stock changed. The pool, its
// members and its ConfigMap are read from the cache (in memory); a failed
// read is looked at again next time.
func (s *Server) poolChanged(ctx context.Context, pool *smaregiv1alpha1.StockPool, pos poolVersion) string {
	var now smaregiv1alpha1.StockPool
	if err := s.opts.Reader.Get(ctx, types.NamespacedName{Namespace: pool.Namespace, Name: pool.Name}, &now); err != nil {
		if apierrors.IsNotFound(err) {
			return "the StockPool no longer exists"
		}
		return ""
	}
	if ms, err := stockpool.Members(ctx, s.opts.Reader, &now); err == nil && !sameNames(activeMembers(ms), pos.names) {
		return "the pool's active members changed; list again"
	}
	if safety, err := s.poolSafety(ctx, &now); err == nil && safety.fingerprint != pos.safety {
		return "the pool's safety stock changed; list again"
	}
	return ""
}

// poolEvents encodes the pooled item of each changed product as it is now
// (DELETED when no active member has a row for it), with the pool's safety
// stock as the watch started (a change ends the watch: poolChanged).
func (s *Server) poolEvents(ctx context.Context, safety inventory.SafetyStock, active []stockpool.Member, keys []inventory.StoreKey,
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
				it = &PoolStockItem{ProductID: id, SafetyStock: safety.For(id)}
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
		it.Available = stockpool.Pooled(cands[id], it.SafetyStock)
		out = append(out, poolEventLine("MODIFIED", poolWatchObject{PoolStockItem: *it, ResourceVersion: version}))
	}
	return out, nil
}
