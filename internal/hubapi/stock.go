package hubapi

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Available is what may be sold through other channels: stock less layaway
// (取置) and the product's safety stock (its override, else the store's
// spec.safetyStock: effectiveSafety), less adjustments that will take stock
// away but have not reached the mirror yet. Pending additions are not
// counted until Smaregi has applied them, so a failed or slow push can never
// cause an oversell. Never below 0.
//
// pending is the sum of the product's negative pending quantities, as
// Store.PendingDeltas reports it (0 or less).
//
// The arithmetic saturates: stock rows come from Smaregi and safetyStock
// from the CRD, and a wrapped int64 would turn a huge deduction into a huge
// availability, the one error that oversells.
func Available(r inventory.Row, safetyStock, pending int64) int64 {
	a := subSat(r.StockAmount, r.LayawayStockAmount)
	a = subSat(a, safetyStock)
	if pending < 0 {
		a = addSat(a, pending)
	}
	return max(a, 0)
}

// addSat returns a+b clamped to the int64 range.
func addSat(a, b int64) int64 {
	s := a + b
	// Overflow happened iff a and b share a sign that s does not have.
	if (a >= 0) == (b >= 0) && (s >= 0) != (a >= 0) {
		if a >= 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return s
}

// subSat returns a-b clamped to the int64 range.
func subSat(a, b int64) int64 {
	if b == math.MinInt64 {
		// -b does not exist; a - MinInt64 is at least 0 for a >= -1.
		if a >= 0 {
			return math.MaxInt64
		}
		return a + math.MaxInt64 + 1
	}
	return addSat(a, -b)
}

// maxProductIDLen is Smaregi's limit on productId (digits).
const maxProductIDLen = 15

func validProductID(s string) bool {
	if s == "" || len(s) > maxProductIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// stockPageSize is how many rows a listing reads from the store at a time.
const stockPageSize = 1000

// serveStock lists the mirror rows of a store with their availability. The
// rows are read in pages of stockPageSize and each page is written after its
// read has returned, so a 100,000-row listing costs one page of memory, and
// a client that reads slowly (or stops) holds no store read open: on bbolt a
// read transaction would block a writer growing the file, and with it every
// new transaction (RecordSend, SubmitAdjustment); on PostgreSQL it would hold
// a pool connection. The pages are not one snapshot: a row changed during
// the listing shows either value, which a mirror refreshed by pulls never
// promised anyway.
func (s *Server) serveStock(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	store, ok := s.access(w, r, SubresourceStock, stockVerb(r))
	if !ok {
		return
	}
	sq, ok := s.parseStockQuery(w, r, "store")
	if !ok {
		return
	}
	if sq.watch {
		rv, err := strconv.ParseUint(sq.resourceVersion, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, reasonBadRequest, "a watch needs resourceVersion: the listing's, or the last event's", nil)
			return
		}
		s.serveWatch(w, r, store, rv, sq.timeout)
		return
	}
	productID := sq.productID
	ctx := r.Context()
	key := storeKey(store)
	// The version is read first: every change after it is an event after
	// it, so a client watching from it misses nothing the pages below may
	// have read before the change (it may see an event for a row it
	// already has).
	version, err := s.opts.Store.StoreVersion(ctx, key)
	if err != nil {
		s.storeFailure(w, err, "reading the store's resource version", key)
		return
	}
	sum, err := s.opts.Store.Summary(ctx, key)
	if err != nil {
		s.storeFailure(w, err, "reading the mirror summary", key)
		return
	}
	pending, err := s.opts.Store.PendingDeltas(ctx, key)
	if err != nil {
		s.storeFailure(w, err, "reading pending adjustments", key)
		return
	}
	var one *inventory.Row
	var ids []string // the products whose safety stock overrides are read first
	if productID != "" {
		row, found, err := s.opts.Store.Row(ctx, key, productID)
		if err != nil {
			s.storeFailure(w, err, "reading a stock row", key)
			return
		}
		if found {
			one = &row
			ids = []string{productID}
		}
	}
	safety, err := s.effectiveSafety(ctx, key, store, ids)
	if err != nil {
		s.storeFailure(w, err, "reading the safety stock", key)
		return
	}

	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	enc := stockEncoder{w: bufio.NewWriterSize(w, 32<<10), safety: safety, pending: pending}
	enc.head(store.Namespace, store.Name, version, sum)
	if productID != "" {
		if one != nil {
			_ = enc.row(*one) // a write error resurfaces at the final Flush
		}
	} else {
		for after := ""; ; {
			page, err := s.opts.Store.RowsPage(ctx, key, after, stockPageSize)
			if err == nil && len(page) > 0 {
				// Each page reads the overrides of its own products, so a
				// listing never holds the whole ConfigMap's worth.
				enc.safety, err = s.effectiveSafety(ctx, key, store, rowIDs(page))
			}
			if err != nil {
				if ctx.Err() != nil {
					s.log.V(1).Info("client went away during a stock listing", "store", key.String(), "error", err.Error())
					return
				}
				// The 200 and part of the body are gone; the only honest
				// signal left is to cut the connection, so the client sees
				// a truncated answer rather than a short list that parses.
				s.log.Error(err, "listing stock rows failed mid-stream", "store", key.String())
				panic(http.ErrAbortHandler)
			}
			for _, row := range page {
				if enc.row(row) != nil {
					s.log.V(1).Info("client went away during a stock listing", "store", key.String(), "error", enc.err.Error())
					return
				}
			}
			if len(page) < stockPageSize {
				break
			}
			after = page[len(page)-1].ProductID
		}
	}
	enc.tail()
	if err := enc.w.Flush(); err != nil {
		s.log.V(1).Info("client went away during a stock listing", "store", key.String(), "error", err.Error())
	}
}

func rowIDs(rows []inventory.Row) []string {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = r.ProductID
	}
	return ids
}

