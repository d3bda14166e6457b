package smaregisim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

type cond struct {
	col, op string // op: "", "like", "<", "<=", ">", ">="
	val     string
	n       int64
	numeric bool // compare as integers
}

func (c *cond) match(r record) bool {
	if c.op == "like" {
		return likeMatch(r.str(c.col), c.val)
	}
	var cmp int
	if c.numeric {
		v := r.num(c.col)
		switch {
		case v < c.n:
			cmp = -1
		case v > c.n:
			cmp = 1
		}
	} else {
		cmp = strings.Compare(r.str(c.col), c.val)
	}
	switch c.op {
	case "":
		return cmp == 0
	case "<":
		return cmp < 0
	case "<=":
		return cmp <= 0
	case ">":
		return cmp > 0
	default: // ">="
		return cmp >= 0
	}
}

// likeMatch implements SQL LIKE: % is any run of characters, _ one
// character; everything else matches itself.
func likeMatch(s, pat string) bool {
	sr, pr := []rune(s), []rune(pat)
	// Iterative wildcard matching with backtracking to the last %.
	si, pi, starP, starS := 0, 0, -1, 0
	for si < len(sr) {
		switch {
		case pi < len(pr) && (pr[pi] == '_' || (pr[pi] != '%' && pr[pi] == sr[si])):
			si++
			pi++
		case pi < len(pr) && pr[pi] == '%':
			starP, starS = pi, si
			pi++
		case starP >= 0:
			starS++
			si, pi = starS, starP+1
		default:
			return false
		}
	}
	for pi < len(pr) && pr[pi] == '%' {
		pi++
	}
	return pi == len(pr)
}

type orderKey struct {
	col  string
	desc bool
}

type query struct {
	table  *tableDef
	fields []string
	groups [][]cond // objects of "conditions"
	and    bool     // groups combine with AND instead of OR
	order  []orderKey
	limit  int
	page   int
}

func (q *query) match(r record) bool {
	if len(q.groups) == 0 {
		return true
	}
	for _, g := range q.groups {
		ok := true
		for i := range g {
			if !g[i].match(r) {
				ok = false
				break
			}
		}
		if ok && !q.and {
			return true
		}
		if !ok && q.and {
			return false
		}
	}
	return q.and
}

// conjunction returns the conditions every matching row satisfies, when the
// query is one AND-group; it lets the executor use indexes.
func (q *query) conjunction() ([]cond, bool) {
	if len(q.groups) == 0 {
		return nil, true
	}
	if len(q.groups) == 1 {
		return q.groups[0], true
	}
	if !q.and {
		return nil, false
	}
	var all []cond
	for _, g := range q.groups {
		all = append(all, g...)
	}
	return all, true
}

// coveredByIndex says whether the conditions of a one-store stock query
// are all answered by the store's updDateTime index: the store itself and
// lower bounds on updDateTime.
// Each may appear once (findCond answers the first only).
func coveredByIndex(cs []cond) bool {
	seen := map[string]bool{}
	for _, c := range cs {
		k := c.col + " " + c.op
		switch {
		case seen[k]:
			return false
		case k == "storeId ", k == "updDateTime >=", k == "updDateTime >":
			seen[k] = true
		default:
			return false
		}
	}
	return true
}

func findCond(cs []cond, col, op string) *cond {
	for i := range cs {
		if cs[i].col == col && cs[i].op == op {
			return &cs[i]
		}
	}
	return nil
}

