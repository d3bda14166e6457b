package smaregisim

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// MaxPlatformWindow is the longest upd_date_time-from/-to window of a list.
const MaxPlatformWindow = 31 * 24 * time.Hour

// listKey orders the rows of a list; the Link cursor is the key of the last
// row sent, so a cursor stays right while rows change between pages.
type listKey [2]int64

func (k listKey) less(o listKey) bool { return k[0] < o[0] || (k[0] == o[0] && k[1] < o[1]) }

// listReq is the parsed paging and filtering of a Platform list.
type listReq struct {
	limit, page int
	link        bool
	after       *listKey // Link paging: start after this key
	storeID     int64    // 0: any
	productID   int64    // 0: any
	from, to    string   // stored-time bounds (inclusive); "" when absent
	none        bool     // a filter can match nothing (unknown ID)
}

// parseList reads limit, page or cursor, and the filters every stock list
// shares. It writes the problem and returns false on a bad request.
func (s *Server) parseList(w http.ResponseWriter, r *http.Request, timeFilter bool) (listReq, bool) {
	q := r.URL.Query()
	s.plat.mu.Lock()
	lr := listReq{limit: DefaultLimit, page: 1, link: s.plat.o.Paging == PagingLink}
	s.plat.mu.Unlock()
	bad := func(detail string) (listReq, bool) {
		writeProblem(w, http.StatusBadRequest, "Bad Request", detail)
		return lr, false
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return bad("limit must be an integer from 1 to 1000")
		}
		lr.limit = n
	}
	if lr.link {
		if c := q.Get("cursor"); c != "" {
			k, ok := decodeCursor(c)
			if !ok {
				return bad("cursor is not valid")
			}
			lr.after = &k
		}
	} else if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<30/lr.limit {
			return bad("page must be a positive integer")
		}
		lr.page = n
	}
	for _, f := range []struct {
		name   string
		digits int
		dst    *int64
	}{{"store_id", 5, &lr.storeID}, {"product_id", 15, &lr.productID}} {
		if v := q.Get(f.name); v != "" {
			n, ok := parseID(v, f.digits)
			if !ok {
				return bad(f.name + " must be a number")
			}
			*f.dst = n
			lr.none = lr.none || n == 0
		}
	}
	if !timeFilter {
		return lr, true
	}
	fromS, toS := q.Get("upd_date_time-from"), q.Get("upd_date_time-to")
	if fromS == "" && toS == "" {
		return lr, true
	}
	if fromS == "" || toS == "" {
		return bad("upd_date_time-from and upd_date_time-to must be given together")
	}
	from, err1 := time.Parse(time.RFC3339, fromS)
	to, err2 := time.Parse(time.RFC3339, toS)
	if err1 != nil || err2 != nil {
		return bad("upd_date_time-from and -to must be ISO 8601 date-times with an offset")
	}
	if to.Before(from) {
		return bad("upd_date_time-to is before upd_date_time-from")
	}
	if to.Sub(from) > MaxPlatformWindow {
		return bad("the upd_date_time window must not exceed 31 days")
	}
	lr.from, lr.to = FormatTime(from), FormatTime(to)
	return lr, true
}

// inWindow reports whether a stored time lies in the request's window.
func (lr *listReq) inWindow(stored string) bool {
	return (lr.from == "" || stored >= lr.from) && (lr.to == "" || stored <= lr.to)
}

func encodeCursor(k listKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(k[0], 10) + "." + strconv.FormatInt(k[1], 10)))
}

func decodeCursor(c string) (listKey, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return listKey{}, false
	}
	a, z, ok := strings.Cut(string(b), ".")
	x, err1 := strconv.ParseInt(a, 10, 64)
	y, err2 := strconv.ParseInt(z, 10, 64)
	return listKey{x, y}, ok && err1 == nil && err2 == nil
}

// writeList pages n matching rows (in key order) and answers them as a JSON
// array; key(i) and render(w, i) address the i-th match. The caller holds
// the state lock, as rows are live.
func writeList(w http.ResponseWriter, r *http.Request, lr listReq, n int, key func(int) listKey, render func(*jsonWriter, int)) {
	start := 0
	if lr.link {
		if lr.after != nil {
			start = sort.Search(n, func(i int) bool { return lr.after.less(key(i)) })
		}
	} else {
		start = min(n, (lr.page-1)*lr.limit)
	}
	end := min(n, start+lr.limit)
	if lr.link && end < n {
		q := r.URL.Query()
		q.Del("page")
		q.Set("cursor", encodeCursor(key(end-1)))
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		next := url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawQuery: q.Encode()}
		w.Header().Set("Link", "<"+next.String()+`>; rel="next"`)
	}
	jw := &jsonWriter{buf: make([]byte, 0, 2+(end-start)*128)}
	jw.raw("[")
	for i := start; i < end; i++ {
		if i > start {
			jw.raw(",")
		}
		render(jw, i)
	}
	jw.raw("]")
	writeAPIJSON(w, http.StatusOK, jw.buf)
}

