package smaregiplatform

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregihttp"
)

// Call names: the "function" of a request, used in errors, metric labels and
// storeaccess.Subject.Call. A call is a write when it can change stock in
// Smaregi; a lost answer to a write may hide an applied change.
const (
	CallToken       = "token"
	CallStockList   = "stock_list"
	CallChangesList = "stock_changes_list"
	CallProductList = "product_list"
	CallStockAdd    = "stock_add"
	CallStockBulk   = "stock_add_bulk"
)

// isWriteCall reports whether a call changes state in Smaregi.
func isWriteCall(call string) bool {
	return call == CallStockAdd || call == CallStockBulk
}

// OAuth2 error codes of the token endpoint (RFC 6749 §5.2) that mean a person
// must act.
const (
	OAuthInvalidClient      = "invalid_client"      // wrong client ID or secret
	OAuthUnauthorizedClient = "unauthorized_client" // app not installed for the contract
	OAuthInvalidScope       = "invalid_scope"       // a scope the app was not granted
)

// Causes a person must fix, or that only time fixes; storeaccess.Explain
// maps each to a condition reason and a remedy.
const (
	CauseInvalidClient   = "invalid_client"
	CauseAppNotInstalled = "app_not_installed"
	CauseMissingScope    = "missing_scope"
	CauseRateLimited     = "rate_limited"
)

