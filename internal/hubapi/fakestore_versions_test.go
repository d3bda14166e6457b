package hubapi

import (
	"context"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// The narrow fake has no change log: it answers version 0 and no changes.
// Watch tests run on the real backends.

func (m *memStore) StoreVersion(context.Context, inventory.StoreKey) (uint64, error) { return 0, nil }

func (m *memStore) ChangesSince(_ context.Context, _ inventory.StoreKey, v uint64, _ int) ([]inventory.Change, error) {
	if v > 0 {
		return nil, inventory.ErrGone
	}
	return nil, nil
}

func (m *memStore) RowsByID(_ context.Context, key inventory.StoreKey, ids []string) (map[string]inventory.Row, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]inventory.Row{}
	for _, id := range ids {
		if r, ok := m.rows[key][id]; ok {
			out[id] = r
		}
	}
	return out, nil
}

func (m *memStore) SubscribeVersions(ctx context.Context) <-chan inventory.StoreKey {
	ch := make(chan inventory.StoreKey)
	go func() {
		<-ctx.Done()
		close(ch)
	}()
	return ch
}

// SafetyStockFor: the fake records no safety stock, so the hub API uses
// spec.safetyStock, as for a store the controller has not recorded yet.
func (m *memStore) SafetyStockFor(context.Context, inventory.StoreKey, []string) (inventory.SafetyStock, bool, error) {
	return inventory.SafetyStock{}, false, nil
}
