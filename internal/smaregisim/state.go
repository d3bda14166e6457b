package smaregisim

import (
	"fmt"
	"sort"
	"strconv"
	"time"
)

// TimeLayout is Smaregi's time format (Japan time, no zone suffix).
const TimeLayout = "2006-01-02 15:04:05"

// tokyo is Asia/Tokyo, or a fixed +09:00 zone when tzdata is missing (Japan
// has no daylight saving time, so both give the same answers).
var tokyo = func() *time.Location {
	if loc, err := time.LoadLocation("Asia/Tokyo"); err == nil {
		return loc
	}
	return time.FixedZone("JST", 9*60*60)
}()

// FormatTime renders t the way Smaregi does.
func FormatTime(t time.Time) string { return t.In(tokyo).Format(TimeLayout) }

// Product is one product of the contract.
type Product struct {
	ProductID   string `json:"productId"`
	ProductCode string `json:"productCode"`
	ProductName string `json:"productName"`
	Price       int64  `json:"price"`
}

// StockRow is one store's stock of one product.
type StockRow struct {
	StoreID            string `json:"storeId"`
	ProductID          string `json:"productId"`
	StockAmount        int64  `json:"stockAmount"`
	LayawayStockAmount int64  `json:"layawayStockAmount"`
	UpdDateTime        string `json:"updDateTime"`
}

// HistoryRow is one entry of Smaregi's stock history (StockHistory).
type HistoryRow struct {
	ID             int64  `json:"id"`
	UpdDateTime    string `json:"updDateTime"`
	TargetDateTime string `json:"targetDateTime"`
	StoreID        string `json:"storeId"`
	ProductID      string `json:"productId"`
	Amount         int64  `json:"amount"`
	StockAmount    int64  `json:"stockAmount"`
	StockDivision  string `json:"stockDivision"`
	FromStoreID    string `json:"fromStoreId"`
	ToStoreID      string `json:"toStoreId"`
	Memo           string `json:"memo"`
}

type product struct {
	id int64
	Product
}

type stockRow struct {
	storeID, productID int64
	storeStr, prodStr  string
	amount, layaway    int64
	upd                string
	seq                uint64 // global change counter: tie-break within a second
}

// updEntry is a slot of a store's updDateTime index. The index is
// append-only: a changed row gets a new slot and its old slot turns stale
// (entry seq no longer equals row seq). Because the clock rarely goes
// backwards, appending keeps the index sorted, so paging through 100,000 rows
// by "updDateTime >=" needs a binary search, not a sort per page.
type updEntry struct {
	upd string
	seq uint64
	row *stockRow
}

type storeState struct {
	id      int64
	idStr   string
	rows    map[int64]*stockRow
	ordered []*stockRow // by productID: the natural order
	upd     []updEntry
	stale   int
	unsort  bool // the clock went backwards: sort upd before the next use
	// byUpdProd caches the live rows of the updDateTime index in
	// (updDateTime, productId) order, so that paging a full listing in that
	// order sorts once, not once per page. Any change to the store drops it.
	byUpdProd   []*stockRow
	byUpdProdOK bool
	history     []*historyRow
}

type historyRow struct {
	HistoryRow
	storeID, productID int64
	layaway            int64 // layawayStockAmount after the change, for stock_send
}

// state is everything behind the mutex of Server.
type state struct {
	stores     map[int64]*storeState
	storeOrder []*storeState
	products   []*product // by id
	byID       map[int64]*product
	byCode     map[string]*product
	history    []*historyRow
	seq        uint64
	nextHistID int64
}

