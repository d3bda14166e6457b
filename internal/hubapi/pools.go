package hubapi

// StockPools: the pooled stock of several shops, and orders to a pool that
// the operator splits across the member shops.
//
// What is atomic, and what happens on a crash. A pool order is accepted in
// four steps, all under the pool's lock (inventory.PoolOrderStore.LockPool:
// this process on bbolt, every replica on PostgreSQL):
//
//  1. read each active member's available (the store listing's Available,
//     which already counts the member's pending adjustments, pool orders'
//     included) and decide the allocation, or refuse with 422;
//  2. record the order with its allocation durably (RecordPoolOrder): from
//     here on the decision is fixed, and the same ID always means this
//     allocation;
//  3. submit each member's part as an ordinary adjustment of that store
//     under an ID derived from the pool and the order ID
//     (stockpool.MemberAdjustmentID), through the same SubmitAdjustment as
//     a store's own orders: the pusher applies each exactly once;
//  4. mark the order submitted.
//
// Each step is atomic on its own; the four together are not. If the
// process dies after 2, the order is recorded but some member adjustments
// may be missing. Nothing allocates again then: a retry of the order (any
// replica) finds the record and submits the missing parts of the recorded
// allocation (SubmitAdjustment is idempotent on the derived IDs), and every
// allocation for the pool first completes the pool's unsubmitted orders,
// so that the next order counts them before it reads availability. Until
// one of those happens the members' listings show the missing parts as
// still available (an order that a store's own channel submits meanwhile
// can take them).
//
// The lock is what stops two pool orders from both taking the last unit:
// between reading availability and submitting, no other allocation for the
// pool runs. Orders submitted directly to a member store are not under it
// (they are not checked against availability at all); they show in the
// member's pending adjustments as soon as they are stored.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
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

// Route templates of the pool endpoints (metrics labels).
const (
	RoutePoolStock       = "/api/v1/namespaces/{ns}/stockpools/{name}/stock"
	RoutePoolAdjustments = "/api/v1/namespaces/{ns}/stockpools/{name}/adjustments"
	RoutePoolAdjustment  = "/api/v1/namespaces/{ns}/stockpools/{name}/adjustments/{id}"

	poolAdjustmentsLocation = "/api/v1/namespaces/%s/stockpools/%s/adjustments/%s"
)

// PoolStockResponse is GET …/stockpools/{name}/stock.
type PoolStockResponse struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ResourceVersion is where to watch from: the positions of the active
	// members' change logs, read before the first page, and a fingerprint
	// of the pool's safety stock (opaque).
	ResourceVersion string `json:"resourceVersion"`
	// SafetyStock is the pool's spec.safetyStock: what it holds back from
	// products without an entry in its overrides ConfigMap.
	SafetyStock      int64                            `json:"safetyStock"`
	AllocationPolicy smaregiv1alpha1.AllocationPolicy `json:"allocationPolicy"`
	Members          []PoolMemberInfo                 `json:"members"`
	Items            []PoolStockItem                  `json:"items"`
}

// PoolMemberInfo is one member store of a pool.
type PoolMemberInfo struct {
	Name     string `json:"name"`
	Priority int32  `json:"priority"`
	Ready    bool   `json:"ready"`
	// Active: counts in the pool's available and takes orders.
	Active bool `json:"active"`
}

// PoolStockItem is one product of a pool.
type PoolStockItem struct {
	ProductID string `json:"productId"`
	// SafetyStock is what the pool holds back from the product: its entry
	// in the pool's overrides ConfigMap, else the pool's spec.safetyStock.
	SafetyStock int64 `json:"safetyStock"`
	// Available is what the pool may sell: the sum of the active members'
	// available less the pool's safety stock, never below 0.
	Available int64 `json:"available"`
	// Members are the active members that have a stock row for the product,
	// with what each may sell.
	Members []PoolMemberStock `json:"members"`
}

// PoolMemberStock is one member's part of a pooled product.
type PoolMemberStock struct {
	Store     string `json:"store"`
	Available int64  `json:"available"`
}

