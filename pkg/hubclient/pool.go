package hubclient

// A StockPool's feed: GET …/stockpools/{name}/stock, and the watch of it.
// The protocol is a store's (list, watch, resume from the last version,
// list again after 410) with two differences a channel sees here: the
// resourceVersion is an opaque string (the active members' positions and a
// fingerprint of the pool's safety stock), and a change of the pool's
// active members or of its own safety stock ends the watch with 410, so
// SyncPool lists again then; docs/hub-api.md, "Stock pools".

import (
	"context"
	"fmt"
)

// PoolItem is one product of a pool, as listed and as carried by an event.
type PoolItem struct {
	ProductID string `json:"productId"`
	// SafetyStock is what the pool holds back from the product: its entry
	// in the pool's overrides ConfigMap, else the pool's spec.safetyStock.
	SafetyStock int64 `json:"safetyStock"`
	// Available is what the pool may sell: the sum of the active members'
	// available less SafetyStock, never below 0.
	Available int64 `json:"available"`
	// Members are the active members with a stock row for the product,
	// with what each may sell (exactly what its own listing shows).
	Members []PoolMemberStock `json:"members"`
}

// PoolMemberStock is one member's part of a pooled product.
type PoolMemberStock struct {
	Store     string `json:"store"`
	Available int64  `json:"available"`
}

// PoolMember is one member store of a pool, as the listing shows it.
type PoolMember struct {
	Name     string `json:"name"`
	Priority int32  `json:"priority"`
	// Ready is the store's Ready condition.
	Ready bool `json:"ready"`
	// Active: counts in the pool's available and takes orders (not
	// suspended, not being deleted, not Stalled).
	Active bool `json:"active"`
}

// PoolStock is a pool's listing.
type PoolStock struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// ResourceVersion is where to watch from; opaque, compare it only for
	// equality.
	ResourceVersion string `json:"resourceVersion"`
	// SafetyStock is the pool's spec.safetyStock.
	SafetyStock      int64        `json:"safetyStock"`
	AllocationPolicy string       `json:"allocationPolicy"`
	Members          []PoolMember `json:"members"`
	Items            []PoolItem   `json:"items"`
}

// PoolEvent is one change of a pool: the product's pooled item as it is
// now (MODIFIED), or that no active member has a row for it any more
// (DELETED: only Item.ProductID is set), or a BOOKMARK. Unlike a store's,
// a pool's versions are not numbered one by one: resume from the last one.
type PoolEvent struct {
	Type            EventType
	Item            PoolItem
	ResourceVersion string
}

// PoolHandler receives what SyncPool learns. Calls come from SyncPool's
// goroutine, one at a time.
type PoolHandler interface {
	// Replace replaces everything known about the pool with a listing:
	// the first, and again after the pool's members or safety stock
	// changed.
	Replace(items []PoolItem, resourceVersion string)
	// Apply applies one MODIFIED or DELETED event.
	Apply(e PoolEvent)
}

// ListPool reads the pool's whole stock, its members and the
// resourceVersion to watch from.
func (c *Client) ListPool(ctx context.Context, ns, name string) (*PoolStock, error) {
	var st PoolStock
	if err := c.getJSON(ctx, kindPool, ns, name, &st); err != nil {
		return nil, err
	}
	if st.ResourceVersion == "" {
		return nil, fmt.Errorf("hubclient: listing of pool %s/%s has no resourceVersion (an operator without the pool feed?)", ns, name)
	}
	return &st, nil
}

// PoolWatcher is one open watch of a pool.
type PoolWatcher struct{ s *eventStream }

// WatchPool opens a watch of the pool's changes after resourceVersion (the
// listing's, or the last event's or bookmark's). It returns ErrGone when
// that version no longer holds: the pool's active members or safety stock
// changed since, or a member's changes after it are no longer kept.
func (c *Client) WatchPool(ctx context.Context, ns, name, resourceVersion string) (*PoolWatcher, error) {
	s, err := c.watchStream(ctx, kindPool, ns, name, resourceVersion)
	if err != nil {
		return nil, err
	}
	return &PoolWatcher{s: s}, nil
}

// Next returns the next event. io.EOF means the server ended the watch:
// watch again from the last version. ErrGone means list again.
func (w *PoolWatcher) Next() (PoolEvent, error) {
	var obj struct {
		PoolItem
		RV string `json:"resourceVersion"`
	}
	typ, err := w.s.next(&obj)
	if err != nil {
		return PoolEvent{}, err
	}
	if obj.RV == "" {
		return PoolEvent{}, fmt.Errorf("hubclient: pool %s event without a resourceVersion", typ)
	}
	return PoolEvent{Type: typ, Item: obj.PoolItem, ResourceVersion: obj.RV}, nil
}

// Close ends the watch.
func (w *PoolWatcher) Close() error { return w.s.close() }

// SyncPool lists the pool and then watches it until ctx ends, feeding h,
// as Sync does a store: after a disconnection (an operator restart or
// fail-over included) it watches again from the last version it saw, so h
// sees every change once; after 410 Gone (the pool's members or safety
// stock changed) it lists again (h.Replace). It returns ctx's error.
func (c *Client) SyncPool(ctx context.Context, ns, name string, h PoolHandler) error {
	var rv string
	return c.follow(ctx,
		func(ctx context.Context) error {
			st, err := c.ListPool(ctx, ns, name)
			if err != nil {
				return err
			}
			h.Replace(st.Items, st.ResourceVersion)
			rv = st.ResourceVersion
			return nil
		},
		func(ctx context.Context) (func() error, func() error, error) {
			w, err := c.WatchPool(ctx, ns, name, rv)
			if err != nil {
				return nil, nil, err
			}
			next := func() error {
				e, err := w.Next()
				if err != nil {
					return err
				}
				if e.Type != Bookmark {
					h.Apply(e)
				}
				rv = e.ResourceVersion
				return nil
			}
			return next, w.Close, nil
		})
}
