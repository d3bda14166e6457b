package hubapi

// StockPools: the pooled stock of several shops (listing, each member's
// availability), and the routes of orders to a pool, which the operator
// splits across the member shops (pool_orders.go).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

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
	pool, ok := s.accessPool(w, r, SubresourceStock, stockVerb(r))
	if !ok {
		return
	}
	sq, ok := s.parseStockQuery(w, r, "pool")
	if !ok {
		return
	}
	if sq.watch {
		s.servePoolWatch(w, r, pool, sq.resourceVersion, sq.timeout)
		return
	}
	productID := sq.productID
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