// effectiveSafety reads the store's safety stock for the given products
// from the inventory, where the controller records spec.safetyStock and the
// overrides ConfigMap (inventory.SafetyStockStore), so that the listing
// and the watch agree with the versions that record its changes. A store
// the controller has not recorded yet (just created, or just upgraded) gets
// spec.safetyStock from the object: never less than the user asked for.
func (s *Server) effectiveSafety(ctx context.Context, key inventory.StoreKey, store *smaregiv1alpha1.SmaregiStore, ids []string) (inventory.SafetyStock, error) {
	safety, recorded, err := s.opts.Store.SafetyStockFor(ctx, key, ids)
	if err != nil || recorded {
		return safety, err
	}
	if store == nil {
		var st smaregiv1alpha1.SmaregiStore
		err := s.opts.Reader.Get(ctx, types.NamespacedName{Namespace: key.Namespace, Name: key.Name}, &st)
		if err != nil {
			if apierrors.IsNotFound(err) {
				// Gone: its watchers see nothing more anyway.
				return inventory.SafetyStock{}, nil
			}
			return inventory.SafetyStock{}, fmt.Errorf("reading SmaregiStore %s: %w", key, err)
		}
		store = &st
	}
	return inventory.SafetyStock{Default: store.Spec.SafetyStock}, nil
}

// stockQuery is a GET …/stock request's query, validated: the one rule of
// the store and the pool listings and watches.
type stockQuery struct {
	watch bool
	// resourceVersion and timeout go with a watch.
	resourceVersion string
	timeout         time.Duration
	// productID narrows a listing to one product; "" lists all.
	productID string
}

// stockVerb is the verb a stock request is authorised for: watch=true (or
// 1) asks for a watch.
func stockVerb(r *http.Request) string {
	if v := r.URL.Query().Get("watch"); v == "true" || v == "1" {
		return "watch"
	}
	return "get"
}

// parseStockQuery validates the query of a stock request for a store or a
// pool (what names it in messages); on false it has answered 400.
func (s *Server) parseStockQuery(w http.ResponseWriter, r *http.Request, what string) (stockQuery, bool) {
	q := r.URL.Query()
	sq := stockQuery{watch: stockVerb(r) == "watch"}
	for k := range q {
		switch k {
		case "productId", "watch", "resourceVersion", "timeoutSeconds", "allowWatchBookmarks":
		default:
			writeError(w, http.StatusBadRequest, reasonBadRequest, fmt.Sprintf("unknown query parameter %q; known are productId, watch, resourceVersion, timeoutSeconds", k), nil)
			return sq, false
		}
	}
	if sq.watch {
		if r.Method != http.MethodGet || q.Has("productId") {
			writeError(w, http.StatusBadRequest, reasonBadRequest, "a watch is a GET of the whole "+what+"'s stock, without productId", nil)
			return sq, false
		}
		timeout, ok := s.watchTimeout(q.Get("timeoutSeconds"))
		if !ok {
			writeError(w, http.StatusBadRequest, reasonBadRequest, "timeoutSeconds must be a positive number of seconds", nil)
			return sq, false
		}
		sq.resourceVersion, sq.timeout = q.Get("resourceVersion"), timeout
		return sq, true
	}
	if q.Has("resourceVersion") || q.Has("timeoutSeconds") {
		writeError(w, http.StatusBadRequest, reasonBadRequest, "resourceVersion and timeoutSeconds go with watch=true; a listing is always current", nil)
		return sq, false
	}
	sq.productID = q.Get("productId")
	if q.Has("productId") && (len(q["productId"]) != 1 || !validProductID(sq.productID)) {
		writeError(w, http.StatusBadRequest, reasonBadRequest, "productId must be one Smaregi product ID: 1 to 15 digits", nil)
		return sq, false
	}
	return sq, true
}