// platListStock is GET /pos/stock, ordered by store, then product.
func (s *Server) platListStock(w http.ResponseWriter, r *http.Request) {
	lr, ok := s.parseList(w, r, true)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var rows []*stockRow
	if ss := s.st.stores[lr.storeID]; lr.storeID != 0 && ss != nil && !lr.none && lr.productID == 0 && lr.from == "" {
		// One store, no other filter: its rows are already in key order, so
		// a page costs a binary search, not a scan.
		rows = ss.ordered
	} else {
		rows = s.st.filterStock(lr)
	}
	writeList(w, r, lr, len(rows), func(i int) listKey { return listKey{rows[i].storeID, rows[i].productID} },
		func(jw *jsonWriter, i int) { renderStock(jw, rows[i]) })
}

// filterStock returns the stock rows matching a list's filters in key order.
// The caller holds the state lock.
func (st *state) filterStock(lr listReq) []*stockRow {
	var rows []*stockRow
	for _, ss := range st.storeOrder {
		if lr.none || (lr.storeID != 0 && ss.id != lr.storeID) {
			continue
		}
		for _, row := range ss.ordered {
			if (lr.productID == 0 || row.productID == lr.productID) && row.upd != "" && lr.inWindow(row.upd) {
				rows = append(rows, row)
			}
		}
	}
	return rows
}

func renderStock(jw *jsonWriter, row *stockRow) {
	kv(jw, "storeId", row.storeStr, "productId", row.prodStr,
		"stockAmount", strconv.FormatInt(row.amount, 10),
		"layawayStockAmount", strconv.FormatInt(row.layaway, 10),
		"updDateTime", isoTime(row.upd))
}

// platListChanges is GET /pos/stock/changes: the stock history (both APIs'
// writes, sales and movements), ordered by ID.
func (s *Server) platListChanges(w http.ResponseWriter, r *http.Request) {
	lr, ok := s.parseList(w, r, true)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	src := s.st.history
	if lr.storeID != 0 {
		src = nil
		if ss := s.st.stores[lr.storeID]; ss != nil {
			src = ss.history
		}
	}
	var rows []*historyRow
	for _, h := range src {
		if !lr.none && (lr.productID == 0 || h.productID == lr.productID) && lr.inWindow(h.UpdDateTime) {
			rows = append(rows, h)
		}
	}
	writeList(w, r, lr, len(rows), func(i int) listKey { return listKey{rows[i].ID, 0} },
		func(jw *jsonWriter, i int) { renderChange(jw, rows[i]) })
}

func renderChange(jw *jsonWriter, h *historyRow) {
	kv(jw, "id", strconv.FormatInt(h.ID, 10), "storeId", h.StoreID, "productId", h.ProductID,
		"amount", strconv.FormatInt(h.Amount, 10), "stockAmount", strconv.FormatInt(h.StockAmount, 10),
		"memo", h.Memo, "division", h.StockDivision, "updDateTime", isoTime(h.UpdDateTime))
}

// platListProducts is GET /pos/products (filter product_code), by ID.
func (s *Server) platListProducts(w http.ResponseWriter, r *http.Request) {
	lr, ok := s.parseList(w, r, false)
	if !ok {
		return
	}
	code := r.URL.Query().Get("product_code")
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := s.st.products
	if code != "" {
		rows = nil
		if p := s.st.byCode[code]; p != nil {
			rows = []*product{p}
		}
	}
	writeList(w, r, lr, len(rows), func(i int) listKey { return listKey{rows[i].id, 0} },
		func(jw *jsonWriter, i int) {
			p := rows[i]
			kv(jw, "productId", p.ProductID, "productCode", p.ProductCode, "productName", p.ProductName,
				"price", strconv.FormatInt(p.Price, 10))
		})
}

// platListStores is GET /pos/stores, by ID.
func (s *Server) platListStores(w http.ResponseWriter, r *http.Request) {
	lr, ok := s.parseList(w, r, false)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := s.st.storeOrder
	writeList(w, r, lr, len(rows), func(i int) listKey { return listKey{rows[i].id, 0} },
		func(jw *jsonWriter, i int) { kv(jw, "storeId", rows[i].idStr, "storeName", "店舗"+rows[i].idStr) })
}
