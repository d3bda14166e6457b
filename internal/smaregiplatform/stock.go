package smaregiplatform

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

type stockWire struct {
	StoreID            smaregi.Flex `json:"storeId"`
	ProductID          smaregi.Flex `json:"productId"`
	StockAmount        smaregi.Flex `json:"stockAmount"`
	LayawayStockAmount smaregi.Flex `json:"layawayStockAmount"`
	UpdDateTime        smaregi.Flex `json:"updDateTime"`
}

// ListStock reads a store's stock rows (GET stock) in product order and
// calls fn with each page of at most PageSize rows; fn must not keep the
// slice. An error from fn stops the listing and is returned as is.
//
// With q.UpdatedSince zero it lists every row (the full reconcile). With it
// set, only rows changed at or after it (whole seconds), through the API's
// upd_date_time window, which spans at most 31 days: the window is
// [UpdatedSince, UpdatedSince+31d], so rows changed while the listing runs
// stay inside it. A watermark older than 31 days (less the margin) cannot
// cover up to now, and ListStock returns a *WatermarkTooOldError
// (IsFullReconcileNeeded) without calling Smaregi.
//
// The caller's next watermark should be a time taken before the listing
// started (less the clock skew it tolerates), not the newest updDateTime
// seen: the list is in product order, not time order.
func (c *Client) ListStock(ctx context.Context, q smaregi.StockQuery, fn func(page []smaregi.StockRow) error) error {
	if err := smaregi.ValidateID("store", q.StoreID, 5); err != nil {
		return err
	}
	v := url.Values{"store_id": {q.StoreID}}
	if !q.UpdatedSince.IsZero() {
		from := q.UpdatedSince
		oldest := c.now().Add(-MaxWindow + c.margin)
		if from.Before(oldest) {
			return &WatermarkTooOldError{Watermark: from, Oldest: oldest}
		}
		v.Set("upd_date_time-from", isoTime(from))
		v.Set("upd_date_time-to", isoTime(from.Add(MaxWindow)))
	}
	out := make([]smaregi.StockRow, 0, c.pageSize)
	err := listPages(ctx, c, CallStockList, v, func(w *stockWire) string { return string(w.StoreID) + "/" + string(w.ProductID) },
		func(page []stockWire) error {
			out = out[:0]
			for i := range page {
				row, err := page[i].toRow(q.StoreID)
				if err != nil {
					return &decodeError{fmt.Errorf("row %d: %w", i+1, err)}
				}
				if row.StoreID != q.StoreID {
					return &decodeError{fmt.Errorf("row %d: store %q, asked for %q", i+1, row.StoreID, q.StoreID)}
				}
				out = append(out, row)
			}
			return fn(out)
		})
	if err != nil {
		var de *decodeError
		if errors.As(err, &de) {
			return fmt.Errorf("read stock of store %s: %w", q.StoreID, &TransportError{Call: CallStockList, MaybeSent: true, Err: de.err})
		}
		if IsFullReconcileNeeded(err) || isAPIErr(err) {
			return fmt.Errorf("read stock of store %s: %w", q.StoreID, err)
		}
		return err // fn's own error, as is
	}
	return nil
}

// decodeError marks a row the client could not read, so it is told apart
// from the caller's own error returned by fn.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

func isAPIErr(err error) bool {
	return errors.As(err, new(*APIError)) || errors.As(err, new(*TransportError))
}

func (w *stockWire) toRow(storeID string) (smaregi.StockRow, error) {
	var r smaregi.StockRow
	var err error
	// Reusing the caller's string saves an allocation per row.
	if string(w.StoreID) == storeID || w.StoreID == "" {
		r.StoreID = storeID
	} else {
		r.StoreID = string(w.StoreID)
	}
	r.ProductID = string(w.ProductID)
	if r.ProductID == "" {
		return r, errors.New("row without productId")
	}
	if r.StockAmount, err = w.StockAmount.Int64(); err != nil {
		return r, fmt.Errorf("stockAmount: %w", err)
	}
	if r.LayawayStockAmount, err = w.LayawayStockAmount.Int64(); err != nil {
		return r, fmt.Errorf("layawayStockAmount: %w", err)
	}
	if r.UpdDateTime, err = parseTime(w.UpdDateTime); err != nil {
		return r, fmt.Errorf("updDateTime: %w", err)
	}
	return r, nil
}
