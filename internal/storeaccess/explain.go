package storeaccess

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
)

// AdminPath is where every legacy API setting lives in Smaregi's admin
// screen; messages repeat it so the shop finds the switch without docs.
const AdminPath = "スマレジ管理画面 設定 > システム連携 > スマレジAPI設定 > API受信設定"

// Subject is what a diagnosis talks about: the call that failed and the
// store it was made for. It carries no secret.
type Subject struct {
	// Call is the legacy proc (smaregi.ProcStockRef, …) or Platform call
	// (smaregiplatform.Call*) that failed; it decides which function a
	// "function disabled" answer asks to switch on, or which scope is
	// named.
	Call        string
	Endpoint    string
	ContractID  string
	StoreID     string
	Credentials CredentialsRef
}

// Diagnosis is a failure explained for a condition, a metric and a retry
// policy.
type Diagnosis struct {
	// Reason is a v1alpha1 condition reason.
	Reason string
	// Message says what happened and what a person should do; it never
	// contains a secret.
	Message string
	// Config means a person must change something (in Smaregi or in the
	// SmaregiStore and its Secret): retrying soon cannot help.
	Config bool
	// AuthFailed means Smaregi rejected the token or contract: cached
	// tokens and clients of the store must be dropped.
	AuthFailed bool
	// Transient means the same call may succeed later unchanged.
	Transient bool
}

// cause is the key of a row: a legacy error_code, or a Platform API cause
// (smaregiplatform.Cause*).
type cause struct {
	legacyCode int
	platform   string
}

func legacyCause(code int) cause { return cause{legacyCode: code} }

func platformCause(c string) cause { return cause{platform: c} }

// causeEntry is one row of the table: a reason and the remedy for it.
type causeEntry struct {
	reason     string
	authFailed bool
	// transient rows need no person: the same call may succeed later.
	transient bool
	remedy    func(s Subject, code int) string
}

// causeTable maps each cause a person must fix (or that only time fixes)
// of both APIs to its reason and remedy: the legacy API's configuration
// error codes (docs/smaregi-api.md §1.5) and the Platform API's causes. It
// is the only such table: the credential check, the sync engine, the pusher
// and the hub API all explain Smaregi's answers with it, so one fault reads
// the same in every condition.
var causeTable = map[cause]causeEntry{
	legacyCause(smaregi.CodeInvalidAccessToken): {reason: v1alpha1.ReasonInvalidAccessToken, authFailed: true, remedy: invalidToken},
	legacyCause(smaregi.CodeAuthFailed):         {reason: v1alpha1.ReasonInvalidAccessToken, authFailed: true, remedy: invalidToken},
	legacyCause(smaregi.CodeInvalidContractID): {reason: v1alpha1.ReasonInvalidContractID, authFailed: true, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("Smaregi does not accept contract ID %q (error_code 14): compare spec.contractID with 契約ID in %s; "+
			"contractID is immutable, so create a new SmaregiStore with the right one", s.ContractID, AdminPath)
	}},
	legacyCause(smaregi.CodeFunctionDisabled): {reason: v1alpha1.ReasonFunctionDisabled, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("%s is switched off for contract %q (error_code 23): in %s > 機能設定, switch on %s (利用する)",
			functionName(s.Call), s.ContractID, AdminPath, functionsToEnable(s.Call))
	}},
	legacyCause(smaregi.CodeIPNotAllowed): {reason: v1alpha1.ReasonIPNotAllowed, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("Smaregi refused the operator's IP address for contract %q (error_code 24): add the operator's egress IP "+
			"to the allowed addresses (IPアドレス制限) in %s, or lift the restriction", s.ContractID, AdminPath)
	}},
	legacyCause(smaregi.CodeAccountLocked): {reason: v1alpha1.ReasonAccountLocked, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("Smaregi reports the account of contract %q as locked (error_code 22): unlock it in スマレジ管理画面 "+
			"or ask Smaregi support", s.ContractID)
	}},

	// A token is dropped with each of the three Platform config causes:
	// after the fix, only a new token carries the new secret, installation
	// or scopes.
	platformCause(smaregiplatform.CauseInvalidClient): {reason: v1alpha1.ReasonInvalidClient, authFailed: true, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("Smaregi refused the app's client credentials for contract %q (invalid_client): in %s open the app and "+
			"copy its client ID and client secret (the production or sandbox pair that matches spec.endpoint) into Secret %q "+
			"keys clientID and clientSecret. Re-issuing the secret invalidates the old one", s.ContractID, DeveloperConsole, s.Credentials.Secret)
	}},
	platformCause(smaregiplatform.CauseAppNotInstalled): {reason: v1alpha1.ReasonAppNotInstalled, authFailed: true, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("The app is not installed for contract %q (unauthorized_client): the shop installs it in %s "+
			"(the app list, 利用開始); if it is installed, compare spec.contractID with the shop's 契約ID", s.ContractID, ShopAppSettings)
	}},
	platformCause(smaregiplatform.CauseMissingScope): {reason: v1alpha1.ReasonMissingScope, authFailed: true, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("The app lacks a scope needed for %s on contract %q: in %s give the app the scopes %s "+
			"(the shop may have to approve the app again in %s)", platformCallName(s.Call), s.ContractID, DeveloperConsole,
			strings.Join(smaregiplatform.DefaultScopes, " "), ShopAppSettings)
	}},
	platformCause(smaregiplatform.CauseRateLimited): {reason: v1alpha1.ReasonRateLimited, transient: true, remedy: func(s Subject, _ int) string {
		return fmt.Sprintf("Smaregi throttled %s for contract %q (HTTP 429): the limit is per app and contract, shared by all "+
			"of the contract's stores; retrying after Retry-After", platformCallName(s.Call), s.ContractID)
	}},
}

