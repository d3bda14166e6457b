package smaregisim

import (
	"errors"
	"fmt"
	"strconv"
)

// SaleLine is one line of a sale; a negative quantity is a return.
type SaleLine struct {
	ProductID string `json:"productId"`
	Quantity  int64  `json:"quantity"`
}

// StockMovement is a back-office stock change (receiving, stocktake, loss,
// transfer …) made in Smaregi's admin screen.
type StockMovement struct {
	StoreID   string `json:"storeId"`
	ProductID string `json:"productId"`
	// Amount is the change, or the new stock when Absolute is set.
	Amount        int64  `json:"amount"`
	Absolute      bool   `json:"absolute,omitempty"`
	StockDivision string `json:"stockDivision"`
	FromStoreID   string `json:"fromStoreId,omitempty"`
	ToStoreID     string `json:"toStoreId,omitempty"`
	Memo          string `json:"memo,omitempty"`
	// SendAs, when set, is the proc_name of the send the movement queues
	// instead of stock_send (it must be switched on in SendConfig.Functions):
	// a stand-in for the send functions Smaregi has besides stock_send and
	// transaction_send (layaway, 出庫/入庫 transfers, losses, stocktakes),
	// whose real proc_names and tables no public document gives. Its params
	// hold one table, OtherSendTable, with one row naming the store (and the
	// transfer's ends) and the product, but no stock figure.
	SendAs string `json:"sendAs,omitempty"`
}

// OtherSendTable is the table_name of a send queued by a StockMovement's
// SendAs.
const OtherSendTable = "StockMovement"

// Transaction is a rung-up sale as the simulator keeps it.
type Transaction struct {
	TransactionHeadID   string     `json:"transactionHeadId"`
	TransactionDateTime string     `json:"transactionDateTime"`
	StoreID             string     `json:"storeId"`
	Cancelled           bool       `json:"cancelled"`
	Lines               []SaleLine `json:"lines"`
}

type transaction struct {
	id        string
	at        string
	store     *storeState
	lines     []txLine
	cancelled bool
}

type txLine struct {
	p   *product
	qty int64
}

// Stock divisions the shop side uses.
const (
	DivisionSale = "02" // 売上: sales, returns and voids at the register
	DivisionAPI  = "15" // スマレジAPI連携
)

// ErrAlreadyVoided is returned when voiding a voided transaction.
var ErrAlreadyVoided = errors.New("smaregisim: transaction already voided")

// Sale rings up a sale (and returns, for negative quantities) at a store's
// register: stock changes with stockDivision 02, and transaction_send and
// stock_send are queued when switched on. It returns the transactionHeadId.
func (s *Server) Sale(storeID string, lines []SaleLine) (string, error) {
	if len(lines) == 0 {
		return "", errors.New("smaregisim: a sale needs at least one line")
	}
	s.mu.Lock()
	ss, err := s.store(storeID)
	if err != nil {
		s.mu.Unlock()
		return "", fmt.Errorf("smaregisim: sale: %w", err)
	}
	tx := &transaction{store: ss}
	for i, l := range lines {
		p, err := s.product(l.ProductID)
		if err != nil {
			s.mu.Unlock()
			return "", fmt.Errorf("smaregisim: sale line %d: %w", i+1, err)
		}
		if l.Quantity == 0 {
			s.mu.Unlock()
			return "", fmt.Errorf("smaregisim: sale line %d: quantity 0", i+1)
		}
		tx.lines = append(tx.lines, txLine{p: p, qty: l.Quantity})
	}
	now := s.clock()
	s.nextTx++
	tx.id = strconv.FormatInt(s.nextTx, 10)
	tx.at = FormatTime(now)
	s.txs[tx.id] = tx
	s.txOrder = append(s.txOrder, tx)
	hist := make([]*historyRow, 0, len(tx.lines))
	for _, l := range tx.lines {
		hist = append(hist, s.st.apply(change{store: ss, product: l.p, value: -l.qty, division: DivisionSale}, now))
	}
	txParams := s.transactionParams(tx)
	s.mu.Unlock()
	s.enqueue("transaction_send", txParams)
	s.sendStock(hist)
	s.saleWebhooks(WebhookActionCreated, tx.id, ss.idStr, hist)
	return tx.id, nil
}

// Void cancels a sale (cancelDivision 1) and restores its stock.
func (s *Server) Void(transactionHeadID string) error {
	s.mu.Lock()
	tx := s.txs[transactionHeadID]
	if tx == nil {
		s.mu.Unlock()
		return fmt.Errorf("smaregisim: void: %w: transaction %q", ErrNotFound, transactionHeadID)
	}
	if tx.cancelled {
		s.mu.Unlock()
		return ErrAlreadyVoided
	}
	tx.cancelled = true
	now := s.clock()
	hist := make([]*historyRow, 0, len(tx.lines))
	for _, l := range tx.lines {
		hist = append(hist, s.st.apply(change{store: tx.store, product: l.p, value: l.qty, division: DivisionSale}, now))
	}
	txParams := s.transactionParams(tx)
	s.mu.Unlock()
	s.enqueue("transaction_send", txParams)
	s.sendStock(hist)
	s.saleWebhooks(WebhookActionCanceled, tx.id, tx.store.idStr, hist)
	return nil
}

