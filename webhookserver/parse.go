package webhookserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
)

// errMalformed marks a send whose params do not have the shape Smaregi
// documents; the receiver answers 400 for it.
var errMalformed = errors.New("malformed params")

// parsedParams is what the receiver reads out of params before routing.
type parsedParams struct {
	rows         int
	storeIDs     []string
	stock        []StockSendRow
	transactions []TransactionHead
}

// envelope is the documented params shape of every send:
// {"data":[{"table_name":"…","rows":[{…}]}]}. Data is a pointer so a missing
// "data" can be told from an empty one.
type envelope struct {
	Data *[]struct {
		TableName *string          `json:"table_name"`
		Rows      []map[string]any `json:"rows"`
	} `json:"data"`
}

// parseParams decodes the params of a stock_send or transaction_send. It
// accepts numbers, booleans and nulls where Smaregi documents strings,
// turning them into their JSON text (null into ""), because refusing a send
// over a representation detail would make Smaregi mail the shop an error for
// data the operator does not rely on; nested objects or arrays are refused.
func parseParams(procName, params string) (parsedParams, error) {
	var out parsedParams
	if params == "" {
		return out, fmt.Errorf("%w: params is empty", errMalformed)
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(params)))
	dec.UseNumber()
	var env envelope
	if err := dec.Decode(&env); err != nil {
		return out, fmt.Errorf("%w: %s", errMalformed, jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return out, fmt.Errorf("%w: data after the JSON object", errMalformed)
	}
	if env.Data == nil {
		return out, fmt.Errorf("%w: no \"data\" array", errMalformed)
	}

	storeIDs := map[string]struct{}{}
	var details []TransactionDetail
	for ti, table := range *env.Data {
		if table.TableName == nil || *table.TableName == "" {
			return out, fmt.Errorf("%w: data[%d] has no table_name", errMalformed, ti)
		}
		for ri, raw := range table.Rows {
			if raw == nil {
				return out, fmt.Errorf("%w: data[%d].rows[%d] is not an object", errMalformed, ti, ri)
			}
			row, err := stringRow(raw)
			if err != nil {
				return out, fmt.Errorf("%w: data[%d].rows[%d]: %w", errMalformed, ti, ri, err)
			}
			out.rows++
			if id := row["storeId"]; id != "" {
				storeIDs[id] = struct{}{}
			}
			switch {
			case procName == ProcStockSend && *table.TableName == TableStock:
				out.stock = append(out.stock, stockRow(row))
			case procName == ProcTransactionSend && *table.TableName == TableTransactionHead:
				out.transactions = append(out.transactions, transactionHead(row))
			case procName == ProcTransactionSend && *table.TableName == TableTransactionDetail:
				details = append(details, transactionDetail(row))
			}
		}
	}
	out.transactions = attachDetails(out.transactions, details)

	out.storeIDs = make([]string, 0, len(storeIDs))
	for id := range storeIDs {
		out.storeIDs = append(out.storeIDs, id)
	}
	sort.Strings(out.storeIDs)
	return out, nil
}

// jsonProblem describes a decode error without echoing the input: params may
// carry customer data, which does not belong in a response or a log.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return "not JSON at offset " + strconv.FormatInt(syn.Offset, 10)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return "wrong type at " + typ.Field
		}
		return "not a JSON object"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "truncated JSON"
	default:
		return "not JSON"
	}
}

// stringRow flattens one row to strings; see parseParams for why non-string
// scalars are accepted.
func stringRow(raw map[string]any) (map[string]string, error) {
	row := make(map[string]string, len(raw))
	for k, v := range raw {
		switch v := v.(type) {
		case string:
			row[k] = v
		case json.Number:
			row[k] = v.String()
		case bool:
			row[k] = strconv.FormatBool(v)
		case nil:
			row[k] = ""
		default:
			return nil, fmt.Errorf("column %q is not a scalar", k)
		}
	}
	return row, nil
}

// take removes and returns one column, so that what is left is Other.
func take(row map[string]string, key string) string {
	v := row[key]
	delete(row, key)
	return v
}

func other(row map[string]string) map[string]string {
	if len(row) == 0 {
		return nil
	}
	return row
}

func stockRow(row map[string]string) StockSendRow {
	r := StockSendRow{
		StoreID:            take(row, "storeId"),
		ProductID:          take(row, "productId"),
		Amount:             take(row, "amount"),
		StockAmount:        take(row, "stockAmount"),
		LayawayStockAmount: take(row, "layawayStockAmount"),
		StockDivision:      take(row, "stockDivision"),
		FromStoreID:        take(row, "fromStoreId"),
		ToStoreID:          take(row, "toStoreId"),
		UpdDateTime:        take(row, "updDateTime"),
	}
	r.Other = other(row)
	return r
}

func transactionHead(row map[string]string) TransactionHead {
	h := TransactionHead{
		TransactionHeadID:       take(row, "transactionHeadId"),
		TransactionDateTime:     take(row, "transactionDateTime"),
		TransactionHeadDivision: take(row, "transactionHeadDivision"),
		CancelDivision:          take(row, "cancelDivision"),
		DisposeDivision:         take(row, "disposeDivision"),
		StoreID:                 take(row, "storeId"),
	}
	h.Other = other(row)
	return h
}

func transactionDetail(row map[string]string) TransactionDetail {
	d := TransactionDetail{
		TransactionHeadID:         take(row, "transactionHeadId"),
		TransactionDetailID:       take(row, "transactionDetailId"),
		TransactionDetailDivision: take(row, "transactionDetailDivision"),
		ProductID:                 take(row, "productId"),
		ProductCode:               take(row, "productCode"),
		Quantity:                  take(row, "quantity"),
		StoreID:                   take(row, "storeId"),
	}
	d.Other = other(row)
	return d
}

// attachDetails puts each detail under the head with its transactionHeadId.
// No captured transaction_send exists, so a detail whose head is absent from
// the send gets a synthesized head rather than a refusal: the send still
// tells the sync engine that something changed, which is all it needs.
func attachDetails(heads []TransactionHead, details []TransactionDetail) []TransactionHead {
	if len(details) == 0 {
		return heads
	}
	index := make(map[string]int, len(heads))
	for i, h := range heads {
		if _, dup := index[h.TransactionHeadID]; !dup {
			index[h.TransactionHeadID] = i
		}
	}
	for _, d := range details {
		i, ok := index[d.TransactionHeadID]
		if !ok {
			heads = append(heads, TransactionHead{TransactionHeadID: d.TransactionHeadID, StoreID: d.StoreID, Synthesized: true})
			i = len(heads) - 1
			index[d.TransactionHeadID] = i
		}
		heads[i].Details = append(heads[i].Details, d)
	}
	return heads
}
