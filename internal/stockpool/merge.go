package stockpool

import (
	"context"
	"fmt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// RowsPager reads a store's mirror a page at a time (inventory.Store has it).
type RowsPager interface {
	RowsPage(ctx context.Context, key inventory.StoreKey, afterProductID string, limit int) ([]inventory.Row, error)
}

// MemberRow is one store's row of a merged product: Index is the store's
// place in the keys given to Merge.
type MemberRow struct {
	Index int
	Row   inventory.Row
}

// ErrMergeRead wraps a failed page read of Merge, so that a caller can tell
// it from an error of its own fn.
type ErrMergeRead struct {
	Key inventory.StoreKey
	Err error
}

func (e *ErrMergeRead) Error() string {
	return fmt.Sprintf("reading the stock rows of %s: %v", e.Key, e.Err)
}

func (e *ErrMergeRead) Unwrap() error { return e.Err }

// Merge calls fn once per product that has a row in any of the stores, in
// product ID (byte) order, with the rows it has in each. It reads each
// store in pages of pageSize, so memory is a page per store whatever the
// mirrors hold, and it holds no store read while fn runs. Like a store
// listing it is not one snapshot. It stops at fn's first error and returns
// it.
func Merge(ctx context.Context, p RowsPager, keys []inventory.StoreKey, pageSize int, fn func(productID string, rows []MemberRow) error) error {
	type cursor struct {
		page []inventory.Row
		i    int
		done bool
	}
	cs := make([]cursor, len(keys))
	var rows []MemberRow
	for {
		next, found := "", false
		for k := range cs {
			c := &cs[k]
			if c.i == len(c.page) && !c.done {
				after := ""
				if len(c.page) > 0 {
					after = c.page[len(c.page)-1].ProductID
				}
				page, err := p.RowsPage(ctx, keys[k], after, pageSize)
				if err != nil {
					return &ErrMergeRead{Key: keys[k], Err: err}
				}
				c.page, c.i, c.done = page, 0, len(page) < pageSize
			}
			if c.i < len(c.page) && (!found || c.page[c.i].ProductID < next) {
				next, found = c.page[c.i].ProductID, true
			}
		}
		if !found {
			return nil
		}
		rows = rows[:0]
		for k := range cs {
			c := &cs[k]
			if c.i < len(c.page) && c.page[c.i].ProductID == next {
				rows = append(rows, MemberRow{Index: k, Row: c.page[c.i]})
				c.i++
			}
		}
		if err := fn(next, rows); err != nil {
			return err
		}
	}
}
