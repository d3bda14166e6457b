package smaregiplatform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// AddStock changes one product's stock in one store by u.Amount (POST
// stock/{product_id}/add; negative subtracts) and returns the stock-history
// entry Smaregi created: its ID is what the pos:stock webhook and the
// change history carry. u.Memo (at most 100 characters) is kept in the
// history; make it unique per adjustment, so that FindChanges can tell
// whether an ambiguous add was applied. u.StockDivision must be empty or
// "15": Platform writes are always division 15.
//
// Not idempotent: it is resent only when Smaregi certainly applied nothing
// (429, or a 401 answered before a token refresh). On any other failure,
// IsAmbiguous(err) says whether it may have been applied.
func (c *Client) AddStock(ctx context.Context, u smaregi.StockUpdate) (smaregi.HistoryRow, error) {
	if err := validateChange(u, true); err != nil {
		return smaregi.HistoryRow{}, fmt.Errorf("smaregi platform stock add: %w", err)
	}
	body, err := json.Marshal(addBody{StoreID: u.StoreID, Amount: strconv.FormatInt(u.Amount, 10), Memo: u.Memo})
	if err != nil {
		return smaregi.HistoryRow{}, fmt.Errorf("smaregi platform stock add: encode body: %w", err)
	}
	target := *c.apiBase
	target.Path += "stock/" + u.ProductID + "/add"
	var ans changeWire
	var buf bytes.Buffer
	_, err = c.do(ctx, request{call: CallStockAdd, method: http.MethodPost, url: target.String(), body: body}, &buf,
		func(b []byte) error { return json.Unmarshal(b, &ans) })
	if err != nil {
		return smaregi.HistoryRow{}, fmt.Errorf("add %d to product %s in store %s: %w", u.Amount, u.ProductID, u.StoreID, err)
	}
	h, err := ans.toRow()
	if err != nil {
		// Smaregi answered 200: the change was made, but the answer is
		// unreadable, so the caller must look it up like a lost answer.
		return h, fmt.Errorf("add to product %s in store %s: %w", u.ProductID, u.StoreID,
			&TransportError{Call: CallStockAdd, MaybeSent: true, Err: fmt.Errorf("decode answer: %w", err)})
	}
	return h, nil
}

type addBody struct {
	StoreID string `json:"storeId"`
	Amount  string `json:"amount"`
	Memo    string `json:"memo,omitempty"`
}

type bulkRow struct {
	ProductID string `json:"productId"`
	StoreID   string `json:"storeId"`
	Amount    string `json:"amount"`
	Memo      string `json:"memo,omitempty"`
}

type bulkBody struct {
	CallbackURL string    `json:"callbackUrl"`
	Stocks      []bulkRow `json:"stocks"`
}

// AddStockBulk sends up to MaxBulkRows relative changes in one request
// (POST stock/add/bulk) and returns Smaregi's request ID. Smaregi applies
// the rows later, each on its own, and POSTs the outcome (a BulkCallback,
// see DecodeBulkCallback) to callbackURL, which the operator serves. An
// amount of 0 is refused. Every row is checked before anything is sent.
//
// Exactly-once: a failed send is ambiguous as for AddStock (the request
// may have been accepted); resolve each row by its memo with FindChanges,
// and keep memos unique per row.
func (c *Client) AddStockBulk(ctx context.Context, callbackURL string, rows []smaregi.StockUpdate) (string, error) {
	cb, err := url.Parse(callbackURL)
	if err != nil || (cb.Scheme != "https" && cb.Scheme != "http") || cb.Host == "" {
		return "", errors.New("smaregi platform bulk add: the callback URL must be an absolute http(s) URL")
	}
	if len(rows) == 0 || len(rows) > MaxBulkRows {
		return "", fmt.Errorf("smaregi platform bulk add: %d rows, want 1 to %d", len(rows), MaxBulkRows)
	}
	b := bulkBody{CallbackURL: callbackURL, Stocks: make([]bulkRow, len(rows))}
	for i, u := range rows {
		if err := validateChange(u, false); err != nil {
			return "", fmt.Errorf("smaregi platform bulk add: row %d: %w", i, err)
		}
		b.Stocks[i] = bulkRow{ProductID: u.ProductID, StoreID: u.StoreID, Amount: strconv.FormatInt(u.Amount, 10), Memo: u.Memo}
	}
	body, err := json.Marshal(&b)
	if err != nil {
		return "", fmt.Errorf("smaregi platform bulk add: encode body: %w", err)
	}
	target := *c.apiBase
	target.Path += "stock/add/bulk"
	var ans struct {
		RequestID smaregi.Flex `json:"requestId"`
	}
	var buf bytes.Buffer
	_, err = c.do(ctx, request{call: CallStockBulk, method: http.MethodPost, url: target.String(), body: body}, &buf,
		func(b []byte) error { return json.Unmarshal(b, &ans) })
	if err != nil {
		return "", fmt.Errorf("bulk add of %d rows: %w", len(rows), err)
	}
	if ans.RequestID == "" {
		return "", fmt.Errorf("bulk add of %d rows: %w", len(rows),
			&TransportError{Call: CallStockBulk, MaybeSent: true, Err: errors.New("answer without requestId")})
	}
	return string(ans.RequestID), nil
}