// PoolOrderResponse is a pool order as the API shows it.
type PoolOrderResponse struct {
	ID        string          `json:"id"`
	Namespace string          `json:"namespace"`
	Pool      string          `json:"pool"`
	State     AdjustmentState `json:"state"`
	Reason    string          `json:"reason"`
	Lines     []ResponseLine  `json:"lines"`
	CreatedAt time.Time       `json:"createdAt"`
	// Allocations say which member store takes what, each as an adjustment
	// of that store.
	Allocations []PoolAllocationResponse `json:"allocations"`
}

// PoolAllocationResponse is one member's part of a pool order.
type PoolAllocationResponse struct {
	Store        string          `json:"store"`
	AdjustmentID string          `json:"adjustmentId"`
	State        AdjustmentState `json:"state"`
	Lines        []ResponseLine  `json:"lines"`
	AppliedAt    *time.Time      `json:"appliedAt,omitempty"`
	// FailureReason is Smaregi's reason when this part failed.
	FailureReason        string `json:"failureReason,omitempty"`
	AwaitingConfirmation bool   `json:"awaitingConfirmation,omitempty"`
}

// AdjustmentUnknown is the state of a member's part whose adjustment is no
// longer kept (settled and past the retention, or its store deleted after
// its outbox drained), and of an order with such a part and none pending or
// failed.
const AdjustmentUnknown AdjustmentState = "unknown"

// poolStore returns the pool order storage, or answers 404 without one.
func (s *Server) poolStore(w http.ResponseWriter) (inventory.PoolOrderStore, bool) {
	if s.opts.Pools == nil {
		writeError(w, http.StatusNotFound, reasonNotFound, "this operator keeps no StockPool orders", nil)
		return nil, false
	}
	return s.opts.Pools, true
}

// accessPool is access for a StockPool.
func (s *Server) accessPool(w http.ResponseWriter, r *http.Request, subresource, verb string) (*smaregiv1alpha1.StockPool, bool) {
	ns, name, ok := s.authorizeRequest(w, r, poolResource, subresource, verb)
	if !ok {
		return nil, false
	}
	var pool smaregiv1alpha1.StockPool
	if err := s.opts.Reader.Get(r.Context(), types.NamespacedName{Namespace: ns, Name: name}, &pool); err != nil {
		if apierrors.IsNotFound(err) {
			writeError(w, http.StatusNotFound, reasonNotFound, fmt.Sprintf("StockPool %s/%s not found", ns, name), nil)
			return nil, false
		}
		s.log.Error(err, "reading a StockPool", "namespace", ns, "name", name)
		writeError(w, http.StatusServiceUnavailable, reasonUnavailable, "reading the StockPool failed; retry later", nil)
		return nil, false
	}
	return &pool, true
}

func poolKey(p *smaregiv1alpha1.StockPool) inventory.StoreKey {
	return inventory.StoreKey{Namespace: p.Namespace, Name: p.Name}
}

// members lists the pool's members, answering 503 (or 422 for a selector
// that does not parse) when it cannot.
func (s *Server) members(w http.ResponseWriter, r *http.Request, pool *smaregiv1alpha1.StockPool) ([]stockpool.Member, bool) {
	ms, err := stockpool.Members(r.Context(), s.opts.Reader, pool)
	if err != nil {
		s.log.Error(err, "listing a StockPool's members", "pool", poolKey(pool).String())
		writeError(w, http.StatusServiceUnavailable, reasonUnavailable, "listing the StockPool's member SmaregiStores failed (is spec.storeSelector valid?); retry later", nil)
		return nil, false
	}
	return ms, true
}

func memberInfos(ms []stockpool.Member) []PoolMemberInfo {
	out := make([]PoolMemberInfo, len(ms))
	for i, m := range ms {
		out[i] = PoolMemberInfo{Name: m.Name(), Priority: m.Priority, Ready: m.Ready, Active: m.Active}
	}
	return out
}

