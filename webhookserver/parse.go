package webhookserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// errMalformed marks a send whose params do not have the shape Smaregi
// documents; the receiver answers 400 for it.
var errMalformed = errors.New("malformed params")

// errTooManyRows marks a send with more rows than Options.MaxRows; the
// receiver answers 413 for it.
var errTooManyRows = errors.New("too many rows")

// parsedParams is what the receiver reads out of params before routing.
type parsedParams struct {
	rows         int
	storeIDs     []string
	stock        []StockSendRow
	transactions []TransactionHead
}

// parseParams decodes the params of a stock_send or transaction_send,
// {"data":[{"table_name":"…","rows":[{…}]}]}. It accepts numbers, booleans
// and nulls where Smaregi documents strings, turning them into their JSON
// text (null into ""), because refusing a send over a representation detail
// would make Smaregi mail the shop an error for data the operator does not
// rely on; nested objects or arrays are refused. More than maxRows rows in
// all (0: no limit) is errTooManyRows.
//
// Memory is the point of this shape: the input is validated once
// (json.Valid allocates nothing) and then walked in place, each row decoded
// straight into its typed value. A generic decode cost a map[string]any and
// a map[string]string per row, over 100 times a send's size; here a row
// costs its typed struct and its strings, and maxRows bounds the rows.
// Field names of the envelope match case-insensitively and the last of
// duplicate keys wins, as with encoding/json.
func parseParams(procName string, params []byte, maxRows int) (parsedParams, error) {
	var out parsedParams
	if len(params) == 0 {
		return out, fmt.Errorf("%w: params is empty", errMalformed)
	}
	if !json.Valid(params) {
		return out, fmt.Errorf("%w: %s", errMalformed, jsonProblem(params))
	}
	w := walker{b: params}
	w.space()
	if w.peek() != '{' {
		return out, fmt.Errorf("%w: not a JSON object", errMalformed)
	}
	// The last "data" wins, so only its offset is kept.
	dataAt := -1
	if err := w.object(func(key []byte) error {
		if strings.EqualFold(string(key), "data") {
			dataAt = w.i
		}
		w.skip()
		return nil
	}); err != nil {
		return out, err
	}
	if dataAt < 0 {
		return out, fmt.Errorf("%w: no \"data\" array", errMalformed)
	}
	w.i = dataAt
	switch w.peek() {
	case 'n':
		return out, fmt.Errorf("%w: no \"data\" array", errMalformed)
	case '[':
	default:
		return out, fmt.Errorf("%w: wrong type at data", errMalformed)
	}

	p := rowParser{procName: procName, maxRows: maxRows, storeIDs: map[string]struct{}{},
		anyStoreColumn: procName != ProcStockSend && procName != ProcTransactionSend}
	ti := 0
	if err := w.array(func() error {
		err := p.table(&w, ti)
		ti++
		return err
	}); err != nil {
		return out, err
	}
	out.rows = p.rows
	out.stock = p.stock
	out.transactions = attachDetails(p.heads, p.details)
	out.storeIDs = make([]string, 0, len(p.storeIDs))
	for id := range p.storeIDs {
		out.storeIDs = append(out.storeIDs, id)
	}
	sort.Strings(out.storeIDs)
	return out, nil
}

// jsonProblem describes invalid JSON without echoing the input: params may
// carry customer data, which does not belong in a response or a log.
func jsonProblem(params []byte) string {
	var v struct{}
	err := json.Unmarshal(params, &v)
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		if syn.Offset >= int64(len(params)) {
			return "truncated JSON"
		}
		return fmt.Sprintf("not JSON at offset %d", syn.Offset)
	}
	return "not JSON"
}

// tableKind says where a table's rows go.
type tableKind int

const (
	tableCounted tableKind = iota // rows only counted (and their storeId noted)
	tableStock
	tableHead
	tableDetail
)

// rowParser accumulates the rows of one params.
type rowParser struct {
	procName string
	// anyStoreColumn: a send of another kind, whose tables no document
	// describes. Every column that looks like a store ID (storeColumn)
	// names a store, so a transfer names both of its ends.
	anyStoreColumn bool
	maxRows        int
	rows           int
	storeIDs       map[string]struct{}
	stock          []StockSendRow
	heads          []TransactionHead
	details        []TransactionDetail
}

