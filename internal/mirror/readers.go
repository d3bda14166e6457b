package mirror

import (
	"context"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// DefaultReaders returns a ReaderFactory that reads with smaregi clients
// from clients (the process's one factory, so all stores of a contract share
// its limit), tuned by tune (retries, page size).
func DefaultReaders(clients *storeaccess.Clients, tune smaregi.Options) ReaderFactory {
	return func(t storeaccess.Target) (StockReader, error) {
		c, err := clients.Client(t, tune)
		if err != nil {
			return nil, err
		}
		return &clientReader{c: c}, nil
	}
}

// clientReader adapts *smaregi.Client to StockReader, converting rows into
// the inventory's type in a reused buffer.
type clientReader struct{ c *smaregi.Client }

func (r *clientReader) ReadStock(ctx context.Context, q StockQuery, fn func([]inventory.Row) error) error {
	var buf []inventory.Row
	want := smaregi.CanonicalStoreID(q.StoreID)
	return r.c.StreamStock(ctx, smaregi.StockQuery{StoreID: q.StoreID, UpdatedSince: q.UpdatedSince}, func(page []smaregi.StockRow) error {
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