func parseID(s string, maxDigits int) (int64, bool) {
	if s == "" || len(s) > maxDigits {
		return 0, false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

func (st *state) addStore(idStr string) error {
	id, ok := parseID(idStr, 5)
	if !ok {
		return fmt.Errorf("store ID %q: want 1 to 5 digits", idStr)
	}
	if _, dup := st.stores[id]; dup {
		return fmt.Errorf("store ID %q listed twice", idStr)
	}
	ss := &storeState{id: id, idStr: strconv.FormatInt(id, 10), rows: map[int64]*stockRow{}}
	st.stores[id] = ss
	st.storeOrder = append(st.storeOrder, ss)
	sort.Slice(st.storeOrder, func(i, j int) bool { return st.storeOrder[i].id < st.storeOrder[j].id })
	return nil
}

// row returns the stock row, creating it (stock 0) when create is set.
func (ss *storeState) row(p *product, create bool) *stockRow {
	if r := ss.rows[p.id]; r != nil || !create {
		return r
	}
	r := &stockRow{storeID: ss.id, productID: p.id, storeStr: ss.idStr, prodStr: p.ProductID}
	ss.rows[p.id] = r
	i := sort.Search(len(ss.ordered), func(i int) bool { return ss.ordered[i].productID >= p.id })
	ss.ordered = append(ss.ordered, nil)
	copy(ss.ordered[i+1:], ss.ordered[i:])
	ss.ordered[i] = r
	return r
}

// touch records that r changed at upd and keeps the updDateTime index.
func (st *state) touch(ss *storeState, r *stockRow, upd string) {
	if r.seq != 0 {
		ss.stale++
	}
	st.seq++
	r.seq = st.seq
	ss.byUpdProdOK = false
	r.upd = upd
	if n := len(ss.upd); n > 0 && ss.upd[n-1].upd > upd {
		ss.unsort = true
	}
	ss.upd = append(ss.upd, updEntry{upd: upd, seq: r.seq, row: r})
	if ss.stale > 1024 && ss.stale > len(ss.upd)/2 {
		ss.compact()
	}
}

func (ss *storeState) compact() {
	live := ss.upd[:0]
	for _, e := range ss.upd {
		if e.row.seq == e.seq {
			live = append(live, e)
		}
	}
	clear(ss.upd[len(live):])
	ss.upd = live
	ss.stale = 0
}

// updIndex returns the store's live-or-stale index sorted by (upd, seq).
func (ss *storeState) updIndex() []updEntry {
	if ss.unsort {
		ss.compact()
		sort.Slice(ss.upd, func(i, j int) bool {
			if ss.upd[i].upd != ss.upd[j].upd {
				return ss.upd[i].upd < ss.upd[j].upd
			}
			return ss.upd[i].seq < ss.upd[j].seq
		})
		ss.unsort = false
	}
	return ss.upd
}

// change is one stock change with everything the history needs.
type change struct {
	store    *storeState
	product  *product
	absolute bool
	value    int64 // the new stock when absolute, else the delta
	division string
	from, to string
	memo     string
}

// apply changes the stock and appends a history row. The caller holds the
// lock and has validated the change.
func (st *state) apply(c change, now time.Time) *historyRow {
	r := c.store.row(c.product, true)
	old := r.amount
	if c.absolute {
		r.amount = c.value
	} else {
		r.amount += c.value
	}
	ts := FormatTime(now)
	st.touch(c.store, r, ts)
	st.nextHistID++
	h := &historyRow{
		HistoryRow: HistoryRow{
			ID: st.nextHistID, UpdDateTime: ts, TargetDateTime: ts,
			StoreID: c.store.idStr, ProductID: c.product.ProductID,
			Amount: r.amount - old, StockAmount: r.amount,
			StockDivision: c.division, FromStoreID: c.from, ToStoreID: c.to, Memo: c.memo,
		},
		storeID: c.store.id, productID: c.product.id, layaway: r.layaway,
	}
	st.history = append(st.history, h)
	c.store.history = append(c.store.history, h)
	return h
}

func (r *stockRow) public() StockRow {
	return StockRow{StoreID: r.storeStr, ProductID: r.prodStr, StockAmount: r.amount,
		LayawayStockAmount: r.layaway, UpdDateTime: r.upd}
}

// byUpdThenProduct returns the store's live rows ordered by updDateTime,
// then product ID (rows sharing a second are sorted by product ID). The
// result is cached until the next change: a full listing asks for it once
// per page, each time from a later anchor, and finds its suffix by binary
// search (fromUpd), so a page costs O(log rows + page), not O(rows).
func (ss *storeState) byUpdThenProduct() []*stockRow {
	if ss.byUpdProdOK {
		return ss.byUpdProd
	}
	idx := ss.updIndex()
	out := ss.byUpdProd[:0]
	for i := 0; i < len(idx); {
		j := i
		groupStart := len(out)
		for ; j < len(idx) && idx[j].upd == idx[i].upd; j++ {
			if e := idx[j]; e.seq == e.row.seq {
				out = append(out, e.row)
			}
		}
		group := out[groupStart:]
		if len(group) > 1 {
			sort.Slice(group, func(a, b int) bool { return group[a].productID < group[b].productID })
		}
		i = j
	}
	clear(out[len(out):cap(out)]) // rows dropped since the last build
	ss.byUpdProd, ss.byUpdProdOK = out, true
	return out
}

// fromUpd returns the suffix of rows (in updDateTime order) whose
// updDateTime is at or after (strict: after) upd.
func fromUpd(rows []*stockRow, upd string, strict bool) []*stockRow {
	return rows[sort.Search(len(rows), func(i int) bool {
		if strict {
			return rows[i].upd > upd
		}
		return rows[i].upd >= upd
	}):]
}
