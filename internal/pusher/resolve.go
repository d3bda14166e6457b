package pusher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// How an ambiguous or interrupted push is decided (the exactly-once core).
//
// Facts relied on:
//   - A stock_upd call applies all its rows or none (docs/smaregi-api.md,
//     and the simulator), so one product's verdict is the call's verdict.
//   - The pusher sends at most one call per store at a time and resolves an
//     open attempt before sending anything else, so a store's applied
//     attempts reached Smaregi in StartedAt order and an open attempt is the
//     newest write of this operator to that store.
//   - Each row carries the memo AttemptMemo(attempt ID), unless memos are
//     disabled (Options.DisableMemo; such attempts' IDs end in
//     noMemoSuffix, so that a resolution knows how the call was sent even
//     after a restart with the other setting). Where Smaregi keeps memos in
//     StockHistory, a row names its attempt and the decision is exact,
//     whatever other writers do.
//
// Whether Smaregi keeps memos is decided per store, not per resolution
// window: a window may hold none of our rows (the attempt never reached
// Smaregi and nothing else was pushed lately), and must then not fall back
// to (product, amount) matching, which could take another writer's
// division-15 row for ours. Once any history row with our memo prefix has
// been seen for a store, the Pusher remembers it (in memory, for the life
// of the process), and from then on an attempt sent with a memo is decided
// by its memo only. After a restart the knowledge is rebuilt from durable
// facts before any fallback: when the window shows no memo, the newest
// applied attempt sent with a memo (kept for AttemptRetention) is looked up
// in the history; if its rows carry memos, memos are kept (probeMemos).
// Only when no such attempt is retained, or its rows carry none, is the
// decision made by order.
//
// Where memos are not kept, rows are attributed by (product, amount), in
// order: for each product, the unclaimed division-15 rows since the window
// start are matched, oldest first, to the applied attempts that carry the
// product and have no claim for it yet (in StartedAt order), and only then to the
// open attempt. The window starts a clock-skew margin before the earliest
// of those attempts, widened until it covers every applied attempt that
// could have rows inside it, so a row that belongs to an earlier attempt
// with identical rows is never taken for the open one's. Rows attributed
// this way are stored as claims, so a later resolution starts from them.
//
// What remains possible without memos: another writer making a division-15
// change of exactly the same product and amount inside the window (a second
// integration writing the same shop) can be taken for ours, and then the
// open attempt is held applied when it was not. With memos known kept this
// cannot happen; it still can on a store whose Smaregi keeps memos but that
// has no retained applied attempt sent with one (a first push, or none for
// AttemptRetention) and no memo in the window. It also assumes a Smaregi
// once seen keeping memos goes on keeping them. A history that contradicts itself (some products applied, others
// not, or an applied attempt's row missing) is reported as undecidable: the
// attempt stays open and nothing is resent, since guessing could apply twice.

// errUndecidable says the history could not settle the attempt.
var errUndecidable = errors.New("stock history does not settle the attempt")

type resolution struct {
	applied bool
	claims  []string
	earlier map[string][]string
	// memosSeen: a history row in the window carries our memo prefix, so
	// Smaregi keeps memos.
	memosSeen bool
}

const memoPrefix = "smaregi-operator "

// noMemoSuffix ends the ID of an attempt sent without memos.
const noMemoSuffix = "-nomemo"

// sentWithMemo reports whether attempt a's rows carried its memo. IDs from
// before noMemoSuffix existed were always sent with one.
func sentWithMemo(a inventory.Attempt) bool { return !strings.HasSuffix(a.ID, noMemoSuffix) }

// hasOurMemo reports whether a history row was written by a pusher with a
// memo (any attempt's).
func hasOurMemo(r smaregi.HistoryRow) bool { return strings.HasPrefix(r.Memo, memoPrefix) }

// Claims are stored as "<productID>/<history row ID>": an attempt may have
// claims for some of its products only (a resolution reads the history of
// its own attempt's products), so matching must know which.
func claimOf(r smaregi.HistoryRow) string { return r.ProductID + "/" + r.ID }

// claimedProducts returns the products an attempt has claimed rows for and
// adds the claimed row IDs to rows.
func claimedProducts(e inventory.Attempt, rows map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, c := range e.Claims {
		p, id, ok := strings.Cut(c, "/")
		if !ok {
			continue
		}
		out[p] = true
		if rows != nil {
			rows[id] = true
		}
	}
	return out
}

// decide settles attempt a from history rows (division 15, a's products,
// since the window start, oldest first) and the store's applied attempts
// that may have rows in the window (with or without claims). memosKept is
// what is known of the store beyond this window: Smaregi keeps memos.
func decide(a inventory.Attempt, applied []inventory.Attempt, rows []smaregi.HistoryRow, memosKept bool) (resolution, error) {
	claimed := map[string]bool{}
	for _, e := range applied {
		claimedProducts(e, claimed)
	}
	memo := inventory.AttemptMemo(a.ID)
	seen := false
	var mine []smaregi.HistoryRow
	free := rows[:0:0]
	for _, r := range rows {
		// A claimed row is still evidence that memos are kept.
		if hasOurMemo(r) {
			seen = true
		}
		if claimed[r.ID] {
			continue
		}
		if r.Memo == memo {
			mine = append(mine, r)
		}
		free = append(free, r)
	}
	var (
		res resolution
		err error
	)
	if sentWithMemo(a) && (memosKept || seen) {
		res, err = decideByMemo(a, mine)
	} else {
		res, err = decideByOrder(a, applied, free)
	}
	res.memosSeen = seen
	return res, err
}

