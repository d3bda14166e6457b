package mirror

import (
	"fmt"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
)

// Outcome label values of smaregi_mirror_pulls_total.
const (
	OutcomeSuccess        = "success"
	OutcomeConfigError    = "config_error"
	OutcomeTransientError = "transient_error"
	OutcomeError          = "error"
)

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
// the reader what to do, with storeaccess's one table (so InventorySynced
// and CredentialsValid word one fault alike). Messages name the store and
// contract but never the token (the smaregi client's errors do not carry it
// either).
func classify(err error, cfg storeregistry.StoreConfig) failure {
	d := storeaccess.Explain(err, cfg.Subject(storeaccess.CallStockList))
	f := failure{reason: d.Reason, message: d.Message, config: d.Config, authFailed: d.AuthFailed}
	switch {
	case d.Config:
		f.outcome = OutcomeConfigError
	case d.Transient:
		f.outcome = OutcomeTransientError
	case storeaccess.IsSmaregiAnswer(err):
		f.outcome = OutcomeError
	default:
		// Not Smaregi's answer: the inventory store or the engine failed.
		f.reason, f.outcome = v1alpha1.ReasonSyncFailed, OutcomeError
		f.message = fmt.Sprintf("sync failed: %v", err)
	}
	return f
}
