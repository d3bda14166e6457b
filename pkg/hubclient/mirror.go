package hubclient

import (
	"maps"
	"sync"
)

// Mirror is a Handler keeping the store's items in memory, safe to read
// from any goroutine while Sync feeds it.
type Mirror struct {
	t table[Item, uint64]
	// OnApply, if set, is called (under no lock) with every event applied:
	// a channel can react to a change without polling the Mirror.
	OnApply func(Event)
}

// NewMirror returns an empty Mirror.
func NewMirror() *Mirror { return &Mirror{} }

// Replace implements Handler.
func (m *Mirror) Replace(items []Item, rv uint64) {
	m.t.replace(items, func(it Item) string { return it.ProductID }, rv)
}

// Apply implements Handler.
func (m *Mirror) Apply(e Event) {
	m.t.apply(e.Type, e.Item.ProductID, e.Item, e.ResourceVersion)
	if m.OnApply != nil {
		m.OnApply(e)
	}
}

// Get returns one product's item.
func (m *Mirror) Get(productID string) (Item, bool) { return m.t.get(productID) }

// Snapshot returns a copy of all items and the version they are at.
func (m *Mirror) Snapshot() (map[string]Item, uint64) { return m.t.snapshot() }

// PoolMirror is a PoolHandler keeping the pool's items in memory, safe to
// read from any goroutine while SyncPool feeds it.
//
//	m := hubclient.NewPoolMirror()
//	go func() { _ = c.SyncPool(ctx, "shops", "tokyo", m) }()
//	item, ok := m.Get("8000001") // item.Available: what the pool may sell
type PoolMirror struct {
	t table[PoolItem, string]
	// OnApply, if set, is called (under no lock) with every event applied.
	OnApply func(PoolEvent)
	// OnReplace, if set, is called (under no lock) after every listing:
	// after the first, a relist means the pool's members or safety stock
	// changed, and any product may have changed with them.
	OnReplace func(items []PoolItem, resourceVersion string)
}

// NewPoolMirror returns an empty PoolMirror.
func NewPoolMirror() *PoolMirror { return &PoolMirror{} }

// Replace implements PoolHandler.
func (m *PoolMirror) Replace(items []PoolItem, rv string) {
	m.t.replace(items, func(it PoolItem) string { return it.ProductID }, rv)
	if m.OnReplace != nil {
		m.OnReplace(items, rv)
	}
}

// Apply implements PoolHandler.
func (m *PoolMirror) Apply(e PoolEvent) {
	m.t.apply(e.Type, e.Item.ProductID, e.Item, e.ResourceVersion)
	if m.OnApply != nil {
		m.OnApply(e)
	}
}

// Get returns one product's pooled item.
func (m *PoolMirror) Get(productID string) (PoolItem, bool) { return m.t.get(productID) }

// Snapshot returns a copy of all items and the version they are at.
func (m *PoolMirror) Snapshot() (map[string]PoolItem, string) { return m.t.snapshot() }

// table is what Mirror and PoolMirror keep: items by product ID and the
// version they are at.
type table[I any, V any] struct {
	mu    sync.RWMutex
	items map[string]I
	rv    V
}

func (t *table[I, V]) replace(items []I, id func(I) string, rv V) {
	next := make(map[string]I, len(items))
	for _, it := range items {
		next[id(it)] = it
	}
	t.mu.Lock()
	t.items, t.rv = next, rv
	t.mu.Unlock()
}

func (t *table[I, V]) apply(typ EventType, id string, it I, rv V) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.items == nil {
		t.items = map[string]I{}
	}
	switch typ {
	case Modified:
		t.items[id] = it
	case Deleted:
		delete(t.items, id)
	}
	t.rv = rv
}

func (t *table[I, V]) get(id string) (I, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	it, ok := t.items[id]
	return it, ok
}

func (t *table[I, V]) snapshot() (map[string]I, V) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := maps.Clone(t.items)
	if out == nil {
		out = map[string]I{}
	}
	return out, t.rv
}
