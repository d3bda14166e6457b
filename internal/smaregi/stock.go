package smaregi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// StockRow is one store's stock of one product.
type StockRow struct {
	StoreID            string
	ProductID          string
	StockAmount        int64
	LayawayStockAmount int64
	UpdDateTime        time.Time // Smaregi's last change of this row (second resolution)
}

// StockQuery selects the stock rows of one store.
type StockQuery struct {
	StoreID string
	// UpdatedSince, if set, returns only rows with updDateTime >= it
	// (truncated to the second). Zero reads every row.
	UpdatedSince time.Time
}

// ref is the params of a *_ref call. All conditions go in ONE object: keys of
// one object are ANDed, while how several objects combine is not known.
type refParams struct {
	TableName  string              `json:"table_name"`
	Fields     []string            `json:"fields,omitempty"`
	Conditions []map[string]string `json:"conditions,omitempty"`
	Order      []string            `json:"order,omitempty"`
	Limit      int                 `json:"limit"`
	Page       int                 `json:"page"`
}

type refEnvelope[T any] struct {
	TotalCount Flex `json:"total_count"`
	Result     []T  `json:"result"`
}

type stockWire struct {
	StoreID            Flex `json:"storeId"`
	ProductID          Flex `json:"productId"`
	StockAmount        Flex `json:"stockAmount"`
	LayawayStockAmount Flex `json:"layawayStockAmount"`
	UpdDateTime        Flex `json:"updDateTime"`
}

var stockFields = []string{"storeId", "productId", "stockAmount", "layawayStockAmount", "updDateTime"}

// stockOrder sorts by change time, then by product so that rows changed in
// the same second keep one order across pages (Smaregi's times have second
// resolution and a database gives no order among ties).
var stockOrder = []string{"updDateTime asc", "productId asc"}

// StreamStock reads a store's stock rows, oldest change first, and calls fn
// with each page of at most PageSize (1,000) rows. Memory stays flat however
// many rows the store has: one page is decoded at a time into reused
// buffers, so fn must not keep the slice (copy what it needs). An error from
// fn stops the stream and is returned as is.
//
// Paging while the shop sells: rows change while a stream runs, and a
// changed row moves to the end of the updDateTime order. Plain page numbers
// would then skip a row at every shift. StreamStock instead pages by key:
// after each page it restarts from the newest updDateTime it has delivered
// ("updDateTime >= T", page 1) and drops the rows of second T it has
// already delivered. What this guarantees:
//   - every row that exists when the stream starts and is not changed
//     during it is delivered;
//   - a row changed during the stream is delivered at least once, possibly
//     twice (old and new values); the later delivery is the newer value, so
//     apply rows in delivery order as upserts;
//   - rows created during the stream are delivered if their change time is
//     at or after the point the stream has reached.
//
// One exception: when more than one page of rows share a single second
// (e.g. a bulk import), the stream walks that second by page number, and a
// row of that second changed during the walk can shift the rest by one and
// cause one row to be missed. The periodic full reconcile covers it.
func (c *Client) StreamStock(ctx context.Context, q StockQuery, fn func(page []StockRow) error) error {
	if err := ValidateID("store", q.StoreID, 5); err != nil {
		return err
	}
	limit := c.pageSize
	// Smaregi compares whole seconds; truncating keeps the anchor at or
	// before the caller's watermark.
	anchor := q.UpdatedSince.Truncate(time.Second)
	hasAnchor := !q.UpdatedSince.IsZero()
	page := 1

	// seen holds the productIds of second seenAt already delivered; it is
	// at most one page (one tie group) large.
	seen := make(map[string]struct{})
	var seenAt time.Time

	var (
		env       refEnvelope[stockWire]
		wire      []stockWire
		out       = make([]StockRow, 0, limit)
		times     = make([]time.Time, 0, limit)
		buf       bytes.Buffer
		prevFirst stockWire
	)
	params := refParams{TableName: "Stock", Fields: stockFields, Order: stockOrder, Limit: limit}
	cond := map[string]string{"storeId": q.StoreID}
	params.Conditions = []map[string]string{cond}
	for {
		if hasAnchor {
			cond["updDateTime >="] = FormatTime(anchor)
		}
		params.Page = page
		body, err := json.Marshal(&params)
		if err != nil {
			return fmt.Errorf("smaregi stock_ref: encode params: %w", err)
		}
		clear(wire[:cap(wire)]) // encoding/json reuses elements without zeroing absent fields
		env = refEnvelope[stockWire]{Result: wire[:0]}
		if err := c.call(ctx, ProcStockRef, body, &buf, func(b []byte) error { return json.Unmarshal(b, &env) }); err != nil {
			return fmt.Errorf("read stock of store %s (page %d): %w", q.StoreID, page, err)
		}
		wire = env.Result
		n := len(wire)

		times = times[:0]
		out = out[:0]
		for i := range wire {
			row, err := wire[i].toRow(q.StoreID)
			if err != nil {
				return fmt.Errorf("read stock of store %s (page %d, row %d): %w", q.StoreID, page, i+1, err)
			}
			times = append(times, row.UpdDateTime)
			if len(seen) > 0 && row.UpdDateTime.Equal(seenAt) {
				if _, dup := seen[row.ProductID]; dup {
					continue
				}
			}
			out = append(out, row)
		}
		if n > 0 {
			// Pages after the first follow directly on the page fetched
			// before (same rows, one page on). A server that ignores "page"
			// would answer the same page again and loop forever.
			if page > 1 && wire[0].ProductID == prevFirst.ProductID && wire[0].UpdDateTime == prevFirst.UpdDateTime {
				return fmt.Errorf("smaregi stock_ref: store %s page %d repeats the page before; the server ignores paging", q.StoreID, page)
			}
			prevFirst.ProductID, prevFirst.UpdDateTime = wire[0].ProductID, wire[0].UpdDateTime
		}
		if len(out) > 0 {
			if err := fn(out); err != nil {
				return err
			}
		}
		if n < limit {
			total, err := env.TotalCount.Int64()
			if err == nil && total > int64((page-1)*limit+n) {
				// Fewer rows than asked while more exist: the server's
				// page size is smaller than ours. Failing beats silently
				// stopping short of the store's stock.
				return fmt.Errorf("smaregi stock_ref: store %s page %d returned %d rows, fewer than limit %d, but total_count is %d", q.StoreID, page, n, limit, total)
			}
			return nil
		}

		last := times[n-1]
		if !hasAnchor || last.After(anchor) {
			// Re-anchor at the newest second delivered. Its rows on this
			// page come first in the next query; remember them to skip.
			tie := 0
			for i := n - 1; i >= 0 && times[i].Equal(last); i-- {
				tie++
			}
			anchor, hasAnchor = last, true
			clear(seen)
			seenAt = last
			if tie == n {
				// The whole page is one second: page 1 of the new query
				// would be this page again, so step over it.
				page = 2
			} else {
				page = 1
				for i := n - tie; i < n; i++ {
					seen[string(wire[i].ProductID)] = struct{}{}
				}
			}
		} else {
			// The page lies entirely inside the anchor's second: walk it by
			// page number (see the exception above).
			page++
		}
	}
}