// APIError is an answer from Smaregi's identity server or API that is not a
// success. It is returned only when an HTTP response arrived.
type APIError struct {
	Call       string // e.g. CallStockList
	HTTPStatus int
	// Problem is true when the body was Smaregi's own verdict: an RFC 7807
	// problem (API) or an OAuth2 error (token endpoint). False for an HTML
	// page of a proxy, an empty body or a redirect.
	Problem bool
	// Type, Title and Detail are the RFC 7807 fields (safe text, never a
	// secret); OAuthError and Detail carry the token endpoint's error and
	// error_description.
	Type       string
	Title      string
	Detail     string
	OAuthError string
	// Refreshed is set on a 401 that came back although the token had just
	// been fetched: Smaregi refuses the app itself, not a stale token.
	Refreshed bool
	// RetryAfter is the server's Retry-After of a 429 or 503, zero if none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	b.WriteString("smaregi platform ")
	b.WriteString(e.Call)
	fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
	if t := http.StatusText(e.HTTPStatus); t != "" && t != e.Title {
		b.WriteString(" ")
		b.WriteString(t)
	}
	if e.Title != "" {
		b.WriteString(": ")
		b.WriteString(e.Title)
	}
	if e.OAuthError != "" {
		b.WriteString(": ")
		b.WriteString(e.OAuthError)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.Refreshed {
		b.WriteString(" (with a freshly issued token)")
	}
	return b.String()
}

// TransportError is a failure without a usable HTTP response: dial errors,
// resets, timeouts, a cancelled context, or a body that could not be read
// or decoded.
type TransportError struct {
	Call string
	// MaybeSent is true when request bytes may have reached the server.
	// False only when nothing left this process (dial failed, limiter wait
	// cancelled, token not obtained).
	MaybeSent bool
	Err       error
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("smaregi platform %s: %s: %v", e.Call, smaregihttp.Reached(e.MaybeSent), e.Err)
}

func (e *TransportError) Unwrap() error { return e.Err }

// ErrFullReconcileNeeded is matched (errors.Is) by a *WatermarkTooOldError.
var ErrFullReconcileNeeded = errors.New("watermark outside the incremental window: do a full reconcile")

// WatermarkTooOldError reports an incremental listing whose watermark lies
// further back than the API's 31-day upd_date_time window: rows changed
// between the window's end and now could not be listed, so the caller must
// list everything instead (errors.Is(err, ErrFullReconcileNeeded)).
type WatermarkTooOldError struct {
	Watermark time.Time
	Oldest    time.Time // the oldest watermark accepted at the time of the call
}

func (e *WatermarkTooOldError) Error() string {
	return fmt.Sprintf("smaregi platform: watermark %s is older than %s (the stock list's 31-day window): do a full reconcile",
		e.Watermark.UTC().Format(time.RFC3339), e.Oldest.UTC().Format(time.RFC3339))
}

func (e *WatermarkTooOldError) Is(target error) bool { return target == ErrFullReconcileNeeded }

// IsFullReconcileNeeded reports whether err asks for a full listing.
func IsFullReconcileNeeded(err error) bool { return errors.Is(err, ErrFullReconcileNeeded) }

// Cause returns the Cause* constant err carries, or "".
func Cause(err error) string {
	var ae *APIError
	if !errors.As(err, &ae) {
		return ""
	}
	return apiErrorCause(ae)
}

func apiErrorCause(ae *APIError) string {
	switch {
	case ae.Call == CallToken && ae.OAuthError == OAuthInvalidClient,
		ae.Call != CallToken && ae.HTTPStatus == http.StatusUnauthorized && ae.Refreshed:
		return CauseInvalidClient
	case ae.Call == CallToken && ae.OAuthError == OAuthUnauthorizedClient:
		return CauseAppNotInstalled
	case ae.Call == CallToken && ae.OAuthError == OAuthInvalidScope,
		ae.Call != CallToken && ae.HTTPStatus == http.StatusForbidden && ae.Problem:
		return CauseMissingScope
	case ae.HTTPStatus == http.StatusTooManyRequests:
		return CauseRateLimited
	}
	return ""
}

// IsConfigError reports whether a person must change something (the client
// secret in the developer console, the app's installation in the shop's
// app settings, the app's scopes): retrying cannot help.
func IsConfigError(err error) bool {
	return isConfigCause(Cause(err)) && !IsAmbiguous(err)
}

func isConfigCause(cause string) bool {
	switch cause {
	case CauseInvalidClient, CauseAppNotInstalled, CauseMissingScope:
		return true
	}
	return false
}

// IsTransient reports whether err is safe to retry unchanged later: for
// reads (token requests included) transport errors, 5xx, 429 and answers
// not from Smaregi (a proxy's page); for writes only a 429 (Smaregi applies
// nothing it throttles) and failures before anything was sent. IsTransient
// and IsAmbiguous never both hold.
func IsTransient(err error) bool { return verdict(err) == smaregihttp.Transient }

// IsAmbiguous reports whether err comes from a write that may have been
// applied: sent, and no trustworthy answer came back (timeout or cut
// connection after sending, a 5xx, a page not from Smaregi, an undecodable
// 2xx). Resolve it with the stock change history (FindChanges, by memo)
// before anything is resent: a relative add is not idempotent.
func IsAmbiguous(err error) bool { return verdict(err) == smaregihttp.Ambiguous }

func verdict(err error) smaregihttp.Verdict {
	return smaregihttp.Judge(err, apiErrorVerdict, func(te *TransportError) smaregihttp.Verdict {
		return smaregihttp.Unanswered(isWriteCall(te.Call), te.MaybeSent)
	})
}

func apiErrorVerdict(ae *APIError) smaregihttp.Verdict {
	switch {
	case apiErrorAmbiguous(ae):
		return smaregihttp.Ambiguous
	case isConfigCause(apiErrorCause(ae)):
		return smaregihttp.Definite // a person must act first
	case ae.HTTPStatus == http.StatusTooManyRequests:
		return smaregihttp.Transient // Smaregi applies nothing it throttles
	case isWriteCall(ae.Call):
		return smaregihttp.Definite // Smaregi's verdict on the write
	case ae.HTTPStatus >= 500 || !ae.Problem:
		return smaregihttp.Transient
	}
	return smaregihttp.Definite
}

func apiErrorAmbiguous(ae *APIError) bool {
	if !isWriteCall(ae.Call) || ae.HTTPStatus == http.StatusTooManyRequests {
		return false
	}
	return ae.HTTPStatus >= 500 || !ae.Problem
}
