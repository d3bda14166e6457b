package smaregisim

import (
	"strconv"
)

// record is a row of a readable table.
type record interface {
	str(col string) string
	num(col string) int64 // only for numeric columns
}

type tableDef struct {
	name    string
	cols    []string // all columns, in the default field order
	numeric map[string]bool
}

func (t *tableDef) has(col string) bool {
	for _, c := range t.cols {
		if c == col {
			return true
		}
	}
	return false
}

var (
	stockTable = &tableDef{name: "Stock",
		cols:    []string{"storeId", "productId", "stockAmount", "layawayStockAmount", "updDateTime"},
		numeric: map[string]bool{"storeId": true, "productId": true, "stockAmount": true, "layawayStockAmount": true}}
	historyTable = &tableDef{name: "StockHistory",
		cols: []string{"id", "updDateTime", "targetDateTime", "productId", "storeId", "amount",
			"stockAmount", "stockDivision", "fromStoreId", "toStoreId", "memo"},
		numeric: map[string]bool{"id": true, "productId": true, "storeId": true, "amount": true, "stockAmount": true}}
	// historyNoMemoTable is StockHistory of a Smaregi without memos
	// (Behaviour.Memo == MemoRejected).
	historyNoMemoTable = &tableDef{name: "StockHistory",
		cols:    historyTable.cols[: len(historyTable.cols)-1 : len(historyTable.cols)-1],
		numeric: historyTable.numeric}
	productTable = &tableDef{name: "Product",
		cols:    []string{"productId", "productCode", "productName", "price"},
		numeric: map[string]bool{"productId": true, "price": true}}
)

func (r *stockRow) str(col string) string {
	switch col {
	case "storeId":
		return r.storeStr
	case "productId":
		return r.prodStr
	case "stockAmount":
		return strconv.FormatInt(r.amount, 10)
	case "layawayStockAmount":
		return strconv.FormatInt(r.layaway, 10)
	case "updDateTime":
		return r.upd
	}
	return ""
}

func (r *stockRow) num(col string) int64 {
	switch col {
	case "storeId":
		return r.storeID
	case "productId":
		return r.productID
	case "stockAmount":
		return r.amount
	case "layawayStockAmount":
		return r.layaway
	}
	return 0
}

func (h *historyRow) str(col string) string {
	switch col {
	case "id":
		return strconv.FormatInt(h.ID, 10)
	case "updDateTime":
		return h.UpdDateTime
	case "targetDateTime":
		return h.TargetDateTime
	case "productId":
		return h.ProductID
	case "storeId":
		return h.StoreID
	case "amount":
		return strconv.FormatInt(h.Amount, 10)
	case "stockAmount":
		return strconv.FormatInt(h.StockAmount, 10)
	case "stockDivision":
		return h.StockDivision
	case "fromStoreId":
		return h.FromStoreID
	case "toStoreId":
		return h.ToStoreID
	case "memo":
		return h.Memo
	}
	return ""
}

func (h *historyRow) num(col string) int64 {
	switch col {
	case "id":
		return h.ID
	case "productId":
		return h.productID
	case "storeId":
		return h.storeID
	case "amount":
		return h.Amount
	case "stockAmount":
		return h.StockAmount
	}
	return 0
}

func (p *product) str(col string) string {
	switch col {
	case "productId":
		return p.ProductID
	case "productCode":
		return p.ProductCode
	case "productName":
		return p.ProductName
	case "price":
		return strconv.FormatInt(p.Price, 10)
	}
	return ""
}

func (p *product) num(col string) int64 {
	switch col {
	case "productId":
		return p.id
	case "price":
		return p.Price
	}
	return 0
}