func (w *stockWire) toRow(storeID string) (StockRow, error) {
	var r StockRow
	var err error
	// The store is the one asked for; reusing the caller's string saves an
	// allocation per row.
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
	if r.UpdDateTime, err = w.UpdDateTime.Time(); err != nil {
		return r, fmt.Errorf("updDateTime: %w", err)
	}
	return r, nil
}

// CheckCredentials makes the cheapest authenticated call (a one-row
// stock_ref of the store) to prove that the contract ID, token, enabled
// functions and caller IP are accepted. Config problems come back at once
// as an *APIError (see IsConfigError); transient failures are retried.
func (c *Client) CheckCredentials(ctx context.Context, storeID string) error {
	if err := ValidateID("store", storeID, 5); err != nil {
		return err
	}
	params := refParams{
		TableName:  "Stock",
		Fields:     []string{"productId"},
		Conditions: []map[string]string{{"storeId": storeID}},
		Limit:      1,
		Page:       1,
	}
	body, err := json.Marshal(&params)
	if err != nil {
		return fmt.Errorf("smaregi stock_ref: encode params: %w", err)
	}
	var buf bytes.Buffer
	var env refEnvelope[json.RawMessage]
	if err := c.call(ctx, ProcStockRef, body, &buf, func(b []byte) error { return json.Unmarshal(b, &env) }); err != nil {
		return fmt.Errorf("check credentials for store %s: %w", storeID, err)
	}
	return nil
}

// ValidateID checks an ID before it is put in a request: Smaregi's IDs are
// digit strings of bounded length (stores 5, products 15), in both APIs.
func ValidateID(what, id string, maxDigits int) error {
	if id == "" || len(id) > maxDigits {
		return fmt.Errorf("smaregi: %s ID %q: want 1 to %d digits", what, id, maxDigits)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return fmt.Errorf("smaregi: %s ID %q: want 1 to %d digits", what, id, maxDigits)
		}
	}
	return nil
}
