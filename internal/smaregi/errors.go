package smaregi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
)

// Error codes from the protocol document (docs/smaregi-api.md, section 1.5).
const (
	CodeInvalidRequest            = 11
	CodeInvalidAccessToken        = 13
	CodeInvalidContractID         = 14
	CodeInvalidProcName           = 15
	CodeAuthFailed                = 21
	CodeAccountLocked             = 22
	CodeFunctionDisabled          = 23
	CodeIPNotAllowed              = 24
	CodeInvalidTableName          = 31
	CodeInvalidProcDivision       = 32
	CodeInvalidProcDetailDivision = 33
	CodeInvalidInputData          = 41
	CodeAlreadyExists             = 42
	CodeQueryFailed               = 43
)

// Proc names this client calls. A proc is a write when it can change state in
// Smaregi; error classification differs for writes because a lost answer to
// a write may hide an applied change.
const (
	ProcStockRef   = "stock_ref"
	ProcStockUpd   = "stock_upd"
	ProcProductRef = "product_ref"
)

// isWriteProc reports whether a proc changes state in Smaregi. Every legacy
// write function is named *_upd, so the name alone decides; that keeps
// APIError free of a flag that fakes in other packages would have to set.
func isWriteProc(procName string) bool {
	return strings.HasSuffix(procName, "_upd")
}

