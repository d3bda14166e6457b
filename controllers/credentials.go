package controllers

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// CredentialChecker verifies that a shop's credentials work, with the
// cheapest call that proves it (a one-row stock_ref, which also proves that
// 在庫情報参照 is switched on). Errors are classified with the helpers of
// internal/smaregi (IsConfigError, ErrorCode, IsTransient).
//
// stockRows says whether Smaregi holds any stock row for the store ID: the
// legacy API's only hint about whether the store exists.
type CredentialChecker interface {
	CheckCredentials(ctx context.Context, target storeaccess.Target) (stockRows bool, err error)
}

// checkTimeout bounds one credential check so a hanging Smaregi cannot hold
// a reconcile worker.
const checkTimeout = 30 * time.Second

// Transient failures back off from transientBackoffBase, doubling up to the
// recheck interval.
const transientBackoffBase = 5 * time.Second

// outcome is what a step decided for its condition.
type outcome int

const (
	outcomeOK        outcome = iota
	outcomeStalled           // a human must fix something; retry only rarely
	outcomeRetrying          // transient; retrying with back-off
	outcomeSuspended         // spec.suspend: nothing was tried
)

// stepResult is one step's verdict: its condition and when to come back.
type stepResult struct {
	status  metav1.ConditionStatus
	reason  string
	message string
	outcome outcome
	// requeueAfter is when the step wants to run again (0: only on events).
	requeueAfter time.Duration
	// err is returned from Reconcile (after the status write) so that
	// controller-runtime backs off: API server failures, not Smaregi's.
	err error
	// keepPrevious keeps the condition (and status.receiver) as last
	// written: a hiccup of the Kubernetes API says nothing new about the
	// shop, and flapping Ready would only produce noise.
	keepPrevious bool
}

// checkRecord remembers the last credential check of one store, so that
// events unrelated to the credentials (the key Secret, the sync engine's
// condition) do not call Smaregi again. The fingerprint covers every input
// of the check, so a new token or endpoint is checked at once.
type checkRecord struct {
	fingerprint [sha256.Size]byte
	result      stepResult
	nextCheck   time.Time
	failures    int // consecutive transient failures, for back-off
}

// fingerprint hashes the check's inputs. The token only enters a one-way
// hash kept in memory; it is never stored or compared in clear.
func fingerprint(uid types.UID, t storeaccess.Target) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range []string{string(uid), string(t.API), t.Endpoint, t.TokenEndpoint, t.ContractID, t.StoreID,
		t.Credentials.AccessToken, t.Credentials.ClientID, t.Credentials.ClientSecret} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var out [sha256.Size]byte
	copy(out[:], h.Sum(nil))
	return out
}

// reconcileCredentials owns the CredentialsValid condition.
func (r *SmaregiStoreReconciler) reconcileCredentials(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) stepResult {
	if store.Spec.Suspend {
		return stepResult{
			status: metav1.ConditionUnknown, reason: smaregiv1alpha1.ReasonSuspended, outcome: outcomeSuspended,
			message: "spec.suspend is true: the operator makes no calls to Smaregi, so the credentials are not checked",
		}
	}

	// The APIReader reads this one Secret from the API server: the manager
	// caches only the Secrets this operator creates, never users' tokens.
	creds, err := storeaccess.ReadCredentials(ctx, r.APIReader, storeaccess.CredentialsRefOf(store))
	var ce *storeaccess.ConfigError
	switch {
	case errors.As(err, &ce):
		// No error and no requeue: the Secret watch brings the store back
		// the moment the Secret is created or fixed.
		return stepResult{status: metav1.ConditionFalse, reason: ce.Reason, outcome: outcomeStalled, message: ce.Message}
	case err != nil:
		return retrying(err)
	}

	target := storeaccess.Target{API: store.APIName(), Endpoint: store.EndpointURL(), TokenEndpoint: store.TokenEndpointURL(),
		ContractID: store.Spec.ContractID, StoreID: store.Spec.StoreID, Credentials: creds}
	fp := fingerprint(store.UID, target)
	now := r.Clock.Now()
	st := r.state(client.ObjectKeyFromObject(store))

	st.mu.Lock()
	rec := st.check
	st.mu.Unlock()
	if rec != nil && rec.fingerprint == fp && now.Before(rec.nextCheck) {
		res := r.withRefusal(store, rec.result)
		res.requeueAfter = rec.nextCheck.Sub(now)
		return res
	}

	checkCtx, cancel := context.WithTimeout(ctx, checkTimeout)
	rows, err := r.Checker.CheckCredentials(checkCtx, target)
	cancel()

	res := classifyCheck(err, rows, store, creds.Redact)
	next := &checkRecord{fingerprint: fp, result: res}
	var delay time.Duration
	switch res.outcome {
	case outcomeOK:
		delay = jitter(r.RecheckInterval)
	case outcomeStalled:
		// Smaregi said the configuration is wrong; asking again soon cannot
		// change its answer and only hammers the API. A changed token or
		// endpoint bypasses this (new fingerprint).
		delay = jitter(r.StalledRecheckInterval)
	default:
		if rec != nil && rec.fingerprint == fp {
			next.failures = rec.failures
		}
		next.failures++
		delay = jitter(backoff(next.failures, r.RecheckInterval))
		res.message = fmt.Sprintf("%s; retrying in %s", res.message, delay.Round(time.Second))
		next.result = res
	}
	next.nextCheck = now.Add(delay)
	res.requeueAfter = delay

	st.mu.Lock()
	st.check = next
	if err == nil && rows {
		// Stock rows exist: whatever refused an update earlier, the store
		// does now.
		st.refusedStore = false
	}
	st.mu.Unlock()
	return r.withRefusal(store, res)
}

