package smaregisim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// MaxBulkRows is the most rows of one bulk stock request.
const MaxBulkRows = 100

// Bulk row outcomes in the callback.
const (
	BulkRowSucceeded = "succeeded"
	BulkRowFailed    = "failed"
)

// platBulk serves PATCH /pos/stock/bulk (absolute, rows {"productId",
// "storeId","stockAmount"}) and POST /pos/stock/add/bulk (relative, rows
// {"productId","storeId","amount","memo"}). The body is {"callbackUrl",
// "stocks":[…]}. The request is checked at once (202 with a requestId, or
// 400); the rows are applied later, each on its own, and the outcome is
// POSTed to callbackUrl.
func (s *Server) platBulk(absolute bool) http.HandlerFunc {
	amountField := "amount"
	if absolute {
		amountField = "stockAmount"
	}
	return func(w http.ResponseWriter, r *http.Request) {
		obj, ok := decodeObject(w, r)
		if !ok {
			return
		}
		bad := func(detail string) { writeProblem(w, http.StatusBadRequest, "Bad Request", detail) }
		cb, _ := scalarString(obj["callbackUrl"])
		if cb == "" {
			bad("callbackUrl is required")
			return
		}
		if err := checkCallbackURL(cb); err != nil {
			bad("callbackUrl " + err.Error())
			return
		}
		var rows []map[string]json.RawMessage
		if err := json.Unmarshal(obj["stocks"], &rows); err != nil || len(rows) == 0 {
			bad("stocks must be a non-empty array of objects")
			return
		}
		if len(rows) > MaxBulkRows {
			bad("at most 100 rows per request")
			return
		}
		writes := make([]platWrite, len(rows))
		for i, row := range rows {
			pw, detail := parseWriteFields(row, amountField)
			switch {
			case detail != "":
			case pw.productID == "":
				detail = "productId is required"
			case !absolute && pw.value == 0:
				detail = "amount must not be 0"
			}
			if detail != "" {
				bad("stocks[" + strconv.Itoa(i) + "]: " + detail)
				return
			}
			writes[i] = pw
		}
		reqID := newUUID()
		s.plat.mu.Lock()
		delay := s.plat.o.WebhookDelay
		s.plat.mu.Unlock()
		ob := s.plat.out
		ob.mu.Lock()
		rec := &WebhookRecord{ID: strconv.Itoa(len(ob.records) + 1), Kind: OutboxCallback, State: SendQueued}
		ob.push(&outItem{rec: rec, url: cb, due: time.Now().Add(delay),
			run: func() []byte { return s.runBulk(reqID, absolute, writes) }})
		ob.mu.Unlock()
		b, _ := json.Marshal(map[string]string{"requestId": reqID})
		writeAPIJSON(w, http.StatusAccepted, b)
	}
}

// runBulk applies a bulk request's rows and returns the callback body. It
// runs on the outbox goroutine; its echoes (stock_send, the bulk-update
// webhook) are queued after the callback.
func (s *Server) runBulk(reqID string, absolute bool, writes []platWrite) []byte {
	jw := &jsonWriter{}
	jw.raw(`{"requestId":`)
	jw.str(reqID)
	jw.raw(`,"contractId":`)
	jw.str(s.contract)
	jw.raw(`,"status":"completed","results":[`)
	var hist []*historyRow
	s.mu.Lock()
	for i, pw := range writes {
		if i > 0 {
			jw.raw(",")
		}
		h, _, detail := s.applyPlatform(pw, absolute)
		if h == nil {
			kv(jw, "index", strconv.Itoa(i), "storeId", pw.storeID, "productId", pw.productID,
				"status", BulkRowFailed, "detail", detail)
			continue
		}
		hist = append(hist, h)
		kv(jw, "index", strconv.Itoa(i), "storeId", pw.storeID, "productId", pw.productID,
			"status", BulkRowSucceeded, "stockHistoryId", strconv.FormatInt(h.ID, 10))
	}
	s.mu.Unlock()
	jw.raw("]}")
	s.sendStock(hist)
	s.stockWebhook(WebhookActionBulkUpdate, hist)
	return jw.buf
}
