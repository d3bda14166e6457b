package mirror

import (
	"context"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// DefaultReaders returns a ReaderFactory that reads with the smaregi client,
// built from base (HTTP client, retries, page size, limiters) plus the
// store's endpoint, contract and token. base.Limiters should be the one
// registry of the process, so all stores of a contract share its limit.
func DefaultReaders(base smaregi.Options) ReaderFactory {
	return func(cfg ReaderConfig) (StockReader, error) {
		o := base
		o.Endpoint, o.ContractID, o.AccessToken = cfg.Endpoint, cfg.ContractID, cfg.AccessToken
		c, err := smaregi.New(o)
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
	return r.c.StreamStock(ctx, smaregi.StockQuery{StoreID: q.StoreID, UpdatedSince: q.UpdatedSince}, func(page []smaregi.StockRow) error {
		buf = buf[:0]
		for _, row := range page {
			// The query names the store; a row of another store would
			// mean the server ignored the condition, and must not land
			// in this store's mirror.
			if row.StoreID != q.StoreID {
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
