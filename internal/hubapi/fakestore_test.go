package hubapi

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// memStore is a narrow in-memory fake of Store. It keeps adjustments and
// derives PendingDeltas from the pending ones, which is the contract the
// real backends implement; it exists only until they land.
type memStore struct {
	mu            sync.Mutex
	rows          map[inventory.StoreKey]map[string]inventory.Row
	summary       map[inventory.StoreKey]inventory.Summary
	adj           map[inventory.StoreKey]map[string]Adjustment
	order         map[inventory.StoreKey][]string // sorted IDs, dropped on put
	failRowsAfter int                             // >0: RowsPage fails for a page past this many rows
}

func newMemStore() *memStore {
	return &memStore{
		rows:    map[inventory.StoreKey]map[string]inventory.Row{},
		summary: map[inventory.StoreKey]inventory.Summary{},
		adj:     map[inventory.StoreKey]map[string]Adjustment{},
	}
}

func (m *memStore) put(key inventory.StoreKey, rows ...inventory.Row) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.rows[key] == nil {
		m.rows[key] = map[string]inventory.Row{}
	}
	for _, r := range rows {
		m.rows[key][r.ProductID] = r.Normalize()
	}
	delete(m.order, key)
	s := m.summary[key]
	s.SKUs = int64(len(m.rows[key]))
	m.summary[key] = s
}

func (m *memStore) setSummary(key inventory.StoreKey, s inventory.Summary) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.summary[key] = s
}

func (m *memStore) count(key inventory.StoreKey) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.adj[key])
}

// RowsPage keeps a sorted ID list between calls, so that the fake adds no
// per-listing sorting to the benchmark.
func (m *memStore) RowsPage(ctx context.Context, key inventory.StoreKey, after string, limit int) ([]inventory.Row, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.order == nil {
		m.order = map[inventory.StoreKey][]string{}
	}
	ids, ok := m.order[key]
	if !ok {
		for id := range m.rows[key] {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		m.order[key] = ids
	}
	start := sort.Search(len(ids), func(i int) bool { return ids[i] > after })
	end := min(start+limit, len(ids))
	if m.failRowsAfter > 0 && end > m.failRowsAfter {
		return nil, errors.New("memstore: injected read failure")
	}
	out := make([]inventory.Row, 0, end-start)
	for _, id := range ids[start:end] {
		out = append(out, m.rows[key][id])
	}
	return out, nil
}

func (m *memStore) Row(_ context.Context, key inventory.StoreKey, id string) (inventory.Row, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.rows[key][id]
	return r, ok, nil
}

func (m *memStore) Summary(_ context.Context, key inventory.StoreKey) (inventory.Summary, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.summary[key], nil
}

func (m *memStore) SubmitAdjustment(_ context.Context, a Adjustment) (Adjustment, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.adj[a.Key][a.ID]; ok {
		if old.Fingerprint != a.Fingerprint {
			return Adjustment{}, false, ErrAdjustmentConflict
		}
		return old, false, nil
	}
	if m.adj[a.Key] == nil {
		m.adj[a.Key] = map[string]Adjustment{}
	}
	a.Lines = append([]AdjustmentLine(nil), a.Lines...)
	m.adj[a.Key][a.ID] = a
	return a, true, nil
}

func (m *memStore) GetAdjustment(_ context.Context, key inventory.StoreKey, id string) (Adjustment, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.adj[key][id]
	return a, ok, nil
}

func (m *memStore) setAdjustment(a Adjustment) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.adj[a.Key][a.ID] = a
}

func (m *memStore) PendingDeltas(_ context.Context, key inventory.StoreKey) (map[string]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]int64{}
	// The inventory contract: negative quantities of pending adjustments
	// and of applied ones not yet reflected by a pull. Nothing pulls here,
	// so applied ones always count.
	for _, a := range m.adj[key] {
		if a.State == AdjustmentFailed {
			continue
		}
		inventory.NegativeDeltas(out, a.Lines)
	}
	return out, nil
}
