package webhookserver

import (
	"context"
	"time"

	"k8s.io/apimachinery/pkg/types"
)

// Proc names of Smaregi's API送信 that the receiver parses and hands on.
const (
	ProcStockSend       = "stock_send"
	ProcTransactionSend = "transaction_send"
)

// Values of the kind label of smaregi_receiver_sends_total: the proc_names
// above by name, every other proc_name as KindOther, so that the label never
// carries what a sender chooses.
const (
	KindStockSend       = ProcStockSend
	KindTransactionSend = ProcTransactionSend
	KindOther           = "other"
)

// Values of the pull label of smaregi_receiver_sends_total.
const (
	PullStores = "stores" // recorded with at least one target store marked dirty
	PullNone   = "none"   // answered 2xx, no store marked dirty
)

// sendKind maps a proc_name to its kind label.
//
// A send of another kind (layaway 取置き, 出庫/入庫 transfers, losses,
// stocktakes, product changes: no public document gives their proc_names or
// tables) is a sign that stock moved in the stores it names. Edges trigger,
// levels decide: its rows are never read as stock; every column that names
// a store (storeId, and tolerantly store_id, fromStoreId, toStoreId in any
// table) makes that store of the route's contract and namespace a target,
// and the send is recorded through the Sink like a stock_send, which marks
// those stores dirty so the sync engine pulls them. A send of another kind
// that names no store of the contract pulls nothing: unlike a stock_send
// without storeId (which certainly moved stock somewhere in the contract),
// it may be a product master change that moved none, and pulling every
// store of the contract for each would cost a full round of pulls per
// send; the periodic pull still catches anything it stood for. Such sends,
// and sends of another kind whose params cannot be read, are answered 200
// (so Smaregi mails the shop no error for a function the operator does not
// need) and counted with pull="none"; they are not recorded.
func sendKind(procName string) string {
	switch procName {
	case ProcStockSend, ProcTransactionSend:
		return procName
	}
	return KindOther
}

// Table names inside the params of the sends above.
const (
	TableStock             = "Stock"
	TableTransactionHead   = "TransactionHead"
	TableTransactionDetail = "TransactionDetail"
)

// Send is one authenticated send from Smaregi, parsed and routed. It is what
// the receiver hands to a Sink.
type Send struct {
	// ID is the hex SHA-256 of namespace, contract ID, proc_name and params
	// (each but the last followed by "\n"). Smaregi may deliver the same send
	// twice (a manual resend after an error), so a Sink uses this as its
	// dedupe key; the namespace and contract keep two shops whose sends happen
	// to be byte-identical (store 1, product 8000001, the same second) apart.
	ID         string
	Namespace  string
	ContractID string
	// Route is the store whose URL and key were used. Smaregi sends a whole
	// contract to one URL, so this need not be a store the send concerns.
	// Empty for a Platform webhook, whose URL and key are the operator's.
	Route types.NamespacedName
	// ProcName is the proc_name of a legacy send, or the Smaregi-Event of a
	// Platform webhook (EventStock, EventTransactions). A webhook's ID is
	// the hash of "platform", namespace, contract and Smaregi-Event-Id, its
	// Rows the number of its ids, and it has no Stock or Transactions: a
	// webhook carries IDs only, it is an edge that triggers a pull.
	ProcName string
	// StoreIDs are the distinct storeId values of all rows, sorted; for a
	// send of another kind also those of the other columns that name a
	// store (storeColumn).
	StoreIDs []string
	// Targets are the stores of the same contract and namespace whose
	// spec.storeID is in StoreIDs, or all of them when the rows of a
	// stock_send or transaction_send carry no storeId. Sorted by
	// namespace/name. May be empty when the rows of a stock_send or
	// transaction_send name only stores nobody declared; the send is still
	// handed on so nothing is lost. A send of another kind (KindOther) is
	// handed on only with at least one target (see sendKind).
	Targets []types.NamespacedName
	// Rows counts the rows of every table in params.
	Rows       int
	ReceivedAt time.Time
	// Stock holds the Stock rows of a stock_send.
	Stock []StockSendRow
	// Transactions holds the heads of a transaction_send, each with its
	// details.
	Transactions []TransactionHead
}

// Sink records a send durably. The receiver answers 2xx only after Accept
// returns nil; an error makes the receiver answer 503 so that Smaregi lists
// the send as failed and the shop can resend it.
type Sink interface {
	Accept(ctx context.Context, s Send) error
}

// StockSendRow is one row of the Stock table of a stock_send. Smaregi sends
// every value as a string; they are kept as strings so that nothing is lost
// in a conversion the receiver does not need (the sync engine reads stock
// levels from Smaregi itself, it does not trust these).
type StockSendRow struct {
	StoreID            string
	ProductID          string
	Amount             string // signed change
	StockAmount        string // stock after the change
	LayawayStockAmount string
	StockDivision      string
	FromStoreID        string
	ToStoreID          string
	UpdDateTime        string // YYYY-MM-DD HH:MM:SS, Asia/Tokyo
	// Other holds the columns this version does not name.
	Other map[string]string
}

// TransactionHead is one row of the TransactionHead table of a
// transaction_send, with the TransactionDetail rows that name it.
type TransactionHead struct {
	TransactionHeadID       string
	TransactionDateTime     string
	TransactionHeadDivision string // 1 normal sale, 10 layaway, others money movements
	CancelDivision          string // 1 = voided
	DisposeDivision         string // 1 = original of a reversal, 2 = the reversal
	StoreID                 string
	// Other holds the columns this version does not name.
	Other map[string]string
	// Details are the TransactionDetail rows with this TransactionHeadID.
	Details []TransactionDetail
	// Synthesized is true when the send carried details for this head but
	// not the head itself; only TransactionHeadID is then known.
	Synthesized bool
}

// TransactionDetail is one row of the TransactionDetail table.
type TransactionDetail struct {
	TransactionHeadID         string
	TransactionDetailID       string
	TransactionDetailDivision string // 1 sale, 2 return, 3 department sale without product
	ProductID                 string
	ProductCode               string
	Quantity                  string
	StoreID                   string
	// Other holds the columns this version does not name.
	Other map[string]string
}