func validateChange(u smaregi.StockUpdate, allowZero bool) error {
	if err := smaregi.ValidateID("store", u.StoreID, 5); err != nil {
		return err
	}
	if err := smaregi.ValidateID("product", u.ProductID, 15); err != nil {
		return err
	}
	if u.StockDivision != "" && u.StockDivision != smaregi.DefaultStockDivision {
		return fmt.Errorf("stock division %q: Platform writes are always %s", u.StockDivision, smaregi.DefaultStockDivision)
	}
	if !allowZero && u.Amount == 0 {
		return errors.New("amount 0: a bulk relative change must not be 0")
	}
	if n := utf8.RuneCountInString(u.Memo); n > MaxMemo {
		return fmt.Errorf("memo of %d characters, at most %d", n, MaxMemo)
	}
	if !utf8.ValidString(u.Memo) {
		return errors.New("memo is not valid UTF-8")
	}
	return nil
}

// Bulk outcome values.
const (
	BulkCompleted    = "completed"
	BulkRowSucceeded = "succeeded"
	BulkRowFailed    = "failed"
	maxCallbackBytes = 1 << 20
)

// BulkCallback is the body Smaregi POSTs to a bulk request's callbackUrl.
type BulkCallback struct {
	RequestID  string
	ContractID string
	Status     string // BulkCompleted
	Results    []BulkResult
}

// BulkResult is the outcome of one row of a bulk request.
type BulkResult struct {
	Index          int // the row's index in the request
	StoreID        string
	ProductID      string
	Status         string // BulkRowSucceeded or BulkRowFailed
	StockHistoryID string // set when the row succeeded
	Detail         string // why it failed
}

type callbackWire struct {
	RequestID  smaregi.Flex `json:"requestId"`
	ContractID smaregi.Flex `json:"contractId"`
	Status     smaregi.Flex `json:"status"`
	Results    []struct {
		Index          smaregi.Flex `json:"index"`
		StoreID        smaregi.Flex `json:"storeId"`
		ProductID      smaregi.Flex `json:"productId"`
		Status         smaregi.Flex `json:"status"`
		StockHistoryID smaregi.Flex `json:"stockHistoryId"`
		Detail         smaregi.Flex `json:"detail"`
	} `json:"results"`
}

// DecodeBulkCallback reads a bulk callback body (at most 1 MiB). It checks
// the shape only: the receiver must still match RequestID and ContractID to
// a request it sent, as anyone who learns the callback URL can post to it.
func DecodeBulkCallback(r io.Reader) (*BulkCallback, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCallbackBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read bulk callback: %w", err)
	}
	if len(b) > maxCallbackBytes {
		return nil, fmt.Errorf("bulk callback larger than %d bytes", maxCallbackBytes)
	}
	var w callbackWire
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, fmt.Errorf("decode bulk callback: %w", err)
	}
	if w.RequestID == "" {
		return nil, errors.New("bulk callback without requestId")
	}
	if len(w.Results) > MaxBulkRows {
		return nil, fmt.Errorf("bulk callback with %d results, at most %d", len(w.Results), MaxBulkRows)
	}
	cb := &BulkCallback{RequestID: string(w.RequestID), ContractID: string(w.ContractID), Status: string(w.Status),
		Results: make([]BulkResult, len(w.Results))}
	for i, res := range w.Results {
		idx, err := res.Index.Int64()
		if err != nil || idx < 0 || idx >= MaxBulkRows {
			return nil, fmt.Errorf("bulk callback result %d: index %q out of range", i, string(res.Index))
		}
		st := string(res.Status)
		if st != BulkRowSucceeded && st != BulkRowFailed {
			return nil, fmt.Errorf("bulk callback result %d: unknown status %q", i, st)
		}
		if st == BulkRowSucceeded && res.StockHistoryID == "" {
			return nil, fmt.Errorf("bulk callback result %d: succeeded without stockHistoryId", i)
		}
		cb.Results[i] = BulkResult{Index: int(idx), StoreID: string(res.StoreID), ProductID: string(res.ProductID),
			Status: st, StockHistoryID: string(res.StockHistoryID), Detail: string(res.Detail)}
	}
	return cb, nil
}