func (q *query) less(a, b record) int {
	for _, k := range q.order {
		var c int
		if q.table.numeric[k.col] {
			x, y := a.num(k.col), b.num(k.col)
			if x < y {
				c = -1
			} else if x > y {
				c = 1
			}
		} else {
			c = strings.Compare(a.str(k.col), b.str(k.col))
		}
		if k.desc {
			c = -c
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

// collector counts every match and keeps the requested page.
type collector struct {
	offset, limit, total int
	out                  []record
}

func (c *collector) add(r record) {
	if c.total >= c.offset && len(c.out) < c.limit {
		c.out = append(c.out, r)
	}
	c.total++
}

func (q *query) collector() *collector {
	return &collector{offset: (q.page - 1) * q.limit, limit: q.limit}
}

// finish sorts the matches when an order is requested and pages them.
func (q *query) finish(matches []record) *collector {
	if len(q.order) > 0 {
		sort.SliceStable(matches, func(i, j int) bool { return q.less(matches[i], matches[j]) < 0 })
	}
	c := q.collector()
	for _, r := range matches {
		c.add(r)
	}
	return c
}

// render writes the ref envelope with every value a string.
func (q *query) render(c *collector, ascii bool) []byte {
	w := &jsonWriter{ascii: ascii, buf: make([]byte, 0, 64+len(c.out)*32*len(q.fields))}
	w.raw(`{"total_count":`)
	w.str(strconv.Itoa(c.total))
	w.raw(`,"result":[`)
	for i, r := range c.out {
		if i > 0 {
			w.raw(",")
		}
		w.raw("{")
		for j, f := range q.fields {
			if j > 0 {
				w.raw(",")
			}
			w.str(f)
			w.raw(":")
			w.str(r.str(f))
		}
		w.raw("}")
	}
	w.raw("]}")
	return w.buf
}

// Executors. The caller holds the state lock.

func (st *state) queryStock(q *query) *collector {
	conj, single := q.conjunction()
	stores := st.storeOrder
	if single {
		if c := findCond(conj, "storeId", ""); c != nil {
			stores = nil
			if ss := st.stores[c.n]; ss != nil {
				stores = []*storeState{ss}
			}
		}
	}
	byUpd := len(q.order) == 1 && q.order[0] == orderKey{col: "updDateTime"}
	// The client orders by updDateTime then productId so that rows sharing a
	// second keep one order across pages; that order gets the fast path too.
	byUpdProduct := len(q.order) == 2 && q.order[0] == orderKey{col: "updDateTime"} &&
		q.order[1] == orderKey{col: "productId"}
	if (byUpd || byUpdProduct) && len(stores) == 1 {
		// The common incremental pull: walk the updDateTime index from the
		// watermark, already in order.
		idx := stores[0].updIndex()
		start := 0
		if single {
			if c := findCond(conj, "updDateTime", ">="); c != nil {
				start = max(start, sort.Search(len(idx), func(i int) bool { return idx[i].upd >= c.val }))
			}
			if c := findCond(conj, "updDateTime", ">"); c != nil {
				start = max(start, sort.Search(len(idx), func(i int) bool { return idx[i].upd > c.val }))
			}
		}
		col := q.collector()
		if byUpdProduct {
			rows := stores[0].byUpdThenProduct()
			var covered bool
			if single {
				for _, op := range []string{">=", ">"} {
					if c := findCond(conj, "updDateTime", op); c != nil {
						rows = fromUpd(rows, c.val, op == ">")
					}
				}
				covered = coveredByIndex(conj)
			}
			if covered {
				// Every condition is the index's: the page is a slice
				// of the suffix and the count is its length.
				col.total = len(rows)
				for _, r := range rows[min(col.offset, len(rows)):min(col.offset+col.limit, len(rows))] {
					col.out = append(col.out, r)
				}
				return col
			}
			for _, r := range rows {
				if q.match(r) {
					col.add(r)
				}
			}
			return col
		}
		for _, e := range idx[start:] {
			if e.seq == e.row.seq && q.match(e.row) {
				col.add(e.row)
			}
		}
		return col
	}
	if len(q.order) == 0 {
		col := q.collector()
		for _, ss := range stores {
			for _, r := range ss.ordered {
				if q.match(r) {
					col.add(r)
				}
			}
		}
		return col
	}
	var matches []record
	for _, ss := range stores {
		for _, r := range ss.ordered {
			if q.match(r) {
				matches = append(matches, r)
			}
		}
	}
	return q.finish(matches)
}

func (st *state) queryHistory(q *query) *collector {
	conj, single := q.conjunction()
	rows := st.history
	if single {
		if c := findCond(conj, "storeId", ""); c != nil {
			rows = nil
			if ss := st.stores[c.n]; ss != nil {
				rows = ss.history
			}
		}
	}
	var matches []record
	for _, h := range rows {
		if q.match(h) {
			matches = append(matches, h)
		}
	}
	return q.finish(matches)
}

func (st *state) queryProduct(q *query) *collector {
	conj, single := q.conjunction()
	var matches []record
	switch {
	case single && findCond(conj, "productCode", "") != nil:
		if p := st.byCode[findCond(conj, "productCode", "").val]; p != nil && q.match(p) {
			matches = append(matches, p)
		}
	case single && findCond(conj, "productId", "") != nil:
		if p := st.byID[findCond(conj, "productId", "").n]; p != nil && q.match(p) {
			matches = append(matches, p)
		}
	default:
		for _, p := range st.products {
			if q.match(p) {
				matches = append(matches, p)
			}
		}
	}
	return q.finish(matches)
}

// apiError is a protocol error answered as {"error_code":…,"error":…,…}.
type apiError struct {
	code   int
	status int // 0: the configured ErrorStatus
	desc   string
}

func (e *apiError) Error() string { return fmt.Sprintf("smaregi error %d: %s", e.code, e.desc) }

func errf(code int, format string, args ...any) *apiError {
	return &apiError{code: code, desc: fmt.Sprintf(format, args...)}
}

// errorNames are the short names sent in "error".
var errorNames = map[int]string{
	11: "invalid_request",
	13: "invalid_access_token",
	14: "invalid_contract_id",
	15: "invalid_proc_name",
	21: "authentication_failed",
	22: "account_locked",
	23: "function_disabled",
	24: "ip_not_allowed",
	31: "invalid_table_name",
	32: "invalid_proc_division",
	33: "invalid_proc_detail_division",
	41: "invalid_input_data",
	42: "already_exists",
	43: "query_failed",
}