// servePoolStock lists a pool's products: a merge of the active members'
// mirrors in product ID order, read in pages like the store listing.
func (s *Server) servePoolStock(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	q := r.URL.Query()
	watch := q.Get("watch") == "true" || q.Get("watch") == "1"
	verb := "get"
	if watch {
		verb = "watch"
	}
	pool, ok := s.accessPool(w, r, SubresourceStock, verb)
	if !ok {
		return
	}
	for k := range q {
		switch k {
		case "productId", "watch", "resourceVersion", "timeoutSeconds", "allowWatchBookmarks":
		default:
			writeError(w, http.StatusBadRequest, reasonBadRequest, fmt.Sprintf("unknown query parameter %q; known are productId, watch, resourceVersion, timeoutSeconds", k), nil)
			return
		}
	}
	if watch {
		if q.Has("productId") {
			writeError(w, http.StatusBadRequest, reasonBadRequest, "a watch is a GET of the whole pool's stock, without productId", nil)
			return
		}
		timeout, ok := s.watchTimeout(q.Get("timeoutSeconds"))
		if !ok {
			writeError(w, http.StatusBadRequest, reasonBadRequest, "timeoutSeconds must be a positive number of seconds", nil)
			return
		}
		s.servePoolWatch(w, r, pool, q.Get("resourceVersion"), timeout)
		return
	}
	if q.Has("resourceVersion") || q.Has("timeoutSeconds") {
		writeError(w, http.StatusBadRequest, reasonBadRequest, "resourceVersion and timeoutSeconds go with watch=true; a listing is always current", nil)
		return
	}
	productID := q.Get("productId")
	if q.Has("productId") && (len(q["productId"]) != 1 || !validProductID(productID)) {
		writeError(w, http.StatusBadRequest, reasonBadRequest, "productId must be one Smaregi product ID: 1 to 15 digits", nil)
		return
	}
	ms, ok := s.members(w, r, pool)
	if !ok {
		return
	}
	ctx := r.Context()
	safety, err := s.poolSafety(ctx, pool)
	if err != nil {
		s.storeFailure(w, err, "reading the pool's safety stock overrides", poolKey(pool))
		return
	}
	var (
		active  []stockpool.Member
		keys    []inventory.StoreKey
		pending []map[string]int64
		version = poolVersion{safety: safety.fingerprint}
	)
	for _, m := range ms {
		if !m.Active {
			continue
		}
		key := storeKey(m.Store)
		// Each member's version before its pages, as serveStock does.
		v, err := s.opts.Store.StoreVersion(ctx, key)
		if err != nil {
			s.storeFailure(w, err, "reading a member's resource version", key)
			return
		}
		version.names, version.versions = append(version.names, m.Name()), append(version.versions, v)
		p, err := s.opts.Store.PendingDeltas(ctx, key)
		if err != nil {
			s.storeFailure(w, err, "reading pending adjustments", key)
			return
		}
		active, keys, pending = append(active, m), append(keys, key), append(pending, p)
	}
	var one []stockpool.MemberRow
	if productID != "" {
		for i, key := range keys {
			row, found, err := s.opts.Store.Row(ctx, key, productID)
			if err != nil {
				s.storeFailure(w, err, "reading a stock row", key)
				return
			}
			if found {
				one = append(one, stockpool.MemberRow{Index: i, Row: row})
			}
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	head, _ := json.Marshal(PoolStockResponse{
		Namespace: pool.Namespace, Name: pool.Name, ResourceVersion: version.String(), SafetyStock: pool.Spec.SafetyStock,
		AllocationPolicy: pool.Policy(), Members: memberInfos(ms),
	})
	// The head without its closing `"items":null}`, then the items streamed.
	head = head[:len(head)-len(`"items":null}`)]
	_, _ = bw.Write(head)
	_, _ = bw.WriteString(`"items":[`)
	n := 0
	// Products are written in chunks: each member's effective safety stock
	// (spec.safetyStock and its per-product overrides) is read once per
	// member and chunk, as the store listing reads it once per page.
	type pooledProduct struct {
		id   string
		rows []stockpool.MemberRow
	}
	var chunk []pooledProduct
	flush := func() error {
		memberRows := make([]map[string]inventory.Row, len(active))
		for _, p := range chunk {
			for _, mr := range p.rows {
				if memberRows[mr.Index] == nil {
					memberRows[mr.Index] = map[string]inventory.Row{}
				}
				memberRows[mr.Index][p.id] = mr.Row
			}
		}
		avail := make([]map[string]int64, len(active))
		for i, rows := range memberRows {
			if rows == nil {
				continue
			}
			a, err := s.memberAvailable(ctx, active[i], keys[i], rows, pending[i])
			if err != nil {
				return &stockpool.ErrMergeRead{Err: err}
			}
			avail[i] = a
		}
		for _, p := range chunk {
			it := PoolStockItem{ProductID: p.id, SafetyStock: safety.For(p.id), Members: make([]PoolMemberStock, 0, len(p.rows))}
			cands := make([]stockpool.Candidate, 0, len(p.rows))
			for _, mr := range p.rows {
				m, a := active[mr.Index], avail[mr.Index][p.id]
				it.Members = append(it.Members, PoolMemberStock{Store: m.Name(), Available: a})
				cands = append(cands, stockpool.Candidate{Store: m.Name(), Available: a})
			}
			it.Available = stockpool.Pooled(cands, it.SafetyStock)
			b, _ := json.Marshal(it)
			if n > 0 {
				_ = bw.WriteByte(',')
			}
			n++
			if _, err := bw.Write(b); err != nil {
				return err
			}
		}
		chunk = chunk[:0]
		return nil
	}
	item := func(productID string, rows []stockpool.MemberRow) error {
		chunk = append(chunk, pooledProduct{id: productID, rows: slices.Clone(rows)})
		if len(chunk) < stockPageSize {
			return nil
		}
		return flush()
	}
	if productID != "" {
		if len(one) > 0 {
			err = item(productID, one)
		}
	} else {
		err = stockpool.Merge(ctx, s.opts.Store, keys, stockPageSize, item)
	}
	if err == nil {
		err = flush()
	}
	var readErr *stockpool.ErrMergeRead
	switch {
	case err == nil:
	case errors.As(err, &readErr) && ctx.Err() == nil:
		// See serveStock: cut the connection rather than end a short list.
		s.log.Error(err, "listing a pool's stock rows failed mid-stream", "pool", poolKey(pool).String())
		panic(http.ErrAbortHandler)
	default:
		s.log.V(1).Info("client went away during a pool stock listing", "pool", poolKey(pool).String(), "error", err.Error())
		return
	}
	_, _ = bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		s.log.V(1).Info("client went away during a pool stock listing", "pool", poolKey(pool).String(), "error", err.Error())
	}
}

// validatePoolRequest adds a pool's own rules to a valid request: lines by
// productId (product codes are per shop, and so are their credentials) and
// negative only (a pool takes stock; a return goes back to the shop that
// takes it, through that SmaregiStore's adjustments).
func validatePoolRequest(req *AdjustmentRequest) []FieldError {
	var errs []FieldError
	for i, l := range req.Lines {
		f := "lines[" + strconv.Itoa(i) + "]"
		if l.ProductCode != "" {
			errs = append(errs, FieldError{Field: f + ".productCode", Message: "a StockPool order names products by productId"})
		}
		if l.Quantity > 0 {
			errs = append(errs, FieldError{Field: f + ".quantity", Message: "a StockPool order only takes stock (negative quantities); add stock through the SmaregiStore that receives it"})
		}
	}
	return errs
}

// submitTimeout bounds recording and submitting a pool order once its
// allocation is decided.
const submitTimeout = 30 * time.Second

// PoolShortage is the 422 answer of a pool order beyond availability.
type PoolShortage struct {
	ErrorBody
	// Available is the pool's available of each product the order asked
	// too much of.
	Available map[string]int64 `json:"available"`
}

// servePoolAdjustments accepts POST …/stockpools/{name}/adjustments.
func (s *Server) servePoolAdjustments(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	pool, ok := s.accessPool(w, r, SubresourceAdjustments, "create")
	if !ok {
		return
	}
	pools, ok := s.poolStore(w)
	if !ok {
		return
	}
	req, ok := s.decodeAdjustment(w, r)
	if !ok {
		return
	}
	errs := req.validate()
	if len(errs) == 0 {
		errs = validatePoolRequest(req)
	}
	if len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, reasonInvalid, "the order is invalid; nothing was stored", errs)
		return
	}
	ctx := r.Context()
	key := poolKey(pool)
	fp := req.fingerprint()

	// A replay is answered from the record, completing its submission if an
	// earlier request died before it finished.
	if o, found, err := pools.GetPoolOrder(ctx, key, req.ID); err != nil {
		s.storeFailure(w, err, "reading the pool order", key)
		return
	} else if found {
		s.answerExistingPoolOrder(w, r, o, fp)
		return
	}

	unlock, err := pools.LockPool(ctx, key)
	if err != nil {
		s.storeFailure(w, err, "locking the pool", key)
		return
	}
	defer unlock()
	// Under the lock: an order with this ID may have been recorded while
	// this request waited, and earlier orders may wait for their
	// submission (see the file comment).
	if o, found, err := pools.GetPoolOrder(ctx, key, req.ID); err != nil {
		s.storeFailure(w, err, "reading the pool order", key)
		return
	} else if found {
		s.answerExistingPoolOrder(w, r, o, fp)
		return
	}
	unsubmitted, err := pools.UnsubmittedPoolOrders(ctx, key)
	if err != nil {
		s.storeFailure(w, err, "reading the pool's unsubmitted orders", key)
		return
	}
	for _, o := range unsubmitted {
		if err := s.submitPoolOrder(ctx, pools, o); err != nil {
			s.storeFailure(w, err, "completing an earlier pool order", key)
			return
		}
	}

	ms, ok := s.members(w, r, pool)
	if !ok {
		return
	}
	safety, err := s.poolSafety(ctx, pool)
	if err != nil {
		s.storeFailure(w, err, "reading the pool's safety stock overrides", key)
		return
	}
	order := inventory.PoolOrder{Pool: key, ID: req.ID, Reason: req.Reason, Fingerprint: fp, CreatedAt: s.clock.Now().UTC()}
	products := make([]string, len(req.Lines))
	for i, l := range req.Lines {
		products[i] = l.ProductID
		order.Lines = append(order.Lines, AdjustmentLine{ProductID: l.ProductID, Quantity: l.Quantity})
	}
	cands, err := s.candidates(ctx, ms, products)
	if err != nil {
		s.storeFailure(w, err, "reading the members' stock", key)
		return
	}
	parts := map[string][]AdjustmentLine{}
	short := map[string]int64{}
	var details []FieldError
	for i, l := range req.Lines {
		takes, ok := stockpool.Allocate(pool.Policy(), cands[l.ProductID], safety.For(l.ProductID), -l.Quantity)
		if !ok {
			avail := stockpool.Pooled(cands[l.ProductID], safety.For(l.ProductID))
			short[l.ProductID] = avail
			details = append(details, FieldError{Field: "lines[" + strconv.Itoa(i) + "].quantity",
				Message: fmt.Sprintf("the pool has %d of product %s available, the order asks for %d", avail, l.ProductID, -l.Quantity)})
			continue
		}
		for _, t := range takes {
			parts[t.Store] = append(parts[t.Store], AdjustmentLine{ProductID: l.ProductID, Quantity: -t.Amount})
		}
	}
	if len(details) > 0 {
		writeJSON(w, http.StatusUnprocessableEntity, PoolShortage{
			ErrorBody: ErrorBody{Error: reasonInvalid, Message: "the pool has less available than the order asks for; nothing was stored", Details: details},
			Available: short,
		})
		return
	}
	for _, m := range ms { // name order, so the record reads the same every time
		if lines, ok := parts[m.Name()]; ok {
			order.Allocations = append(order.Allocations, inventory.PoolAllocation{
				Store: m.Name(), AdjustmentID: stockpool.MemberAdjustmentID(pool.Name, req.ID), Lines: lines,
			})
		}
	}
	// From the record on, a client that goes away must not leave the order
	// half submitted: the rest runs to its end (bounded) whatever the
	// connection does.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), submitTimeout)
	defer cancel()
	stored, created, err := pools.RecordPoolOrder(ctx, order)
	switch {
	case errors.Is(err, ErrAdjustmentConflict):
		conflict(w, req.ID)
		return
	case err != nil:
		s.storeFailure(w, err, "storing the pool order", key)
		return
	}
	if err := s.submitPoolOrder(ctx, pools, stored); err != nil {
		// Recorded: a retry with the same id completes it.
		s.storeFailure(w, err, "submitting the pool order's member adjustments", key)
		return
	}
	stored.Submitted = true
	resp, err := s.poolOrderResponse(ctx, stored)
	if err != nil {
		s.storeFailure(w, err, "reading the pool order's member adjustments", key)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusAccepted
	}
	w.Header().Set("Location", fmt.Sprintf(poolAdjustmentsLocation, url.PathEscape(key.Namespace), url.PathEscape(key.Name), url.PathEscape(stored.ID)))
	writeJSON(w, status, resp)
}