// table decodes data[ti]: it finds table_name and the last "rows" first (a
// table's keys may come in any order), then decodes the rows in place.
func (p *rowParser) table(w *walker, ti int) error {
	switch w.peek() {
	case '{':
	case 'n':
		return fmt.Errorf("%w: data[%d] has no table_name", errMalformed, ti)
	default:
		return fmt.Errorf("%w: wrong type at data.table_name", errMalformed)
	}
	nameAt, rowsAt := -1, -1
	if err := w.object(func(key []byte) error {
		switch {
		case strings.EqualFold(string(key), "table_name"):
			nameAt = w.i
		case strings.EqualFold(string(key), "rows"):
			rowsAt = w.i
		}
		w.skip()
		return nil
	}); err != nil {
		return err
	}
	end := w.i
	var name string
	if nameAt >= 0 {
		w.i = nameAt
		switch w.peek() {
		case '"':
			name = w.str()
		case 'n':
		default:
			return fmt.Errorf("%w: wrong type at data.table_name", errMalformed)
		}
	}
	if name == "" {
		return fmt.Errorf("%w: data[%d] has no table_name", errMalformed, ti)
	}
	if rowsAt >= 0 {
		w.i = rowsAt
		switch w.peek() {
		case 'n':
		case '[':
			kind := p.kindOf(name)
			ri := 0
			if err := w.array(func() error {
				err := p.row(w, kind, ti, ri)
				ri++
				return err
			}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: wrong type at data.rows", errMalformed)
		}
	}
	w.i = end
	return nil
}

func (p *rowParser) kindOf(table string) tableKind {
	switch {
	case p.procName == ProcStockSend && table == TableStock:
		return tableStock
	case p.procName == ProcTransactionSend && table == TableTransactionHead:
		return tableHead
	case p.procName == ProcTransactionSend && table == TableTransactionDetail:
		return tableDetail
	}
	return tableCounted
}

// row decodes one row into the typed value of its table. Named columns go
// to their fields; the others to Other, allocated only when there are any.
func (p *rowParser) row(w *walker, kind tableKind, ti, ri int) error {
	switch w.peek() {
	case '{':
	case 'n':
		return fmt.Errorf("%w: data[%d].rows[%d] is not an object", errMalformed, ti, ri)
	default:
		return fmt.Errorf("%w: wrong type at data.rows", errMalformed)
	}
	p.rows++
	if p.maxRows > 0 && p.rows > p.maxRows {
		return fmt.Errorf("%w: more than %d rows in one send", errTooManyRows, p.maxRows)
	}
	var (
		storeID string
		other   map[string]string
		sr      StockSendRow
		th      TransactionHead
		td      TransactionDetail
	)
	err := w.object(func(key []byte) error {
		var v string
		switch w.peek() {
		case '"':
			v = w.str()
		case 't':
			v = "true"
			w.i += 4
		case 'f':
			v = "false"
			w.i += 5
		case 'n':
			w.i += 4
		case '{', '[':
			return fmt.Errorf("%w: data[%d].rows[%d]: column %q is not a scalar", errMalformed, ti, ri, unquote(key))
		default:
			v = w.number()
		}
		k := key
		if needsDecoding(k) {
			k = []byte(unquote(key)) // rare: Smaregi sends plain names
		}
		if string(k) == "storeId" {
			storeID = v
		} else if p.anyStoreColumn && v != "" && storeColumn(k) {
			p.storeIDs[v] = struct{}{}
		}
		var named bool
		switch kind {
		case tableStock:
			named = sr.set(k, v)
		case tableHead:
			named = th.set(k, v)
		case tableDetail:
			named = td.set(k, v)
		default:
			return nil
		}
		if !named {
			if other == nil {
				other = map[string]string{}
			}
			other[string(k)] = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	if storeID != "" {
		if _, ok := p.storeIDs[storeID]; !ok {
			p.storeIDs[storeID] = struct{}{}
		}
	}
	switch kind {
	case tableStock:
		sr.Other = other
		p.stock = append(p.stock, sr)
	case tableHead:
		th.Other = other
		p.heads = append(p.heads, th)
	case tableDetail:
		td.Other = other
		p.details = append(p.details, td)
	}
	return nil
}

// storeColumn reports whether a column of a send of another kind names a
// store: storeId (matched exactly above), and tolerantly any spelling of
// storeId, store_id, fromStoreId and toStoreId (stock_send's transfer
// columns, which 出庫/入庫 sends likely share). Nothing else is read from such
// a send: it is an edge that triggers a pull, never a source of stock.
func storeColumn(k []byte) bool {
	if len(k) < len("storeId") || len(k) > len("from_store_id") {
		return false
	}
	for _, c := range [...]string{"storeId", "store_id", "fromStoreId", "toStoreId", "from_store_id", "to_store_id"} {
		if strings.EqualFold(string(k), c) {
			return true
		}
	}
	return false
}

// set assigns a named column and reports whether k is one.
// Switching on string(k) compares without allocating a string.
func (r *StockSendRow) set(k []byte, v string) bool {
	switch string(k) {
	case "storeId":
		r.StoreID = v
	case "productId":
		r.ProductID = v
	case "amount":
		r.Amount = v
	case "stockAmount":
		r.StockAmount = v
	case "layawayStockAmount":
		r.LayawayStockAmount = v
	case "stockDivision":
		r.StockDivision = v
	case "fromStoreId":
		r.FromStoreID = v
	case "toStoreId":
		r.ToStoreID = v
	case "updDateTime":
		r.UpdDateTime = v
	default:
		return false
	}
	return true
}

func (h *TransactionHead) set(k []byte, v string) bool {
	switch string(k) {
	case "transactionHeadId":
		h.TransactionHeadID = v
	case "transactionDateTime":
		h.TransactionDateTime = v
	case "transactionHeadDivision":
		h.TransactionHeadDivision = v
	case "cancelDivision":
		h.CancelDivision = v
	case "disposeDivision":
		h.DisposeDivision = v
	case "storeId":
		h.StoreID = v
	default:
		return false
	}
	return true
}

func (d *TransactionDetail) set(k []byte, v string) bool {
	switch string(k) {
	case "transactionHeadId":
		d.TransactionHeadID = v
	case "transactionDetailId":
		d.TransactionDetailID = v
	case "transactionDetailDivision":
		d.TransactionDetailDivision = v
	case "productId":
		d.ProductID = v
	case "productCode":
		d.ProductCode = v
	case "quantity":
		d.Quantity = v
	case "storeId":
		d.StoreID = v
	default:
		return false
	}
	return true
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
