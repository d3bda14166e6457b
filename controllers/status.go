package controllers

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/statusapply"
)

// FieldManager is this controller's server-side apply field manager. It
// owns only the fields in ownedStatus; the sync engine applies its own
// (InventorySynced, status.inventory) under another manager.
const FieldManager = "smaregi-operator"

// ownedConditions are the condition types this controller writes, and so
// the only ones in its apply requests.
var ownedConditions = []string{
	smaregiv1alpha1.ReadyCondition,
	smaregiv1alpha1.ReconcilingCondition,
	smaregiv1alpha1.StalledCondition,
	smaregiv1alpha1.CredentialsValidCondition,
	smaregiv1alpha1.ReceiverReadyCondition,
}

// ownedStatus is the part of the status this controller applies. Its JSON
// matches SmaregiStoreStatus field by field.
type ownedStatus struct {
	ObservedGeneration int64                           `json:"observedGeneration"`
	Conditions         []metav1.Condition              `json:"conditions"`
	Receiver           *smaregiv1alpha1.ReceiverStatus `json:"receiver,omitempty"`
}

// condition returns c with LastTransitionTime carried over from the
// existing condition of the same type when the status did not change, so
// that the time says when the status last flipped, not when we last wrote.
func condition(existing []metav1.Condition, c metav1.Condition, now time.Time) metav1.Condition {
	if prev := meta.FindStatusCondition(existing, c.Type); prev != nil && prev.Status == c.Status {
		c.LastTransitionTime = prev.LastTransitionTime
	} else {
		// The API server stores seconds; truncating keeps a re-read equal
		// to what we computed, so an unchanged status is not re-applied.
		c.LastTransitionTime = metav1.NewTime(now.Truncate(time.Second))
	}
	return c
}

// stepCondition turns a step's verdict into its condition. A step that only
// hit a Kubernetes API hiccup keeps the condition it had.
func stepCondition(store *smaregiv1alpha1.SmaregiStore, typ string, s stepResult, now time.Time) metav1.Condition {
	if s.keepPrevious {
		if prev := meta.FindStatusCondition(store.Status.Conditions, typ); prev != nil {
			c := *prev
			c.ObservedGeneration = store.Generation
			return c
		}
	}
	return condition(store.Status.Conditions, metav1.Condition{
		Type: typ, Status: s.status, Reason: s.reason, Message: s.message, ObservedGeneration: store.Generation,
	}, now)
}

// summarize computes everything this controller owns in the status from
// the steps' verdicts: the detail conditions, the Ready summary and the
// kstatus pair (Reconciling while retrying, Stalled when a human must act).
func summarize(store *smaregiv1alpha1.SmaregiStore, cred, recv stepResult, receiver *smaregiv1alpha1.ReceiverStatus, now time.Time) ownedStatus {
	gen := store.Generation
	cv := stepCondition(store, smaregiv1alpha1.CredentialsValidCondition, cred, now)
	rr := stepCondition(store, smaregiv1alpha1.ReceiverReadyCondition, recv, now)
	if receiver == nil && recv.keepPrevious {
		receiver = store.Status.Receiver
	}

	// Ready = CredentialsValid ∧ ReceiverReady ∧ InventorySynced not False.
	// The first detail that is not True explains Ready.
	ready := metav1.Condition{Type: smaregiv1alpha1.ReadyCondition, ObservedGeneration: gen,
		Status: metav1.ConditionTrue, Reason: smaregiv1alpha1.ReasonSucceeded,
		Message: "credentials valid and receiver published"}
	blockers := []metav1.Condition{cv, rr}
	if is := meta.FindStatusCondition(store.Status.Conditions, smaregiv1alpha1.InventorySyncedCondition); is != nil && is.Status == metav1.ConditionFalse {
		blockers = append(blockers, *is)
	}
	for _, b := range blockers {
		if b.Status != metav1.ConditionTrue {
			ready.Status = metav1.ConditionFalse
			ready.Reason = b.Reason
			ready.Message = fmt.Sprintf("%s: %s", b.Type, b.Message)
			break
		}
	}
	if ready.Status == metav1.ConditionTrue && cv.Reason == smaregiv1alpha1.ReasonNoStockRows {
		// Usable, but the store ID may be wrong: say so where users look.
		ready.Message = cv.Message
	}
	if store.Spec.Suspend {
		ready.Status = metav1.ConditionFalse
		ready.Reason = smaregiv1alpha1.ReasonSuspended
		ready.Message = "spec.suspend is true: no credential checks, pulls or pushes; sends are still recorded"
	}

	reconciling := metav1.Condition{Type: smaregiv1alpha1.ReconcilingCondition, ObservedGeneration: gen,
		Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonSucceeded, Message: fmt.Sprintf("generation %d reconciled", gen)}
	stalled := metav1.Condition{Type: smaregiv1alpha1.StalledCondition, ObservedGeneration: gen,
		Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonSucceeded, Message: "no action needed"}
	for _, s := range []struct {
		res  stepResult
		cond metav1.Condition
	}{{cred, cv}, {recv, rr}} {
		switch {
		case s.res.outcome == outcomeStalled && stalled.Status != metav1.ConditionTrue:
			stalled.Status, stalled.Reason, stalled.Message = metav1.ConditionTrue, s.cond.Reason, s.cond.Message
		case s.res.outcome == outcomeRetrying && reconciling.Status != metav1.ConditionTrue:
			reconciling.Status, reconciling.Reason, reconciling.Message = metav1.ConditionTrue, s.res.reason, s.res.message
		}
	}

	return ownedStatus{
		ObservedGeneration: gen,
		Conditions: []metav1.Condition{
			condition(store.Status.Conditions, ready, now),
			condition(store.Status.Conditions, reconciling, now),
			condition(store.Status.Conditions, stalled, now),
			cv,
			rr,
		},
		Receiver: receiver,
	}
}