// candidates returns, per product, each active member's available: the
// store listing's Available of its row, its safety stock and its pending
// adjustments. A member without a row has nothing of the product.
func (s *Server) candidates(ctx context.Context, ms []stockpool.Member, products []string) (map[string][]stockpool.Candidate, error) {
	out := make(map[string][]stockpool.Candidate, len(products))
	for _, m := range ms {
		if !m.Active {
			continue
		}
		key := storeKey(m.Store)
		rows, err := s.opts.Store.RowsByID(ctx, key, products)
		if err != nil {
			return nil, err
		}
		pending, err := s.opts.Store.PendingDeltas(ctx, key)
		if err != nil {
			return nil, err
		}
		avail, err := s.memberAvailable(ctx, m, key, rows, pending)
		if err != nil {
			return nil, err
		}
		for _, p := range products {
			a, ok := avail[p]
			if !ok {
				continue
			}
			out[p] = append(out[p], stockpool.Candidate{Store: m.Name(), Priority: m.Priority, Available: a})
		}
	}
	return out, nil
}

// memberAvailable is what each product of rows is available in member m:
// the rule of the member's own listing (Available, with the member's
// effective safety stock and its pending adjustments), so that a pool never
// offers more of a member than the member's listing does.
func (s *Server) memberAvailable(ctx context.Context, m stockpool.Member, key inventory.StoreKey, rows map[string]inventory.Row,
	pending map[string]int64) (map[string]int64, error) {
	ids := make([]string, 0, len(rows))
	for id := range rows {
		ids = append(ids, id)
	}
	safety, err := s.effectiveSafety(ctx, key, m.Store, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]int64, len(rows))
	for id, row := range rows {
		out[id] = Available(row, safety.For(id), pending[id])
	}
	return out, nil
}

