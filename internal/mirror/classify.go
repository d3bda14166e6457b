package mirror

import (
	"errors"
	"fmt"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// Outcome label values of smaregi_mirror_pulls_total.
const (
	OutcomeSuccess        = "success"
	OutcomeConfigError    = "config_error"
	OutcomeTransientError = "transient_error"
	OutcomeError          = "error"
)

// CredentialsError says the access token could not be read: a missing Secret
// or key. Like a rejected token it needs a human, so it is a configuration
// error. It never carries the token.
type CredentialsError struct {
	Reason  string // v1alpha1.ReasonSecretNotFound or ReasonSecretKeyNotFound
	Message string
}

func (e *CredentialsError) Error() string { return e.Message }

// failure is a pull error translated for status, metrics and back-off.
type failure struct {
	reason  string
	message string
	outcome string
	// config errors need the shop or the platform team to change something;
	// retrying soon cannot help, so they back off long.
	config bool
	// authFailed drops the cached token, so a fixed Secret is read again.
	authFailed bool
}

// classify maps a pull error to a condition reason and a message that tells
// the reader what to do. Messages name the store and contract but never the
// token (the smaregi client's errors do not carry it either).
func classify(err error, cfg StoreConfig) failure {
	var ce *CredentialsError
	if errors.As(err, &ce) {
		return failure{reason: ce.Reason, message: ce.Message, outcome: OutcomeConfigError, config: true}
	}
	if code, ok := smaregi.ErrorCode(err); ok && smaregi.IsConfigError(err) {
		f := failure{outcome: OutcomeConfigError, config: true}
		switch code {
		case smaregi.CodeFunctionDisabled:
			f.reason = v1alpha1.ReasonFunctionDisabled
			f.message = fmt.Sprintf("Smaregi answered error 23 (function disabled) to stock_ref for contract %s: switch on 15 在庫情報参照 (stock_ref) in スマレジAPI設定 > API受信設定 > 機能設定. The operator retries with a long back-off and at once when the SmaregiStore changes.", cfg.ContractID)
		case smaregi.CodeInvalidAccessToken, smaregi.CodeAuthFailed:
			f.reason = v1alpha1.ReasonInvalidAccessToken
			f.authFailed = true
			f.message = fmt.Sprintf("Smaregi rejected the access token in Secret %s (key %s) for contract %s (error %d): copy the current アクセストークン from スマレジAPI設定 > API受信設定 into the Secret.", cfg.CredentialsSecret, cfg.CredentialsKey, cfg.ContractID, code)
		case smaregi.CodeInvalidContractID:
			f.reason = v1alpha1.ReasonInvalidContractID
			f.authFailed = true
			f.message = fmt.Sprintf("Smaregi does not know contract ID %s (error 14): check spec.contractID against 契約ID in スマレジAPI設定 (contractID is immutable: recreate the SmaregiStore).", cfg.ContractID)
		case smaregi.CodeAccountLocked:
			f.reason = v1alpha1.ReasonAccountLocked
			f.message = fmt.Sprintf("Smaregi reports the account of contract %s as locked (error 22): the shop must unlock it with Smaregi.", cfg.ContractID)
		case smaregi.CodeIPNotAllowed:
			f.reason = v1alpha1.ReasonIPNotAllowed
			f.message = fmt.Sprintf("Smaregi refuses calls from the operator's IP address for contract %s (error 24): add the operator's egress IP to the allowed IPs in スマレジAPI設定.", cfg.ContractID)
		default:
			f.reason = v1alpha1.ReasonSmaregiError
			f.message = fmt.Sprintf("Smaregi rejected stock_ref for contract %s: %v", cfg.ContractID, err)
		}
		return f
	}
	var te *smaregi.TransportError
	if errors.As(err, &te) && smaregi.IsTransient(err) {
		return failure{reason: v1alpha1.ReasonUnreachable, outcome: OutcomeTransientError,
			message: fmt.Sprintf("Cannot reach Smaregi at %s: %v. Retrying with back-off.", cfg.Endpoint, err)}
	}
	if smaregi.IsTransient(err) {
		return failure{reason: v1alpha1.ReasonSmaregiError, outcome: OutcomeTransientError,
			message: fmt.Sprintf("Smaregi failed to answer stock_ref: %v. Retrying with back-off.", err)}
	}
	var ae *smaregi.APIError
	if errors.As(err, &ae) {
		return failure{reason: v1alpha1.ReasonSmaregiError, outcome: OutcomeError,
			message: fmt.Sprintf("Smaregi rejected stock_ref: %v", err)}
	}
	return failure{reason: v1alpha1.ReasonSyncFailed, outcome: OutcomeError,
		message: fmt.Sprintf("Sync failed: %v", err)}
}
