package smaregi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// HistoryRow is one entry of Smaregi's stock history (StockHistory): one
// change of one product's stock in one store.
type HistoryRow struct {
	ID            string
	StoreID       string
	ProductID     string
	Amount        int64 // signed change
	StockAmount   int64 // stock after the change
	StockDivision string
	FromStoreID   string
	ToStoreID     string
	Memo          string // empty when Smaregi does not return memos
	UpdDateTime   time.Time
	// TargetDateTime is the business time of the change; zero when absent.
	TargetDateTime time.Time
}

// HistoryQuery selects stock history entries of one store.
type HistoryQuery struct {
	StoreID string
	// ProductIDs, if set, keeps only these products. One product is
	// filtered by Smaregi; several are filtered here, because conditions of
	// one object are ANDed and how several objects combine is unknown.
	ProductIDs []string
	// Since, if set, keeps entries with updDateTime >= it (whole seconds).
	Since time.Time
	// StockDivision, if set, keeps entries of that division (e.g. "15").
	StockDivision string
}

type historyWire struct {
	ID             Flex `json:"id"`
	UpdDateTime    Flex `json:"updDateTime"`
	TargetDateTime Flex `json:"targetDateTime"`
	ProductID      Flex `json:"productId"`
	StoreID        Flex `json:"storeId"`
	Amount         Flex `json:"amount"`
	StockAmount    Flex `json:"stockAmount"`
	StockDivision  Flex `json:"stockDivision"`
	FromStoreID    Flex `json:"fromStoreId"`
	ToStoreID      Flex `json:"toStoreId"`
	Memo           Flex `json:"memo"`
}

// StreamStockHistory reads a store's stock history, oldest first, calling
// fn with each page (fn must not keep the slice). History is append-only,
// so page numbers are stable: entries added during the stream appear at the
// end and are delivered if the stream reaches them. No fields list is sent,
// so columns this client does not know (or memo, where it exists) cost
// nothing to ask for and do not fail on servers without them.
func (c *Client) StreamStockHistory(ctx context.Context, q HistoryQuery, fn func(page []HistoryRow) error) error {
	if err := ValidateID("store", q.StoreID, 5); err != nil {
		return err
	}
	cond := map[string]string{"storeId": q.StoreID}
	var only map[string]struct{}
	switch len(q.ProductIDs) {
	case 0:
	case 1:
		if err := ValidateID("product", q.ProductIDs[0], 15); err != nil {
			return err
		}
		cond["productId"] = q.ProductIDs[0]
	default:
		only = make(map[string]struct{}, len(q.ProductIDs))
		for _, id := range q.ProductIDs {
			if err := ValidateID("product", id, 15); err != nil {
				return err
			}
			only[id] = struct{}{}
		}
	}
	if !q.Since.IsZero() {
		cond["updDateTime >="] = FormatTime(q.Since)
	}
	if q.StockDivision != "" {
		cond["stockDivision"] = q.StockDivision
	}
	limit := c.pageSize
	params := refParams{
		TableName:  "StockHistory",
		Conditions: []map[string]string{cond},
		Order:      []string{"updDateTime asc", "id asc"},
		Limit:      limit,
	}
	var (
		buf  bytes.Buffer
		env  refEnvelope[historyWire]
		wire []historyWire
		out  = make([]HistoryRow, 0, limit)
	)
	for page := 1; ; page++ {
		params.Page = page
		body, err := json.Marshal(&params)
		if err != nil {
			return fmt.Errorf("smaregi stock_ref: encode params: %w", err)
		}
		clear(wire[:cap(wire)])
		env = refEnvelope[historyWire]{Result: wire[:0]}
		if err := c.call(ctx, ProcStockRef, body, &buf, func(b []byte) error { return json.Unmarshal(b, &env) }); err != nil {
			return fmt.Errorf("read stock history of store %s (page %d): %w", q.StoreID, page, err)
		}
		wire = env.Result
		out = out[:0]
		for i := range wire {
			h, err := wire[i].toRow()
			if err != nil {
				return fmt.Errorf("read stock history of store %s (page %d, row %d): %w", q.StoreID, page, i+1, err)
			}
			if only != nil {
				if _, ok := only[h.ProductID]; !ok {
					continue
				}
			}
			out = append(out, h)
		}
		if len(out) > 0 {
			if err := fn(out); err != nil {
				return err
			}
		}
		if len(wire) < limit {
			total, err := env.TotalCount.Int64()
			if err == nil && total > int64((page-1)*limit+len(wire)) {
				return fmt.Errorf("smaregi stock_ref: store %s history page %d returned %d rows, fewer than limit %d, but total_count is %d", q.StoreID, page, len(wire), limit, total)
			}
			return nil
		}
	}
}

func (w *historyWire) toRow() (HistoryRow, error) {
	h := HistoryRow{
		ID:            string(w.ID),
		StoreID:       string(w.StoreID),
		ProductID:     string(w.ProductID),
		StockDivision: string(w.StockDivision),
		FromStoreID:   string(w.FromStoreID),
		ToStoreID:     string(w.ToStoreID),
		Memo:          string(w.Memo),
	}
	var err error
	if h.Amount, err = w.Amount.Int64(); err != nil {
		return h, fmt.Errorf("amount: %w", err)
	}
	if h.StockAmount, err = w.StockAmount.Int64(); err != nil {
		return h, fmt.Errorf("stockAmount: %w", err)
	}
	if h.UpdDateTime, err = w.UpdDateTime.Time(); err != nil {
		return h, fmt.Errorf("updDateTime: %w", err)
	}
	if h.TargetDateTime, err = w.TargetDateTime.Time(); err != nil {
		return h, fmt.Errorf("targetDateTime: %w", err)
	}
	return h, nil
}