// submitPoolOrder stores every member adjustment of a recorded order
// (again: each is idempotent on its derived ID) and marks it submitted.
func (s *Server) submitPoolOrder(ctx context.Context, pools inventory.PoolOrderStore, o inventory.PoolOrder) error {
	if o.Submitted {
		return nil
	}
	for _, a := range o.Allocations {
		_, _, err := s.opts.Store.SubmitAdjustment(ctx, Adjustment{
			Key: inventory.StoreKey{Namespace: o.Pool.Namespace, Name: a.Store}, ID: a.AdjustmentID,
			Reason: o.Reason, Lines: a.Lines, State: AdjustmentPending, CreatedAt: o.CreatedAt,
		})
		if err != nil {
			return fmt.Errorf("pool order %s of %s, member %s: %w", o.ID, o.Pool, a.Store, err)
		}
	}
	return pools.MarkPoolOrderSubmitted(ctx, o.Pool, o.ID)
}

// answerExistingPoolOrder answers a request whose ID is taken: 409 for a
// different request, else 200 with the stored order, after completing its
// submission if an earlier request did not.
func (s *Server) answerExistingPoolOrder(w http.ResponseWriter, r *http.Request, o inventory.PoolOrder, fp string) {
	if o.Fingerprint != fp {
		conflict(w, o.ID)
		return
	}
	if !o.Submitted {
		if err := s.submitPoolOrder(r.Context(), s.opts.Pools, o); err != nil {
			s.storeFailure(w, err, "submitting the pool order's member adjustments", o.Pool)
			return
		}
		o.Submitted = true
	}
	resp, err := s.poolOrderResponse(r.Context(), o)
	if err != nil {
		s.storeFailure(w, err, "reading the pool order's member adjustments", o.Pool)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// poolOrderResponse shows an order with the state of each member part: the
// order is applied when every part is, failed when any part failed, and
// pending otherwise.
func (s *Server) poolOrderResponse(ctx context.Context, o inventory.PoolOrder) (PoolOrderResponse, error) {
	out := PoolOrderResponse{
		ID: o.ID, Namespace: o.Pool.Namespace, Pool: o.Pool.Name, Reason: o.Reason, CreatedAt: o.CreatedAt.UTC(),
		Lines: responseLines(o.Lines),
	}
	var pending, failed, unknown bool
	for _, a := range o.Allocations {
		part := PoolAllocationResponse{Store: a.Store, AdjustmentID: a.AdjustmentID, Lines: responseLines(a.Lines), State: AdjustmentPending}
		adj, found, err := s.opts.Store.GetAdjustment(ctx, inventory.StoreKey{Namespace: o.Pool.Namespace, Name: a.Store}, a.AdjustmentID)
		if err != nil {
			return out, err
		}
		switch {
		case found:
			r := responseOf(adj)
			part.State, part.AppliedAt, part.FailureReason, part.AwaitingConfirmation = r.State, r.AppliedAt, r.FailureReason, r.AwaitingConfirmation
		case o.Submitted:
			part.State = AdjustmentUnknown
		}
		switch part.State {
		case AdjustmentPending:
			pending = true
		case AdjustmentFailed:
			failed = true
		case AdjustmentUnknown:
			unknown = true
		}
		out.Allocations = append(out.Allocations, part)
	}
	switch {
	case failed:
		out.State = AdjustmentFailed
	case pending:
		out.State = AdjustmentPending
	case unknown:
		out.State = AdjustmentUnknown
	default:
		out.State = AdjustmentApplied
	}
	return out, nil
}

func responseLines(lines []AdjustmentLine) []ResponseLine {
	out := make([]ResponseLine, len(lines))
	for i, l := range lines {
		out[i] = ResponseLine{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ProductID < out[j].ProductID })
	return out
}

// servePoolAdjustment answers GET …/stockpools/{name}/adjustments/{id}.
func (s *Server) servePoolAdjustment(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		methodNotAllowed(w, "GET")
		return
	}
	pool, ok := s.accessPool(w, r, SubresourceAdjustments, "get")
	if !ok {
		return
	}
	pools, ok := s.poolStore(w)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validID(id) {
		writeError(w, http.StatusNotFound, reasonNotFound, "not a valid order id", nil)
		return
	}
	key := poolKey(pool)
	o, found, err := pools.GetPoolOrder(r.Context(), key, id)
	if err != nil {
		s.storeFailure(w, err, "reading the pool order", key)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, reasonNotFound, fmt.Sprintf("order %q not found in StockPool %s", id, key), nil)
		return
	}
	resp, err := s.poolOrderResponse(r.Context(), o)
	if err != nil {
		s.storeFailure(w, err, "reading the pool order's member adjustments", key)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// reservedStoreID reports whether a store adjustment ID is one pool orders
// use, which a caller may not choose.
func reservedStoreID(id string) bool { return strings.HasPrefix(id, stockpool.AdjustmentIDPrefix) }
