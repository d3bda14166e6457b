package mirror

import (
	"context"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// DefaultReaders returns a ReaderFactory that reads through the store's
// backend from clients (the process's one factory, so all stores of a
// contract share its limit), whichever API the store speaks, tuned by tune
// (retries, page size).
func DefaultReaders(clients *storeaccess.Clients, tune storeaccess.Tune) ReaderFactory {
	return func(t storeaccess.Target) (StockReader, error) {
		b, err := clients.Backend(t, tune)
		if err != nil {
			return nil, err
		}
		return &backendReader{b: b}, nil
	}
}

// backendReader adapts a storeaccess.Backend to StockReader, converting rows
// into the inventory's type in a reused buffer.
type backendReader struct{ b storeaccess.Backend }

func (r *backendReader) ReadStock(ctx context.Context, q StockQuery, fn func([]inventory.Row) error) error {
	var buf []inventory.Row
	want := smaregi.CanonicalStoreID(q.StoreID)
	return r.b.ListStock(ctx, smaregi.StockQuery{StoreID: q.StoreID, UpdatedSince: q.UpdatedSince}, func(page []smaregi.StockRow) error {
		buf = buf[:0]
		for _, row := range page {
			// The query names the store; a row of another store would
			// mean the server ignored the condition, and must not land
			// in this store's mirror. IDs are numbers sent as text, so
			// "01" and "1" name the same store.
			if smaregi.CanonicalStoreID(row.StoreID) != want {
				continue
			}
			buf = append(buf, inventory.Row{
				ProductID:          row.ProductID,
				StockAmount:        row.StockAmount,
				LayawayStockAmount: row.LayawayStockAmount,
				UpdDateTime:        row.UpdDateTime,
			})
		}
		if len(buf) == 0 {
			return nil
		}
		return fn(buf)
	})
}