// stockEncoder writes the stock document by hand: encoding/json would need
// the whole list in memory, or reflection per row.
type stockEncoder struct {
	w       *bufio.Writer
	buf     []byte
	safety  inventory.SafetyStock
	pending map[string]int64
	n       int
	err     error
}

func (e *stockEncoder) head(ns, name string, version uint64, sum inventory.Summary) {
	b := e.buf[:0]
	b = append(b, `{"namespace":`...)
	b = strconv.AppendQuote(b, ns)
	b = append(b, `,"name":`...)
	b = strconv.AppendQuote(b, name)
	b = append(b, `,"resourceVersion":"`...)
	b = strconv.AppendUint(b, version, 10)
	b = append(b, '"')
	b = append(b, `,"safetyStock":`...)
	b = strconv.AppendInt(b, e.safety.Default, 10)
	b = append(b, `,"skus":`...)
	b = strconv.AppendInt(b, sum.SKUs, 10)
	b = append(b, `,"watermark":`...)
	b = appendTime(b, sum.Watermark)
	b = append(b, `,"lastPullTime":`...)
	b = appendTime(b, sum.LastPull)
	b = append(b, `,"lastFullSyncTime":`...)
	b = appendTime(b, sum.LastFullSync)
	b = append(b, `,"items":[`...)
	e.buf = b
	_, _ = e.w.Write(b)
}

// row writes one item. A write error (the client went away) is returned and
// kept.
func (e *stockEncoder) row(r inventory.Row) error {
	b := e.buf[:0]
	if e.n > 0 {
		b = append(b, ',')
	}
	e.n++
	b = appendItem(b, r, e.safety.For(r.ProductID), e.pending[r.ProductID], 0)
	e.buf = b
	if _, err := e.w.Write(b); err != nil {
		e.err = fmt.Errorf("writing the stock listing: %w", err)
		return e.err
	}
	return nil
}

// appendItem writes one row as listed, and as a watch event's object (with
// its resourceVersion; 0 leaves it out). safety is the product's own.
func appendItem(b []byte, r inventory.Row, safety, pending int64, version uint64) []byte {
	// Product IDs are digits (Smaregi's rule, enforced by the client that
	// fills the mirror), but quoting keeps the output valid JSON whatever
	// the store holds.
	b = append(b, `{"productId":`...)
	b = strconv.AppendQuote(b, r.ProductID)
	b = append(b, `,"stockAmount":`...)
	b = strconv.AppendInt(b, r.StockAmount, 10)
	b = append(b, `,"layawayStockAmount":`...)
	b = strconv.AppendInt(b, r.LayawayStockAmount, 10)
	b = append(b, `,"pendingAdjustment":`...)
	b = strconv.AppendInt(b, pending, 10)
	b = append(b, `,"safetyStock":`...)
	b = strconv.AppendInt(b, safety, 10)
	b = append(b, `,"available":`...)
	b = strconv.AppendInt(b, Available(r, safety, pending), 10)
	b = append(b, `,"updDateTime":`...)
	b = appendTime(b, r.UpdDateTime)
	if version != 0 {
		b = appendVersion(b, version)
	}
	return append(b, '}')
}

func (e *stockEncoder) tail() { _, _ = e.w.WriteString("]}\n") }

// appendTime writes an RFC 3339 UTC time, or null for the zero time (never
// happened).
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "null"...)
	}
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, time.RFC3339)
	return append(b, '"')
}

func (s *Server) storeFailure(w http.ResponseWriter, err error, what string, key inventory.StoreKey) {
	s.log.Error(err, what, "store", key.String())
	writeError(w, http.StatusServiceUnavailable, reasonUnavailable, what+" failed; retry later", nil)
}
