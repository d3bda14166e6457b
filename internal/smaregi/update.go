package smaregi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// UpdateMode selects how stock_upd treats amounts (proc_detail_division).
type UpdateMode int

const (
	// Absolute sets the stock to the amount ("1").
	Absolute UpdateMode = 1
	// Relative adds the amount, negative subtracts ("2"). Not idempotent.
	Relative UpdateMode = 2
)

// DefaultStockDivision labels API writes in Smaregi's stock history
// (15 = スマレジAPI連携).
const DefaultStockDivision = "15"

// StockUpdate is one row of a stock update.
type StockUpdate struct {
	StoreID   string
	ProductID string
	// Amount is the new stock (Absolute) or the change (Relative).
	Amount int64
	// StockDivision defaults to DefaultStockDivision.
	StockDivision string
	// Memo is sent when set; Smaregi keeps it in the stock history where
	// supported, which makes a write recognisable when resolving ambiguity.
	Memo string
}

// UpdateResult reports a completed UpdateStock call.
type UpdateResult struct {
	Batches int // calls made
	Rows    int // rows Smaregi reported as processed, summed over batches
}

type updParams struct {
	ProcInfo struct {
		ProcDivision       string `json:"proc_division"`
		ProcDetailDivision string `json:"proc_detail_division"`
	} `json:"proc_info"`
	Data [1]updTable `json:"data"`
}

type updTable struct {
	TableName string   `json:"table_name"`
	Rows      []updRow `json:"rows"`
}

type updRow struct {
	StoreID       string `json:"storeId"`
	ProductID     string `json:"productId"`
	StockAmount   string `json:"stockAmount"`
	StockDivision string `json:"stockDivision"`
	Memo          string `json:"memo,omitempty"`
}

type updAnswer struct {
	Result map[string]Flex `json:"result"`
}

// UpdateStock writes rows with stock_upd in batches of at most BatchSize
// (500) rows, sent one after another in the given order. Every row is
// checked before anything is sent. Writes are never retried: on failure the
// error is an *UpdateError telling which batches were applied, which batch
// failed and whether that failure is ambiguous (IsAmbiguous: it may have
// been applied; read StockHistory before trying again). Batches after the
// failed one are not sent.
func (c *Client) UpdateStock(ctx context.Context, mode UpdateMode, rows []StockUpdate) (UpdateResult, error) {
	var res UpdateResult
	if mode != Absolute && mode != Relative {
		return res, fmt.Errorf("smaregi stock_upd: unknown update mode %d", mode)
	}
	for i, r := range rows {
		if err := validateUpdate(r); err != nil {
			return res, fmt.Errorf("smaregi stock_upd: row %d: %w", i, err)
		}
	}
	if len(rows) == 0 {
		return res, nil
	}
	var params updParams
	params.ProcInfo.ProcDivision = "U"
	params.ProcInfo.ProcDetailDivision = strconv.Itoa(int(mode))
	params.Data[0].TableName = "Stock"
	batch := make([]updRow, 0, min(c.batchSize, len(rows)))
	batches := (len(rows) + c.batchSize - 1) / c.batchSize
	var buf bytes.Buffer
	for b := 0; b < batches; b++ {
		first := b * c.batchSize
		end := min(first+c.batchSize, len(rows))
		batch = batch[:0]
		for _, r := range rows[first:end] {
			div := r.StockDivision
			if div == "" {
				div = DefaultStockDivision
			}
			batch = append(batch, updRow{
				StoreID:       r.StoreID,
				ProductID:     r.ProductID,
				StockAmount:   strconv.FormatInt(r.Amount, 10),
				StockDivision: div,
				Memo:          r.Memo,
			})
		}
		params.Data[0].Rows = batch
		body, err := json.Marshal(&params)
		if err != nil {
			return res, &UpdateError{Applied: b, Batch: b, Batches: batches, FirstRow: first, EndRow: end,
				Err: fmt.Errorf("encode params: %w", err)}
		}
		var ans updAnswer
		err = c.call(ctx, ProcStockUpd, body, &buf, func(body []byte) error { return json.Unmarshal(body, &ans) })
		if err != nil {
			return res, &UpdateError{Applied: b, Batch: b, Batches: batches, FirstRow: first, EndRow: end, Err: err}
		}
		res.Batches++
		if n, err := ans.Result["Stock"].Int64(); err == nil {
			res.Rows += int(n)
		}
	}
	return res, nil
}

func validateUpdate(r StockUpdate) error {
	if err := ValidateID("store", r.StoreID, 5); err != nil {
		return err
	}
	if err := ValidateID("product", r.ProductID, 15); err != nil {
		return err
	}
	if d := r.StockDivision; d != "" && (len(d) != 2 || d[0] < '0' || d[0] > '9' || d[1] < '0' || d[1] > '9') {
		return fmt.Errorf("stock division %q: want two digits such as %q", d, DefaultStockDivision)
	}
	return nil
}