func decideByMemo(a inventory.Attempt, mine []smaregi.HistoryRow) (resolution, error) {
	if len(mine) == 0 {
		return resolution{}, nil
	}
	want := map[string]int64{}
	for _, r := range a.Rows {
		want[r.ProductID] = r.Amount
	}
	var res resolution
	for _, r := range mine {
		amt, ok := want[r.ProductID]
		if !ok || amt != r.Amount {
			return res, fmt.Errorf("%w: history row %s carries the attempt's memo but product %s amount %d", errUndecidable, r.ID, r.ProductID, r.Amount)
		}
		delete(want, r.ProductID)
		res.claims = append(res.claims, claimOf(r))
	}
	if len(want) > 0 {
		return resolution{}, fmt.Errorf("%w: %d of %d rows carry the attempt's memo (a call applies all or none)", errUndecidable, len(mine), len(a.Rows))
	}
	res.applied = true
	return res, nil
}

func decideByOrder(a inventory.Attempt, applied []inventory.Attempt, free []smaregi.HistoryRow) (resolution, error) {
	byProduct := map[string][]smaregi.HistoryRow{}
	for _, r := range free {
		byProduct[r.ProductID] = append(byProduct[r.ProductID], r)
	}
	earlier := make([]inventory.Attempt, 0, len(applied))
	done := map[string]map[string]bool{} // attempt → products with claims
	for _, e := range applied {
		if e.ID != a.ID && !e.StartedAt.After(a.StartedAt) {
			earlier = append(earlier, e)
			done[e.ID] = claimedProducts(e, nil)
		}
	}
	sort.SliceStable(earlier, func(i, j int) bool { return earlier[i].StartedAt.Before(earlier[j].StartedAt) })

	res := resolution{earlier: map[string][]string{}}
	yes, no := 0, 0
	for _, ar := range a.Rows {
		rs := byProduct[ar.ProductID]
		next := func(from int, amount int64) int {
			for j := from; j < len(rs); j++ {
				if rs[j].Amount == amount {
					return j
				}
			}
			return -1
		}
		i := 0
		for _, e := range earlier {
			amt, ok := amountOf(e, ar.ProductID)
			if !ok || done[e.ID][ar.ProductID] {
				continue
			}
			j := next(i, amt)
			if j < 0 {
				return resolution{}, fmt.Errorf("%w: the row of earlier applied attempt %s for product %s is not in the window", errUndecidable, e.ID, ar.ProductID)
			}
			res.earlier[e.ID] = append(res.earlier[e.ID], claimOf(rs[j]))
			i = j + 1
		}
		if j := next(i, ar.Amount); j >= 0 {
			yes++
			res.claims = append(res.claims, claimOf(rs[j]))
		} else {
			no++
		}
	}
	switch {
	case yes > 0 && no > 0:
		return resolution{}, fmt.Errorf("%w: %d products show the attempt's change and %d do not (a call applies all or none)", errUndecidable, yes, no)
	case yes > 0:
		res.applied = true
		return res, nil
	default:
		// Not applied: keep the attributions to earlier attempts anyway,
		// they are facts.
		res.claims = nil
		return res, nil
	}
}

func amountOf(a inventory.Attempt, productID string) (int64, bool) {
	i := sort.Search(len(a.Rows), func(i int) bool { return a.Rows[i].ProductID >= productID })
	if i < len(a.Rows) && a.Rows[i].ProductID == productID {
		return a.Rows[i].Amount, true
	}
	return 0, false
}