// withRefusal turns a check that found no stock rows False once Smaregi
// has refused an adjustment for the store ID (NoteUnknownStore): then the
// store definitely does not exist.
func (r *SmaregiStoreReconciler) withRefusal(store *smaregiv1alpha1.SmaregiStore, res stepResult) stepResult {
	if res.status != metav1.ConditionTrue || res.reason != smaregiv1alpha1.ReasonNoStockRows {
		return res
	}
	st := r.state(client.ObjectKeyFromObject(store))
	st.mu.Lock()
	refused := st.refusedStore
	st.mu.Unlock()
	if !refused {
		return res
	}
	res.status, res.reason, res.outcome = metav1.ConditionFalse, smaregiv1alpha1.ReasonUnknownStoreID, outcomeStalled
	res.message = storeaccess.UnknownStore(subjectOf(store))
	return res
}

// subjectOf names the store's credential check for storeaccess.
func subjectOf(store *smaregiv1alpha1.SmaregiStore) storeaccess.Subject {
	return storeaccess.Subject{
		Call: storeaccess.CallStockList, Endpoint: store.EndpointURL(), ContractID: store.Spec.ContractID,
		StoreID: store.Spec.StoreID, Credentials: storeaccess.CredentialsRefOf(store),
	}
}

// classifyCheck maps a credential check's error to the CredentialsValid
// condition, with storeaccess's one table of reasons and remedies. redact
// removes the token from any text that came from elsewhere (defence in
// depth: the client already keeps it out of its errors).
func classifyCheck(err error, stockRows bool, store *smaregiv1alpha1.SmaregiStore, redact func(string) string) stepResult {
	if err == nil && !stockRows {
		return stepResult{status: metav1.ConditionTrue, reason: smaregiv1alpha1.ReasonNoStockRows, outcome: outcomeOK,
			message: storeaccess.NoStockRows(subjectOf(store))}
	}
	if err == nil {
		return stepResult{
			status: metav1.ConditionTrue, reason: smaregiv1alpha1.ReasonSucceeded, outcome: outcomeOK,
			message: fmt.Sprintf("Smaregi accepted the access token for contract %q, store %q (stock_ref)", store.Spec.ContractID, store.Spec.StoreID),
		}
	}
	d := storeaccess.Explain(err, subjectOf(store))
	res := stepResult{status: metav1.ConditionFalse, reason: d.Reason, message: redact(d.Message), outcome: outcomeRetrying}
	switch {
	case d.Config:
		// A person must act; asking again soon cannot change the answer.
		res.outcome = outcomeStalled
	case d.Transient:
		// Nothing is known about the credentials.
		res.status = metav1.ConditionUnknown
	}
	return res
}

// backoff doubles from transientBackoffBase per consecutive failure, capped.
func backoff(failures int, limit time.Duration) time.Duration {
	d := transientBackoffBase
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// jitter spreads d by ±10% so that many stores created together (a GitOps
// apply) do not re-check in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	spread := int64(d) / 5
	if spread <= 0 {
		return d
	}
	return d - time.Duration(spread/2) + time.Duration(rand.Int64N(spread+1))
}
