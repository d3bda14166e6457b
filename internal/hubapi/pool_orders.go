package hubapi

// Orders to a StockPool.
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
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/stockpool"
)

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