// Transactions returns every transaction, oldest first.
func (s *Server) Transactions() []Transaction {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Transaction, 0, len(s.txOrder))
	for _, tx := range s.txOrder {
		t := Transaction{TransactionHeadID: tx.id, TransactionDateTime: tx.at,
			StoreID: tx.store.idStr, Cancelled: tx.cancelled}
		for _, l := range tx.lines {
			t.Lines = append(t.Lines, SaleLine{ProductID: l.p.ProductID, Quantity: l.qty})
		}
		out = append(out, t)
	}
	return out
}

// StockMovement applies a back-office change and queues stock_send.
func (s *Server) StockMovement(m StockMovement) (HistoryRow, error) {
	if !stockDivisions[m.StockDivision] {
		return HistoryRow{}, fmt.Errorf("smaregisim: stock movement: stockDivision %q is not valid", m.StockDivision)
	}
	if m.SendAs != "" && !validOtherSend(m.SendAs) {
		return HistoryRow{}, fmt.Errorf("smaregisim: stock movement: sendAs %q is not another send function (lower case, ending in _send)", m.SendAs)
	}
	s.mu.Lock()
	ss, err := s.store(m.StoreID)
	if err != nil {
		s.mu.Unlock()
		return HistoryRow{}, fmt.Errorf("smaregisim: stock movement: %w", err)
	}
	p, err := s.product(m.ProductID)
	if err != nil {
		s.mu.Unlock()
		return HistoryRow{}, fmt.Errorf("smaregisim: stock movement: %w", err)
	}
	h := s.st.apply(change{store: ss, product: p, absolute: m.Absolute, value: m.Amount,
		division: m.StockDivision, from: m.FromStoreID, to: m.ToStoreID, memo: m.Memo}, s.clock())
	s.mu.Unlock()
	if m.SendAs != "" {
		s.sendOther(m.SendAs, h)
	} else {
		s.sendStock([]*historyRow{h})
	}
	s.stockWebhook(WebhookActionEdited, []*historyRow{h})
	return h.HistoryRow, nil
}

// sendOther queues a send of another kind for a change (StockMovement.SendAs).
func (s *Server) sendOther(proc string, h *historyRow) {
	w := &jsonWriter{ascii: !s.beh.RawUnicode}
	w.raw(`{"data":[{"table_name":"` + OtherSendTable + `","rows":[`)
	kv(w, "storeId", h.StoreID, "productId", h.ProductID, "fromStoreId", h.FromStoreID,
		"toStoreId", h.ToStoreID, "updDateTime", h.UpdDateTime)
	w.raw("]}]}")
	s.enqueue(proc, string(w.buf))
}

// sendStock queues one stock_send carrying the given changes.
func (s *Server) sendStock(hist []*historyRow) {
	if len(hist) == 0 {
		return
	}
	w := &jsonWriter{ascii: !s.beh.RawUnicode}
	w.raw(`{"data":[{"table_name":"Stock","rows":[`)
	for i, h := range hist {
		if i > 0 {
			w.raw(",")
		}
		kv(w, "storeId", h.StoreID, "productId", h.ProductID,
			"amount", strconv.FormatInt(h.Amount, 10),
			"stockAmount", strconv.FormatInt(h.StockAmount, 10),
			"layawayStockAmount", strconv.FormatInt(h.layaway, 10),
			"stockDivision", h.StockDivision, "fromStoreId", h.FromStoreID,
			"toStoreId", h.ToStoreID, "updDateTime", h.UpdDateTime)
	}
	w.raw("]}]}")
	s.enqueue("stock_send", string(w.buf))
}

// kv writes a JSON object of string pairs in the given order.
func kv(w *jsonWriter, pairs ...string) {
	w.raw("{")
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			w.raw(",")
		}
		w.str(pairs[i])
		w.raw(":")
		w.str(pairs[i+1])
	}
	w.raw("}")
}

// transactionParams renders a transaction_send payload. The caller holds
// the lock.
func (s *Server) transactionParams(tx *transaction) string {
	var total, qty, returned int64
	for _, l := range tx.lines {
		total += l.qty * l.p.Price
		if l.qty > 0 {
			qty += l.qty
		} else {
			returned -= l.qty
		}
	}
	cancel := "0"
	if tx.cancelled {
		cancel = "1"
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	w := &jsonWriter{ascii: !s.beh.RawUnicode}
	w.raw(`{"data":[{"table_name":"TransactionHead","rows":[`)
	kv(w, "transactionHeadId", tx.id, "transactionDateTime", tx.at,
		"transactionHeadDivision", "1", "cancelDivision", cancel, "disposeDivision", "0",
		"storeId", tx.store.idStr, "terminalId", "1", "terminalTranId", tx.id,
		"subtotal", itoa(total), "total", itoa(total), "amount", itoa(qty),
		"returnAmount", itoa(returned), "updDateTime", FormatTime(s.clock()))
	w.raw(`]},{"table_name":"TransactionDetail","rows":[`)
	for i, l := range tx.lines {
		if i > 0 {
			w.raw(",")
		}
		div, q := "1", l.qty
		if q < 0 {
			div, q = "2", -q
		}
		kv(w, "transactionHeadId", tx.id, "transactionDetailId", strconv.Itoa(i+1),
			"transactionDetailDivision", div, "productId", l.p.ProductID,
			"productCode", l.p.ProductCode, "productName", l.p.ProductName,
			"price", itoa(l.p.Price), "salesPrice", itoa(l.p.Price), "quantity", itoa(q))
	}
	w.raw("]}]}")
	return string(w.buf)
}