// APIError is an error answered by Smaregi (JSON error body, or an HTML/opaque
// error page). It is returned only when an HTTP response arrived.
type APIError struct {
	ProcName   string // e.g. "stock_ref"
	HTTPStatus int
	Code       int    // Smaregi error_code; 0 when the body carried none (HTML page, 5xx)
	Message    string // safe text from Smaregi, never the token
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("smaregi ")
	b.WriteString(e.ProcName)
	fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
	if t := http.StatusText(e.HTTPStatus); t != "" {
		b.WriteString(" ")
		b.WriteString(t)
	}
	if e.Code != 0 {
		fmt.Fprintf(&b, ", error_code %d", e.Code)
		if d := codeDescription(e.Code); d != "" {
			b.WriteString(" (")
			b.WriteString(d)
			b.WriteString(")")
		}
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// codeDescription names a documented error code so that an operator reading
// a status condition knows what to fix without the protocol document.
func codeDescription(code int) string {
	switch code {
	case CodeInvalidRequest:
		return "invalid request data"
	case CodeInvalidAccessToken:
		return "invalid access token"
	case CodeInvalidContractID:
		return "invalid contract ID"
	case CodeInvalidProcName:
		return "invalid proc_name"
	case CodeAuthFailed:
		return "authentication failed"
	case CodeAccountLocked:
		return "account locked"
	case CodeFunctionDisabled:
		return "function disabled in Smaregi's API settings"
	case CodeIPNotAllowed:
		return "caller IP not allowed"
	case CodeInvalidTableName:
		return "invalid table_name"
	case CodeInvalidProcDivision:
		return "invalid proc_division"
	case CodeInvalidProcDetailDivision:
		return "invalid proc_detail_division"
	case CodeInvalidInputData:
		return "invalid input data"
	case CodeAlreadyExists:
		return "already exists"
	case CodeQueryFailed:
		return "query failed"
	}
	return ""
}

// TransportError is a failure without an HTTP response: dial errors, resets,
// timeouts, a cancelled context, or a body that could not be read or decoded.
type TransportError struct {
	ProcName string
	// MaybeSent is true when request bytes may have reached the server, so
	// the server may have acted on it. False only when we know nothing left
	// this process (dial failed, rate-limiter wait cancelled).
	MaybeSent bool
	Err       error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("smaregi %s: %s: %v", e.ProcName, smaregihttp.Reached(e.MaybeSent), e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// configCodes are the codes a shop must fix in Smaregi's admin screen (token,
// contract ID, enabled functions, IP allow list); retrying cannot help.
func isConfigCode(code int) bool {
	switch code {
	case CodeInvalidAccessToken, CodeInvalidContractID, CodeAuthFailed,
		CodeAccountLocked, CodeFunctionDisabled, CodeIPNotAllowed:
		return true
	}
	return false
}

// IsConfigError reports whether err carries one of the codes 13, 14, 21, 22,
// 23, 24: the shop must fix its settings; do not retry.
func IsConfigError(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && isConfigCode(ae.Code)
}

// IsTransient reports whether err is safe to retry unchanged later: network
// errors for reads, network errors for writes that never left this process,
// 5xx and HTML/opaque pages for reads, HTML/opaque 4xx pages for reads (a
// proxy answered), and a 429 that carries a Smaregi error_code. An answer
// to a write is transient only when it is Smaregi's own coded 429 verdict;
// every other failed write that reached a server is either a definite
// rejection (a coded non-5xx answer) or ambiguous. IsTransient and
// IsAmbiguous never both hold for one error.
func IsTransient(err error) bool { return verdict(err) == smaregihttp.Transient }

// IsAmbiguous reports whether err comes from a write that may have been
// applied: the request may have reached Smaregi and no trustworthy answer
// came back. That is a timeout or connection lost after sending, any answer
// that could not be decoded (an HTML or opaque page, whatever its status,
// or an undecodable 2xx), and every 5xx, with or without an error_code: the
// protocol document does not say that a coded 5xx means "nothing was
// applied", and a server can commit and then fail. Resolve it by reading
// StockHistory before retrying; a blind retry of a relative update would
// apply it twice. Ambiguity takes precedence: a 5xx carrying a
// configuration code is ambiguous for a write even though IsConfigError
// holds too.
func IsAmbiguous(err error) bool { return verdict(err) == smaregihttp.Ambiguous }

func verdict(err error) smaregihttp.Verdict {
	return smaregihttp.Judge(err, apiErrorVerdict, func(te *TransportError) smaregihttp.Verdict {
		return smaregihttp.Unanswered(isWriteProc(te.ProcName), te.MaybeSent)
	})
}

// apiErrorAmbiguous: for a write, any 5xx and any answer without Smaregi's
// error_code (a page from something in front of Smaregi, which may have
// passed the call on) leave the outcome unknown. Only a coded non-5xx
// answer is Smaregi's definite verdict on the whole call.
func apiErrorAmbiguous(ae *APIError) bool {
	return isWriteProc(ae.ProcName) && (ae.HTTPStatus >= 500 || ae.Code == 0)
}

func apiErrorVerdict(ae *APIError) smaregihttp.Verdict {
	switch {
	case apiErrorAmbiguous(ae):
		return smaregihttp.Ambiguous
	case isConfigCode(ae.Code):
		return smaregihttp.Definite
	case ae.HTTPStatus == http.StatusTooManyRequests || ae.HTTPStatus >= 500:
		// A read is safe to repeat; a write gets here only with Smaregi's
		// coded 429 (a refusal of the whole call).
		return smaregihttp.Transient
	case ae.Code == 0:
		// A read answered by a 4xx (or odd 2xx) page without an error
		// code: something in front of Smaregi answered, not Smaregi.
		return smaregihttp.Transient
	}
	return smaregihttp.Definite
}

// ErrorCode returns Smaregi's error_code carried by err, if any.
func ErrorCode(err error) (int, bool) {
	var ae *APIError
	if errors.As(err, &ae) && ae.Code != 0 {
		return ae.Code, true
	}
	return 0, false
}

// UpdateError reports a failed UpdateStock call. Batches are sent in order
// and sending stops at the first failure, so batches [0, Applied) were
// definitely applied, batch Batch failed (definitely, unless
// IsAmbiguous(err) says it may have been applied), and later batches were
// never sent. Rows [FirstRow, EndRow) of the caller's slice form batch Batch.
type UpdateError struct {
	Applied  int // number of batches definitely applied (== Batch)
	Batch    int // 0-based index of the failed batch
	Batches  int // total number of batches
	FirstRow int // index of the failed batch's first row in the input
	EndRow   int // one past the failed batch's last row
	Err      error
}

func (e *UpdateError) Error() string {
	return fmt.Sprintf("smaregi stock update: batch %d of %d (rows %d-%d) failed, %d batches applied before it: %v",
		e.Batch+1, e.Batches, e.FirstRow, e.EndRow-1, e.Applied, e.Err)
}

func (e *UpdateError) Unwrap() error { return e.Err }