// resolve decides an open attempt from Smaregi's stock history and settles
// it. An error leaves it open; the caller backs off and tries again, and
// sends nothing for the store meanwhile.
func (w *worker) resolve(ctx context.Context, a inventory.Attempt) error {
	st, opts := w.p.opts.Store, w.p.opts
	if !w.sleep(ctx, opts.ResolveDelay-opts.Clock.Since(a.StartedAt)) {
		return ctx.Err()
	}
	c, t, err := w.p.client(ctx, w.key)
	if err != nil {
		return err
	}
	margin := opts.SkewMargin
	products := make(map[string]bool, len(a.Rows))
	ids := make([]string, 0, len(a.Rows))
	for _, r := range a.Rows {
		products[r.ProductID] = true
		ids = append(ids, r.ProductID)
	}
	// Widen the window until every applied attempt that may have a row in
	// it is fully inside it (resolve.go).
	since := a.StartedAt.Add(-margin)
	var applied []inventory.Attempt
	for i := 0; ; i++ {
		if i == 100 {
			return fmt.Errorf("resolving attempt %s: %w: the window keeps widening", a.ID, errUndecidable)
		}
		applied, err = st.AppliedAttempts(ctx, w.key, since.Add(-margin))
		if err != nil {
			return fmt.Errorf("resolving attempt %s: %w", a.ID, err)
		}
		widest := since
		for _, e := range applied {
			if e.StartedAt.After(a.StartedAt) || !sharesUnclaimed(e, products) {
				continue
			}
			if s := e.StartedAt.Add(-margin); s.Before(widest) {
				widest = s
			}
		}
		if !widest.Before(since) {
			break
		}
		since = widest
	}
	// What the history shows is as of a moment no earlier than this.
	asOf := opts.Clock.Now()
	var rows []smaregi.HistoryRow
	err = c.History(ctx, smaregi.HistoryQuery{
		StoreID: t.StoreID, ProductIDs: ids, Since: since, StockDivision: smaregi.DefaultStockDivision,
	}, func(page []smaregi.HistoryRow) error {
		rows = append(rows, page...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("resolving attempt %s: reading stock history: %w", a.ID, err)
	}
	kept := w.p.memosKept(w.key)
	if !kept && sentWithMemo(a) && !slices.ContainsFunc(rows, hasOurMemo) {
		// The window alone cannot tell; ask the durable facts.
		if kept, err = w.probeMemos(ctx, c, t, a); err != nil {
			return fmt.Errorf("resolving attempt %s: %w", a.ID, err)
		}
	}
	res, err := decide(a, applied, rows, kept)
	if err != nil {
		return fmt.Errorf("resolving attempt %s: %w", a.ID, err)
	}
	if kept || res.memosSeen {
		w.p.setMemosKept(w.key)
	}
	if res.applied {
		adjs := make([]inventory.Adjustment, 0, len(a.AdjustmentIDs))
		for _, id := range a.AdjustmentIDs {
			if adj, ok, err := st.GetAdjustment(ctx, w.key, id); err == nil && ok {
				adjs = append(adjs, adj)
			}
		}
		if err := w.finishApplied(ctx, a, adjs, inventory.AttemptResult{Claims: res.claims, EarlierClaims: res.earlier}, OutcomeResolvedApplied); err != nil {
			return err
		}
		w.p.forgetEnded(a.ID)
		return nil
	}
	// Not in the history (yet): a server may still apply a call whose
	// request ended, so this means "not applied" only after the settle
	// period.
	if until := w.p.settleBy(a); asOf.Before(until) {
		return &errAwaiting{until: until}
	}
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	if err := st.FinishAttempt(sctx, w.key, a.ID, inventory.AttemptResult{EarlierClaims: res.earlier}); err != nil {
		return err
	}
	w.p.forgetEnded(a.ID)
	w.p.metrics.outcomes.WithLabelValues(w.key.Namespace, w.key.Name, OutcomeResolvedNotApplied).Add(float64(len(a.AdjustmentIDs)))
	return nil
}

// sharesUnclaimed reports whether e carries one of products without a
// claimed history row for it: only then must its row be matched.
func sharesUnclaimed(e inventory.Attempt, products map[string]bool) bool {
	claimed := claimedProducts(e, nil)
	for _, r := range e.Rows {
		if products[r.ProductID] && !claimed[r.ProductID] {
			return true
		}
	}
	return false
}

// errProbeDone stops a history stream early.
var errProbeDone = errors.New("probe done")

// probeMemos finds out whether Smaregi keeps the store's memos when the
// resolution window shows none: it reads the history of one product of the
// newest retained applied attempt sent with a memo (other than a) around
// that attempt's time. A row with our memo prefix there proves memos are
// kept; none (or no such attempt) leaves it unknown.
func (w *worker) probeMemos(ctx context.Context, c storeaccess.Backend, t storeaccess.Target, a inventory.Attempt) (bool, error) {
	all, err := w.p.opts.Store.AppliedAttempts(ctx, w.key, time.Time{})
	if err != nil {
		return false, fmt.Errorf("listing applied attempts: %w", err)
	}
	var ref *inventory.Attempt
	for i := range all {
		e := &all[i]
		if e.ID == a.ID || !sentWithMemo(*e) || len(e.Rows) == 0 || e.FinishedAt.IsZero() {
			continue
		}
		if ref == nil || e.StartedAt.After(ref.StartedAt) {
			ref = e
		}
	}
	if ref == nil {
		return false, nil
	}
	margin := w.p.opts.SkewMargin
	until := ref.FinishedAt.Add(margin)
	found := false
	err = c.History(ctx, smaregi.HistoryQuery{
		StoreID: t.StoreID, ProductIDs: []string{ref.Rows[0].ProductID}, Since: ref.StartedAt.Add(-margin),
		StockDivision: smaregi.DefaultStockDivision,
	}, func(page []smaregi.HistoryRow) error {
		for _, r := range page {
			if hasOurMemo(r) {
				found = true
				return errProbeDone
			}
			if r.UpdDateTime.After(until) {
				return errProbeDone
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errProbeDone) {
		return false, fmt.Errorf("reading stock history to learn whether memos are kept: %w", err)
	}
	return found, nil
}
