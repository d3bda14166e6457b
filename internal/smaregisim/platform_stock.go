package smaregisim

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"
)

// MaxPlatformMemo is the longest memo (in characters) of a Platform write.
const MaxPlatformMemo = 100

// maxPlatformBody caps a Platform write's JSON body (100 bulk rows are far
// below it).
const maxPlatformBody = 1 << 20

// platWrite is one validated Platform stock write.
type platWrite struct {
	storeID, productID string
	value              int64
	memo               string
}

// parseWriteFields reads storeId, the amount field and memo of one write
// object. Values may be JSON strings or numbers. It returns a problem
// detail, or "".
func parseWriteFields(obj map[string]json.RawMessage, amountField string) (platWrite, string) {
	get := func(k string) (string, bool) {
		m, ok := obj[k]
		if !ok || isNull(m) {
			return "", false
		}
		return scalarString(m)
	}
	var pw platWrite
	var ok bool
	if pw.storeID, ok = get("storeId"); !ok || pw.storeID == "" {
		return pw, "storeId is required"
	}
	if pid, ok := get("productId"); ok {
		pw.productID = pid
	}
	amt, ok := get(amountField)
	n, err := strconv.ParseInt(amt, 10, 64)
	if !ok || err != nil || n > 1e12 || n < -1e12 {
		return pw, amountField + " must be an integer"
	}
	pw.value = n
	pw.memo, _ = get("memo")
	if utf8.RuneCountInString(pw.memo) > MaxPlatformMemo {
		return pw, "memo must be at most 100 characters"
	}
	return pw, ""
}

// decodeObject reads a JSON object body.
func decodeObject(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxPlatformBody))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		writeProblem(w, http.StatusBadRequest, "Bad Request", "the body must be a JSON object")
		return nil, false
	}
	return obj, true
}

// applyPlatform applies one write with stockDivision 15 (API) and returns
// its history row, or a status and detail. The caller holds s.mu.
func (s *Server) applyPlatform(pw platWrite, absolute bool) (*historyRow, int, string) {
	p, err := s.product(pw.productID)
	if err != nil {
		return nil, http.StatusNotFound, "product " + truncate(pw.productID, 20) + " does not exist"
	}
	ss, err := s.store(pw.storeID)
	if err != nil {
		return nil, http.StatusBadRequest, "store " + truncate(pw.storeID, 20) + " does not exist"
	}
	return s.st.apply(change{store: ss, product: p, absolute: absolute, value: pw.value,
		division: DivisionAPI, memo: pw.memo}, s.clock()), 0, ""
}

// platSetStock is PATCH /pos/stock/{product_id}: {"storeId","stockAmount"}
// sets the stock (absolute).
func (s *Server) platSetStock(w http.ResponseWriter, r *http.Request) {
	s.platSingleWrite(w, r, true, "stockAmount")
}

// platAddStock is POST /pos/stock/{product_id}/add: {"storeId","amount",
// "memo"} changes the stock by amount (relative, not idempotent).
func (s *Server) platAddStock(w http.ResponseWriter, r *http.Request) {
	s.platSingleWrite(w, r, false, "amount")
}

func (s *Server) platSingleWrite(w http.ResponseWriter, r *http.Request, absolute bool, amountField string) {
	obj, ok := decodeObject(w, r)
	if !ok {
		return
	}
	pw, detail := parseWriteFields(obj, amountField)
	if detail != "" {
		writeProblem(w, http.StatusBadRequest, "Bad Request", detail)
		return
	}
	pw.productID = r.PathValue("product_id")
	if f := s.Faults(); s.chance(f.LateCommitRate) {
		s.platCommitLate(r, pw, absolute, time.Duration(f.LateCommitDelay))
		return
	}
	s.mu.Lock()
	h, status, detail := s.applyPlatform(pw, absolute)
	if h == nil {
		s.mu.Unlock()
		writeProblem(w, status, http.StatusText(status), detail)
		return
	}
	jw := &jsonWriter{}
	renderChange(jw, h)
	s.mu.Unlock()
	// A Platform write echoes: the pos:stock webhook and the legacy
	// stock_send both fire, unlike a legacy stock_upd.
	s.sendStock([]*historyRow{h})
	s.stockWebhook(WebhookActionEdited, []*historyRow{h})
	writeAPIJSON(w, http.StatusOK, jw.buf)
}

// platCommitLate is the lateCommit fault of a Platform write, as
// holdAndCommitLate is of a stock_upd: no answer until the caller gives up,
// then the write is applied delay later (with its echoes), as a slow server
// that finishes an abandoned request would. The connection is cut: the
// caller sees a timeout or a closed connection, never an answer.
func (s *Server) platCommitLate(r *http.Request, pw platWrite, absolute bool, delay time.Duration) {
	s.lateCommits.Add(1)
	s.log.Info("platform", "fault", "late commit", "delay", delay)
	<-r.Context().Done()
	s.afterFunc(delay, func() {
		defer s.lateCommits.Add(-1)
		s.mu.Lock()
		h, _, detail := s.applyPlatform(pw, absolute)
		s.mu.Unlock()
		if h == nil {
			s.log.Info("platform", "fault", "late commit refused", "detail", detail)
			return
		}
		s.sendStock([]*historyRow{h})
		s.stockWebhook(WebhookActionEdited, []*historyRow{h})
		s.log.Info("platform", "fault", "late commit applied")
	})
	// Through platFaults' buffer as well: aborting the handler cuts the
	// connection without an answer.
	panic(http.ErrAbortHandler)
}