// Where Platform settings live.
const (
	DeveloperConsole = "the Smaregi developer console (https://developers.smaregi.jp/, the app's settings)"
	ShopAppSettings  = "the shop's スマレジ管理画面 (its app settings)"
)

// platformCallName names a Platform call (or the Backend's name for it,
// Call*) for a person.
func platformCallName(call string) string {
	switch call {
	case smaregiplatform.CallStockAdd, smaregiplatform.CallStockBulk, CallStockWrite:
		return "stock writes (pos.stock:write)"
	case smaregiplatform.CallChangesList, CallHistory:
		return "the stock change history (pos.stock-changes:read)"
	case smaregiplatform.CallProductList, CallProductList:
		return "product lookups (pos.products:read)"
	case smaregiplatform.CallToken:
		return "the token request"
	default:
		return "stock reads (pos.stock:read)"
	}
}

// causeOf returns the table key err carries, if it has one: a Platform
// cause (config, or rate limited), or a legacy configuration code.
func causeOf(err error) (cause, int, bool) {
	if c := smaregiplatform.Cause(err); c != "" &&
		(smaregiplatform.IsConfigError(err) || (c == smaregiplatform.CauseRateLimited && smaregiplatform.IsTransient(err))) {
		return platformCause(c), 0, true
	}
	if code, ok := smaregi.ErrorCode(err); ok && smaregi.IsConfigError(err) {
		return legacyCause(code), code, true
	}
	return cause{}, 0, false
}

func invalidToken(s Subject, code int) string {
	return fmt.Sprintf("Smaregi rejected the access token for contract %q (error_code %d): copy アクセストークン from %s "+
		"into Secret %q key %q. Re-issuing the token in Smaregi invalidates the old one",
		s.ContractID, code, AdminPath, s.Credentials.Secret, s.Credentials.Key)
}

// functionName is the admin screen's name of the function a proc needs.
func functionName(call string) string {
	switch call {
	case smaregi.ProcStockUpd:
		return "在庫情報更新 (stock_upd)"
	case smaregi.ProcProductRef:
		return "商品情報参照 (product_ref)"
	default:
		return "在庫情報参照 (stock_ref)"
	}
}