// upToDate reports whether the object already shows desired, so that a
// reconcile that changed nothing writes nothing (and triggers no watch).
func upToDate(store *smaregiv1alpha1.SmaregiStore, desired ownedStatus) bool {
	if store.Status.ObservedGeneration != desired.ObservedGeneration {
		return false
	}
	for _, c := range desired.Conditions {
		prev := meta.FindStatusCondition(store.Status.Conditions, c.Type)
		if prev == nil || prev.Status != c.Status || prev.Reason != c.Reason || prev.Message != c.Message ||
			prev.ObservedGeneration != c.ObservedGeneration || !prev.LastTransitionTime.Equal(&c.LastTransitionTime) {
			return false
		}
	}
	return reflect.DeepEqual(normalizeReceiver(store.Status.Receiver), normalizeReceiver(desired.Receiver))
}

// normalizeReceiver drops sub-second precision the API server would drop.
func normalizeReceiver(r *smaregiv1alpha1.ReceiverStatus) *smaregiv1alpha1.ReceiverStatus {
	if r == nil || r.PreviousKeyExpiresAt == nil {
		return r
	}
	c := r.DeepCopy()
	c.PreviousKeyExpiresAt = &metav1.Time{Time: c.PreviousKeyExpiresAt.UTC().Truncate(time.Second)}
	return c
}

// applyStatus writes desired with server-side apply under FieldManager
// (statusapply says why apply), so the sync engine's fields stay its own.
func (r *SmaregiStoreReconciler) applyStatus(ctx context.Context, store *smaregiv1alpha1.SmaregiStore, desired ownedStatus) error {
	if upToDate(store, desired) {
		return nil
	}
	raw, err := json.Marshal(desired)
	if err != nil {
		return fmt.Errorf("encode status of %s/%s: %w", store.Namespace, store.Name, err)
	}
	var status map[string]any
	if err := json.Unmarshal(raw, &status); err != nil {
		return fmt.Errorf("decode status of %s/%s: %w", store.Namespace, store.Name, err)
	}
	return statusapply.Apply(ctx, r.Client, FieldManager, store.Namespace, store.Name, status)
}

// condKey is what decides whether a condition changed enough for an event.
type condKey struct {
	status metav1.ConditionStatus
	reason string
}

// announce emits an event when CredentialsValid or ReceiverReady changed
// status or reason since the last announcement: transitions only, never
// periodic. Memory of the last announcement (seeded from the object after
// a restart) keeps a stale cache from announcing the same change twice.
// Messages are the condition messages, which never contain a secret.
func (r *SmaregiStoreReconciler) announce(store *smaregiv1alpha1.SmaregiStore, desired ownedStatus) {
	st := r.state(client.ObjectKeyFromObject(store))
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.announced == nil {
		st.announced = map[string]condKey{}
		for _, c := range store.Status.Conditions {
			st.announced[c.Type] = condKey{c.Status, c.Reason}
		}
	}
	for _, typ := range []string{smaregiv1alpha1.CredentialsValidCondition, smaregiv1alpha1.ReceiverReadyCondition} {
		c := meta.FindStatusCondition(desired.Conditions, typ)
		if c == nil {
			continue
		}
		k := condKey{c.Status, c.Reason}
		if prev, ok := st.announced[typ]; ok && prev == k {
			continue
		}
		st.announced[typ] = k
		eventType := corev1.EventTypeNormal
		if c.Status == metav1.ConditionFalse || c.Reason == smaregiv1alpha1.ReasonUnreachable {
			eventType = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(store, nil, eventType, c.Reason, "Check"+typ, "%s is %s: %s", typ, c.Status, c.Message)
	}
}
