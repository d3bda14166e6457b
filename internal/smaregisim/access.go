package smaregisim

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"
)

// maxBody caps an /access/ request body (500 rows are well under it).
const maxBody = 8 << 20

// Functions the simulator answers. Other proc_names get error 15.
var refTables = map[string]map[string]*tableDef{
	"stock_ref":   {"Stock": stockTable, "StockHistory": historyTable},
	"product_ref": {"Product": productTable},
}

// stockRefNoMemo is stock_ref of a Smaregi that knows no memo.
var stockRefNoMemo = map[string]*tableDef{"Stock": stockTable, "StockHistory": historyNoMemoTable}

// stockDivisions are Smaregi's stock change codes (在庫区分).
var stockDivisions = map[string]bool{
	"01": true, "02": true, "03": true, "04": true, "05": true, "07": true, "08": true,
	"09": true, "10": true, "11": true, "12": true, "14": true, "15": true, "16": true,
}

func (s *Server) serveAccess(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	f := s.Faults()
	if f.LatencyMs > 0 && !waitLatency(r, time.Duration(f.LatencyMs)*time.Millisecond, maxBody+1) {
		s.log.Info("access", "fault", "latency", "outcome", "the client gave up; nothing run")
		return
	}
	switch {
	case s.chance(f.ErrorRate):
		s.writeError(w, &apiError{code: 43, status: http.StatusServiceUnavailable, desc: "temporary failure (injected)"})
		s.log.Info("access", "fault", "error", "status", http.StatusServiceUnavailable)
		return
	case s.chance(f.HTMLErrorRate):
		writeHTMLBadGateway(w)
		s.log.Info("access", "fault", "html502", "status", http.StatusBadGateway)
		return
	}

	late := s.chance(f.LateCommitRate)
	body, held, e := s.access(r, late)
	if held != nil {
		s.holdAndCommitLate(w, r, held, time.Duration(f.LateCommitDelay))
		return
	}
	status := http.StatusOK
	if e != nil {
		status = e.status
		if status == 0 {
			status = s.beh.ErrorStatus
		}
	}
	s.log.Info("access", "proc_name", r.PostForm.Get("proc_name"), "status", status,
		"error_code", errCode(e), "remote", r.RemoteAddr, "duration", time.Since(start))

	if s.chance(f.LostResponseRate) {
		// The change (if any) is applied; the caller never learns it.
		s.log.Info("access", "fault", "lost response")
		loseResponse(w)
		return
	}
	if e == nil && s.chance(f.AppliedErrorRate) {
		// The change (if any) is applied; the answer says it failed.
		s.log.Info("access", "fault", "error after applying", "status", http.StatusServiceUnavailable)
		e = &apiError{code: 43, status: http.StatusServiceUnavailable, desc: "temporary failure after the change was applied (injected)"}
	}
	if e != nil {
		s.writeError(w, e)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// writeHTMLBadGateway answers the HTML 502 page of a proxy in front of a
// broken server (the htmlErrorRate fault of both APIs).
func writeHTMLBadGateway(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=UTF-8")
	w.WriteHeader(http.StatusBadGateway)
	_, _ = w.Write([]byte("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"))
}

// holdAndCommitLate is the lateCommit fault: it answers nothing until the
// caller gives up (its timeout, or a closed connection), then applies the
// call delay after that, as a slow server or gateway that finishes a request
// its client abandoned would.
func (s *Server) holdAndCommitLate(w http.ResponseWriter, r *http.Request, changes []change, delay time.Duration) {
	s.lateCommits.Add(1)
	s.log.Info("access", "fault", "late commit", "delay", delay)
	<-r.Context().Done()
	s.afterFunc(delay, func() {
		defer s.lateCommits.Add(-1)
		s.commit(changes)
		s.log.Info("access", "fault", "late commit applied")
	})
	loseResponse(w)
}

func errCode(e *apiError) int {
	if e == nil {
		return 0
	}
	return e.code
}

// loseResponse closes the connection without writing a byte.
func loseResponse(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	// HTTP/2 cannot hijack: aborting the handler resets the stream.
	panic(http.ErrAbortHandler)
}

func (s *Server) writeError(w http.ResponseWriter, e *apiError) {
	status := e.status
	if status == 0 {
		status = s.beh.ErrorStatus
	}
	jw := &jsonWriter{ascii: !s.beh.RawUnicode}
	jw.raw(`{"error_code":`)
	if s.beh.ErrorCodeAsString {
		jw.str(strconv.Itoa(e.code))
	} else {
		jw.int(int64(e.code))
	}
	jw.raw(`,"error":`)
	jw.str(errorNames[e.code])
	jw.raw(`,"error_description":`)
	jw.str(e.desc)
	jw.raw("}")
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	_, _ = w.Write(jw.buf)
}

// header reads an auth header in either spelling: Smaregi documents
// underscores; some clients send hyphens.
func header(r *http.Request, underscored, hyphenated string) string {
	if v := r.Header.Get(underscored); v != "" {
		return v
	}
	return r.Header.Get(hyphenated)
}

// access authenticates, parses and runs one call, returning the JSON body.
// With late set, a valid stock_upd is not applied: its changes are
// returned for a late commit.
func (s *Server) access(r *http.Request, late bool) ([]byte, []change, *apiError) {
	defer drain(r.Body)
	if r.Method != http.MethodPost {
		return nil, nil, &apiError{code: 11, status: http.StatusMethodNotAllowed, desc: "use POST"}
	}
	contract := header(r, "X_contract_id", "X-Contract-Id")
	token := header(r, "X_access_token", "X-Access-Token")
	if contract == "" || token == "" {
		return nil, nil, errf(21, "X_contract_id and X_access_token headers are required")
	}

	s.mu.Lock()
	wantContract, wantToken, locked, allowed := s.contract, s.token, s.account.Locked, s.allowed
	s.mu.Unlock()
	if contract != wantContract {
		return nil, nil, errf(14, "the contract ID is not valid")
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(wantToken)) != 1 {
		return nil, nil, errf(13, "the access token is not valid")
	}
	if locked {
		return nil, nil, errf(22, "the account is locked")
	}
	if len(allowed) > 0 && !ipAllowed(r.RemoteAddr, allowed) {
		return nil, nil, errf(24, "the caller's IP address is not allowed")
	}

	r.Body = http.MaxBytesReader(nil, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		return nil, nil, errf(11, "the request body is not a valid form")
	}
	proc := r.PostForm.Get("proc_name")
	if proc == "" {
		proc = r.Form.Get("proc_name")
	}
	if proc == "" {
		return nil, nil, errf(11, "proc_name is required")
	}
	if proc != "stock_upd" && refTables[proc] == nil {
		return nil, nil, errf(15, "proc_name %q is not valid", truncate(proc, 40))
	}
	s.mu.Lock()
	off := s.disabled[proc]
	s.mu.Unlock()
	if off {
		return nil, nil, errf(23, "function %s is not enabled", proc)
	}
	params := r.PostForm.Get("params")
	if params == "" {
		params = r.Form.Get("params")
	}
	raw, e := parseParams(params)
	if e != nil {
		return nil, nil, e
	}
	if proc == "stock_upd" {
		return s.stockUpd(raw, late)
	}
	body, e := s.ref(proc, raw)
	return body, nil, e
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func ipAllowed(remote string, allowed []netip.Prefix) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range allowed {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseParams decodes the params form field: a JSON object.
func parseParams(params string) (map[string]json.RawMessage, *apiError) {
	if params == "" {
		return nil, errf(11, "params is required")
	}
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader([]byte(params)))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return nil, errf(11, "params must be a JSON object")
	}
	if dec.More() {
		return nil, errf(11, "params has trailing data")
	}
	return raw, nil
}

func (s *Server) ref(proc string, raw map[string]json.RawMessage) ([]byte, *apiError) {
	tables := refTables[proc]
	if proc == "stock_ref" && s.beh.Memo == MemoRejected {
		tables = stockRefNoMemo
	}
	q, e := parseQuery(raw, tables, s.beh)
	if e != nil {
		return nil, e
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var c *collector
	switch q.table {
	case stockTable:
		c = s.st.queryStock(q)
	case historyTable, historyNoMemoTable:
		c = s.st.queryHistory(q)
	default:
		c = s.st.queryProduct(q)
	}
	// Render under the lock: the records are live rows.
	return q.render(c, !s.beh.RawUnicode), nil
}

// stockUpd runs a stock_upd call. With late set, a valid call is not
// applied but returned as changes for serveAccess to commit later.
func (s *Server) stockUpd(raw map[string]json.RawMessage, late bool) ([]byte, []change, *apiError) {
	var info struct {
		Division       json.RawMessage `json:"proc_division"`
		DetailDivision json.RawMessage `json:"proc_detail_division"`
	}
	if err := json.Unmarshal(raw["proc_info"], &info); err != nil {
		return nil, nil, errf(32, "proc_info with proc_division is required")
	}
	if d, _ := scalarString(info.Division); d != "U" {
		return nil, nil, errf(32, "proc_division must be \"U\"")
	}
	dd, _ := scalarString(info.DetailDivision)
	if dd != "1" && dd != "2" {
		return nil, nil, errf(33, "proc_detail_division must be \"1\" (absolute) or \"2\" (relative)")
	}
	absolute := dd == "1"

	var data []struct {
		Table json.RawMessage              `json:"table_name"`
		Rows  []map[string]json.RawMessage `json:"rows"`
	}
	if err := json.Unmarshal(raw["data"], &data); err != nil || len(data) == 0 {
		return nil, nil, errf(41, "data must be a non-empty array of {table_name, rows}")
	}
	total := 0
	for _, d := range data {
		if t, _ := scalarString(d.Table); t != "Stock" {
			return nil, nil, errf(31, "stock_upd writes table_name \"Stock\" only")
		}
		total += len(d.Rows)
	}
	if total == 0 {
		return nil, nil, errf(41, "no rows to update")
	}
	if s.beh.MaxUpdateRows > 0 && total > s.beh.MaxUpdateRows {
		return nil, nil, errf(41, "at most %d rows per call", s.beh.MaxUpdateRows)
	}

	s.mu.Lock()
	// Validate every row before applying any: a call applies all or nothing.
	changes := make([]change, 0, total)
	for _, d := range data {
		for i, row := range d.Rows {
			c, e := s.parseUpdRow(row, absolute)
			if e != nil {
				s.mu.Unlock()
				e.desc = "row " + strconv.Itoa(i+1) + ": " + e.desc
				return nil, nil, e
			}
			changes = append(changes, c)
		}
	}
	if late {
		// Valid, but committed only after the caller gave up (serveAccess).
		s.mu.Unlock()
		return nil, changes, nil
	}
	s.mu.Unlock()
	s.commit(changes)
	w := &jsonWriter{}
	w.raw(`{"result":{"Stock":`)
	w.int(int64(len(changes)))
	w.raw("}}")
	return w.buf, nil, nil
}

// commit applies a validated stock_upd's changes at once, stamped with the
// current time.
func (s *Server) commit(changes []change) {
	s.mu.Lock()
	now := s.clock()
	hist := make([]*historyRow, 0, len(changes))
	for _, c := range changes {
		hist = append(hist, s.st.apply(c, now))
	}
	s.mu.Unlock()
	if s.beh.EchoAPIWrites {
		s.sendStock(hist)
	}
}

// parseUpdRow validates one stock_upd row. The caller holds the lock.
func (s *Server) parseUpdRow(row map[string]json.RawMessage, absolute bool) (change, *apiError) {
	get := func(k string) (string, bool) {
		m, ok := row[k]
		if !ok || isNull(m) {
			return "", false
		}
		return scalarString(m)
	}
	c := change{absolute: absolute}
	if _, ok := row["memo"]; ok && s.beh.Memo == MemoRejected {
		return c, errf(41, "unknown field memo")
	}
	sid, _ := get("storeId")
	ss, err := s.store(sid)
	if err != nil {
		return c, errf(41, "storeId %q does not exist", truncate(sid, 20))
	}
	pid, _ := get("productId")
	p, err := s.product(pid)
	if err != nil {
		return c, errf(41, "productId %q does not exist", truncate(pid, 20))
	}
	amt, ok := get("stockAmount")
	n, perr := strconv.ParseInt(amt, 10, 64)
	if !ok || perr != nil || n > 1e12 || n < -1e12 {
		return c, errf(41, "stockAmount must be an integer")
	}
	div, _ := get("stockDivision")
	if !stockDivisions[div] {
		return c, errf(41, "stockDivision %q is not valid", truncate(div, 10))
	}
	c.store, c.product, c.value, c.division = ss, p, n, div
	c.from, _ = get("fromStoreId")
	c.to, _ = get("toStoreId")
	if s.beh.Memo == MemoKept {
		c.memo, _ = get("memo")
	}
	return c, nil
}