// functionsToEnable lists what to switch on: the operator always needs
// both stock functions, and product_ref only for productCode lookups.
func functionsToEnable(call string) string {
	if call == smaregi.ProcProductRef {
		return "商品情報参照"
	}
	return "15 在庫情報参照 and 4 在庫情報更新"
}

// Explain maps an error of a call for s to a diagnosis. A *ConfigError
// (missing Secret or key, suspended store) keeps its own reason and
// message.
func Explain(err error, s Subject) Diagnosis {
	if err == nil {
		return Diagnosis{Reason: v1alpha1.ReasonSucceeded}
	}
	var ce *ConfigError
	if errors.As(err, &ce) {
		return Diagnosis{Reason: ce.Reason, Message: ce.Message, Config: true}
	}
	call := s.Call
	if call == "" {
		call = smaregi.ProcStockRef
	}
	if k, code, ok := causeOf(err); ok {
		if e, ok := causeTable[k]; ok {
			return Diagnosis{Reason: e.reason, Message: e.remedy(s, code), Config: !e.transient, Transient: e.transient,
				AuthFailed: e.authFailed}
		}
		return Diagnosis{Reason: v1alpha1.ReasonSmaregiError, Config: true,
			Message: fmt.Sprintf("Smaregi rejected %s for contract %q: %v", call, s.ContractID, err)}
	}
	if smaregi.IsTransient(err) || smaregiplatform.IsTransient(err) || errors.Is(err, context.DeadlineExceeded) {
		return Diagnosis{Reason: v1alpha1.ReasonUnreachable, Transient: true,
			Message: fmt.Sprintf("could not complete %s at %s: %v; retrying with back-off", call, s.Endpoint, err)}
	}
	// Anything else (another error code or problem, an undecodable answer,
	// an ambiguous write) is not the shop's configuration as far as anyone
	// knows.
	if errors.As(err, new(*smaregi.APIError)) || errors.As(err, new(*smaregiplatform.APIError)) {
		return Diagnosis{Reason: v1alpha1.ReasonSmaregiError,
			Message: fmt.Sprintf("Smaregi answered %s with an error: %v", call, err)}
	}
	return Diagnosis{Reason: v1alpha1.ReasonSmaregiError, Message: fmt.Sprintf("%s failed: %v", call, err)}
}

// NoStockRows says that Smaregi answered the store's stock_ref with no
// rows. The legacy API offers no store list among the functions a shop
// switches on, so this is all that can be said about a store ID before an
// update: a wrong 店舗ID and a store whose stock never changed look alike.
func NoStockRows(s Subject) string {
	return fmt.Sprintf("Smaregi accepted the access token for contract %q, but has no stock rows for store ID %q: "+
		"if 店舗ID is wrong, compare spec.storeID with スマレジ管理画面 店舗 > 店舗一覧 (storeID is immutable: create a new "+
		"SmaregiStore); a store whose stock never changed has none yet", s.ContractID, s.StoreID)
}

// RefusesStore reports whether the reason Smaregi gave for refusing a
// stock_upd says the store ID does not exist (error_code 41, "storeId …
// does not exist"): the only definite answer the legacy API gives about a
// store's existence.
func RefusesStore(reason string) bool {
	return strings.Contains(reason, "storeId") && strings.Contains(reason, "does not exist")
}

// UnknownStore is the remedy once Smaregi refused an update for the store
// ID (RefusesStore).
func UnknownStore(s Subject) string {
	return fmt.Sprintf("Smaregi refused an adjustment because contract %q has no store %q: compare spec.storeID with 店舗ID in "+
		"スマレジ管理画面 店舗 > 店舗一覧; storeID is immutable, so create a new SmaregiStore with the right one "+
		"(the refused adjustments are marked failed)", s.ContractID, s.StoreID)
}
