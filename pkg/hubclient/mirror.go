package hubclient

import (
	"maps"
	"sync"
)

// Mirror is a Handler keeping the store's items in memory, safe to read
// from any goroutine while Sync feeds it.
type Mirror struct {
	mu    sync.RWMutex
	items map[string]Item
	rv    uint64
	// OnApply, if set, is called (under no lock) with every event applied:
	// a channel can react to a change without polling the Mirror.
	OnApply func(Event)
}

// NewMirror returns an empty Mirror.
func NewMirror() *Mirror { return &Mirror{items: map[string]Item{}} }

// Replace implements Handler.
func (m *Mirror) Replace(items []Item, rv uint64) {
	next := make(map[string]Item, len(items))
	for _, it := range items {
		next[it.ProductID] = it
	}
	m.mu.Lock()
	m.items, m.rv = next, rv
	m.mu.Unlock()
}

// Apply implements Handler.
func (m *Mirror) Apply(e Event) {
	m.mu.Lock()
	switch e.Type {
	case Modified:
		m.items[e.Item.ProductID] = e.Item
	case Deleted:
		delete(m.items, e.Item.ProductID)
	}
	m.rv = e.ResourceVersion
	m.mu.Unlock()
	if m.OnApply != nil {
		m.OnApply(e)
	}
}

// Get returns one product's item.
func (m *Mirror) Get(productID string) (Item, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	it, ok := m.items[productID]
	return it, ok
}

// Snapshot returns a copy of all items and the version they are at.
func (m *Mirror) Snapshot() (map[string]Item, uint64) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return maps.Clone(m.items), m.rv
}
