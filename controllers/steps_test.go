package controllers

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

func testStore() *smaregiv1alpha1.SmaregiStore {
	return &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "ns", UID: "uid-1", Generation: 2},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{
			ContractID: "ct", StoreID: "1",
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: "shop-token"},
		},
	}
}

func TestClassifyCheck(t *testing.T) {
	const token = "tok-SECRET-123456"
	apiErr := func(status, code int) error {
		return fmt.Errorf("check credentials for store 1: %w", &smaregi.APIError{ProcName: smaregi.ProcStockRef, HTTPStatus: status, Code: code})
	}
	cases := []struct {
		name    string
		err     error
		noRows  bool
		status  metav1.ConditionStatus
		reason  string
		outcome outcome
		hint    string
	}{
		{"ok", nil, false, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded, outcomeOK, ""},
		{"no stock rows", nil, true, metav1.ConditionTrue, smaregiv1alpha1.ReasonNoStockRows, outcomeOK, `no stock rows for store ID "1"`},
		{"13", apiErr(400, 13), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonInvalidAccessToken, outcomeStalled, "アクセストークン"},
		{"21", apiErr(400, 21), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonInvalidAccessToken, outcomeStalled, `"shop-token"`},
		{"14", apiErr(400, 14), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonInvalidContractID, outcomeStalled, "契約ID"},
		{"22", apiErr(400, 22), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonAccountLocked, outcomeStalled, "locked"},
		{"23", apiErr(400, 23), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonFunctionDisabled, outcomeStalled, "15 在庫情報参照"},
		{"24", apiErr(400, 24), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonIPNotAllowed, outcomeStalled, "IP"},
		{"5xx", apiErr(503, 0), false, metav1.ConditionUnknown, smaregiv1alpha1.ReasonUnreachable, outcomeRetrying, ""},
		{"dial", &smaregi.TransportError{ProcName: smaregi.ProcStockRef, Err: errors.New("connection refused")},
			false, metav1.ConditionUnknown, smaregiv1alpha1.ReasonUnreachable, outcomeRetrying, "connection refused"},
		{"other code", apiErr(400, 43), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonSmaregiError, outcomeRetrying, "error_code 43"},
		{"leaky", errors.New("weird failure with " + token), false, metav1.ConditionFalse, smaregiv1alpha1.ReasonSmaregiError, outcomeRetrying, "[redacted]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := classifyCheck(c.err, !c.noRows, testStore(), storeaccess.Credentials{AccessToken: token}.Redact)
			if got.status != c.status || got.reason != c.reason || got.outcome != c.outcome {
				t.Errorf("got %s/%s/%d, want %s/%s/%d", got.status, got.reason, got.outcome, c.status, c.reason, c.outcome)
			}
			if !strings.Contains(got.message, c.hint) {
				t.Errorf("message %q lacks %q", got.message, c.hint)
			}
			if strings.Contains(got.message, token) {
				t.Errorf("message leaks the token: %q", got.message)
			}
		})
	}
}

func TestBackoffAndJitter(t *testing.T) {
	limit := 10 * time.Minute
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second}
	for i, w := range want {
		if got := backoff(i+1, limit); got != w {
			t.Errorf("backoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := backoff(50, limit); got != limit {
		t.Errorf("backoff(50) = %s, want the cap %s", got, limit)
	}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := jitter(limit)
		if d < 9*time.Minute || d > 11*time.Minute {
			t.Fatalf("jitter(10m) = %s, outside ±10%%", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter produced only %d distinct values", len(seen))
	}
}

func keySecretFor(param string, key []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: smaregiv1alpha1.ContractKeySecretName("sk1"), Namespace: "ns",
			Labels:      map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
			Annotations: map[string]string{smaregiv1alpha1.ParameterNameAnnotation: param}},
		Data: map[string][]byte{param: key},
	}
}

func TestLayoutKeySecretRotationAndExpiry(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	grace := 24 * time.Hour
	store := testStore()
	sec := keySecretFor("goqsystem_key", []byte("k1"))

	if acts := layoutKeySecret(sec, store, "goqsystem_key", now, grace); len(acts) != 0 {
		t.Fatalf("a settled Secret produced actions %+v", acts)
	}

	store.Annotations = map[string]string{smaregiv1alpha1.RotateKeyAnnotation: "r1"}
	acts := layoutKeySecret(sec, store, "goqsystem_key", now, grace)
	if len(acts) != 1 || acts[0].reason != "KeyRotated" {
		t.Fatalf("actions %+v, want one rotation", acts)
	}
	k2 := string(sec.Data["goqsystem_key"])
	if k2 == "k1" || len(k2) != 43 || string(sec.Data["goqsystem_key.previous"]) != "k1" {
		t.Fatalf("after rotation: current %q, previous %q", k2, sec.Data["goqsystem_key.previous"])
	}
	if got := sec.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]; got != "2026-11-27T09:00:00Z" {
		t.Fatalf("expiry %q", got)
	}
	for _, a := range acts {
		if strings.Contains(a.note, k2) || strings.Contains(a.note, "k1") {
			t.Fatalf("event note leaks a key: %q", a.note)
		}
	}

	// Same annotation again: nothing to do, even long after.
	if acts := layoutKeySecret(sec, store, "goqsystem_key", now.Add(time.Hour), grace); len(acts) != 0 {
		t.Fatalf("second pass with the same rotate-key produced %+v", acts)
	}
	// At expiry the previous key goes, the current one stays.
	acts = layoutKeySecret(sec, store, "goqsystem_key", now.Add(grace), grace)
	if len(acts) != 1 || acts[0].reason != "PreviousKeyExpired" {
		t.Fatalf("actions at expiry %+v", acts)
	}
	if _, ok := sec.Data["goqsystem_key.previous"]; ok || string(sec.Data["goqsystem_key"]) != k2 {
		t.Fatalf("after expiry: %v", sec.Data)
	}
	if _, ok := sec.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]; ok {
		t.Fatal("expiry annotation left behind")
	}
}

func TestLayoutKeySecretUnreadableExpiryCountsAsExpired(t *testing.T) {
	sec := keySecretFor("goqsystem_key", []byte("k2"))
	sec.Data["goqsystem_key.previous"] = []byte("k1")
	sec.Annotations = map[string]string{smaregiv1alpha1.PreviousKeyExpiresAnnotation: "tomorrow"}
	layoutKeySecret(sec, testStore(), "goqsystem_key", time.Now(), time.Hour)
	if _, ok := sec.Data["goqsystem_key.previous"]; ok {
		t.Fatal("a previous key with an unreadable expiry was kept")
	}
}

func TestLayoutKeySecretMovesRenamedParameter(t *testing.T) {
	store := testStore()
	store.Status.Receiver = &smaregiv1alpha1.ReceiverStatus{ParameterName: "goqsystem_key"}
	sec := keySecretFor("goqsystem_key", []byte("k1"))
	sec.Data["goqsystem_key.previous"] = []byte("k0")
	sec.Annotations = map[string]string{smaregiv1alpha1.PreviousKeyExpiresAnnotation: "2999-01-01T00:00:00Z"}

	acts := layoutKeySecret(sec, store, "stocksync_key", time.Now(), time.Hour)
	if len(acts) != 1 || acts[0].reason != "KeyMoved" {
		t.Fatalf("actions %+v, want a move", acts)
	}
	if string(sec.Data["stocksync_key"]) != "k1" || string(sec.Data["stocksync_key.previous"]) != "k0" || len(sec.Data) != 2 {
		t.Fatalf("after the move: %v", sec.Data)
	}

	// Without a status, the only current key is the old one.
	store.Status.Receiver = nil
	sec = keySecretFor("old_name", []byte("k1"))
	layoutKeySecret(sec, store, "new_name", time.Now(), time.Hour)
	if string(sec.Data["new_name"]) != "k1" {
		t.Fatalf("without status: %v", sec.Data)
	}
}

func TestConditionKeepsTransitionTimeWhileStatusHolds(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	existing := []metav1.Condition{{Type: "Ready", Status: metav1.ConditionFalse, Reason: "A", LastTransitionTime: t0}}
	now := time.Date(2026, 2, 1, 0, 0, 0, 500, time.UTC)

	same := condition(existing, metav1.Condition{Type: "Ready", Status: metav1.ConditionFalse, Reason: "B"}, now)
	if !same.LastTransitionTime.Equal(&t0) {
		t.Errorf("reason change moved LastTransitionTime to %v", same.LastTransitionTime)
	}
	flipped := condition(existing, metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "B"}, now)
	if !flipped.LastTransitionTime.Time.Equal(now.Truncate(time.Second)) {
		t.Errorf("status change: LastTransitionTime %v, want %v", flipped.LastTransitionTime, now)
	}
}

func TestSummarizeReadyAndKstatus(t *testing.T) {
	now := time.Now()
	ok := stepResult{status: metav1.ConditionTrue, reason: "Succeeded", outcome: outcomeOK}
	bad := stepResult{status: metav1.ConditionFalse, reason: smaregiv1alpha1.ReasonFunctionDisabled, message: "switch it on", outcome: outcomeStalled}
	flaky := stepResult{status: metav1.ConditionUnknown, reason: smaregiv1alpha1.ReasonUnreachable, message: "down", outcome: outcomeRetrying}

	get := func(s ownedStatus, typ string) metav1.Condition {
		for _, c := range s.Conditions {
			if c.Type == typ {
				return c
			}
		}
		t.Fatalf("no %s", typ)
		return metav1.Condition{}
	}
	store := testStore()
	s := summarize(store, ok, ok, nil, now)
	if get(s, "Ready").Status != metav1.ConditionTrue || get(s, "Stalled").Status != metav1.ConditionFalse || get(s, "Reconciling").Status != metav1.ConditionFalse {
		t.Errorf("all good: %+v", s.Conditions)
	}
	s = summarize(store, bad, ok, nil, now)
	if r := get(s, "Ready"); r.Status != metav1.ConditionFalse || r.Reason != smaregiv1alpha1.ReasonFunctionDisabled {
		t.Errorf("Ready %+v, want False/FunctionDisabled", r)
	}
	if st := get(s, "Stalled"); st.Status != metav1.ConditionTrue || st.Message != "switch it on" {
		t.Errorf("Stalled %+v", st)
	}
	s = summarize(store, flaky, ok, nil, now)
	if r := get(s, "Reconciling"); r.Status != metav1.ConditionTrue || get(s, "Stalled").Status != metav1.ConditionFalse {
		t.Errorf("transient: Reconciling %+v, Stalled %+v", r, get(s, "Stalled"))
	}

	// InventorySynced=False (another writer's condition) holds Ready down
	// and is left out of what we apply.
	store.Status.Conditions = []metav1.Condition{{Type: smaregiv1alpha1.InventorySyncedCondition, Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonSyncFailed}}
	s = summarize(store, ok, ok, nil, now)
	if r := get(s, "Ready"); r.Status != metav1.ConditionFalse || r.Reason != smaregiv1alpha1.ReasonSyncFailed {
		t.Errorf("Ready %+v, want False/SyncFailed", r)
	}
	for _, c := range s.Conditions {
		if c.Type == smaregiv1alpha1.InventorySyncedCondition {
			t.Error("summarize would apply the sync engine's condition")
		}
	}
	// A receiver step that only hit an API hiccup keeps the published
	// receiver instead of withdrawing it.
	store.Status.Receiver = &smaregiv1alpha1.ReceiverStatus{URL: "https://x/smaregi/v1/uid-1"}
	s = summarize(store, ok, retrying(errors.New("etcd hiccup")), nil, now)
	if s.Receiver == nil || s.Receiver.URL != "https://x/smaregi/v1/uid-1" {
		t.Errorf("receiver withdrawn on a transient error: %+v", s.Receiver)
	}
}

// TestLayoutKeySecretRevokesThePreviousKeyAtOnce: revoke-previous-key ends a
// rotated-out key's grace now; each value acts once, and a later rotation's
// previous key is not revoked by the old value.
func TestLayoutKeySecretRevokesThePreviousKeyAtOnce(t *testing.T) {
	now := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	grace := 24 * time.Hour
	store := testStore()
	sec := keySecretFor("goqsystem_key", []byte("k1"))
	store.Annotations = map[string]string{smaregiv1alpha1.RotateKeyAnnotation: "r1"}
	layoutKeySecret(sec, store, "goqsystem_key", now, grace)
	current := string(sec.Data["goqsystem_key"])

	store.Annotations[smaregiv1alpha1.RevokePreviousKeyAnnotation] = "v1"
	acts := layoutKeySecret(sec, store, "goqsystem_key", now.Add(time.Minute), grace)
	if len(acts) != 1 || acts[0].reason != "PreviousKeyRevoked" || !strings.Contains(acts[0].note, "revoked at once") {
		t.Fatalf("actions %+v, want one revocation", acts)
	}
	if _, ok := sec.Data["goqsystem_key.previous"]; ok || string(sec.Data["goqsystem_key"]) != current {
		t.Fatalf("after revocation: %v", sec.Data)
	}
	if _, ok := sec.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]; ok {
		t.Fatal("expiry annotation left behind")
	}
	if strings.Contains(acts[0].note, "k1") || strings.Contains(acts[0].note, current) {
		t.Fatalf("event note leaks a key: %q", acts[0].note)
	}

	// A new rotation keeps its previous key despite the handled value.
	store.Annotations[smaregiv1alpha1.RotateKeyAnnotation] = "r2"
	layoutKeySecret(sec, store, "goqsystem_key", now.Add(time.Hour), grace)
	if string(sec.Data["goqsystem_key.previous"]) != current {
		t.Fatalf("the second rotation's previous key: %q", sec.Data["goqsystem_key.previous"])
	}
	if acts := layoutKeySecret(sec, store, "goqsystem_key", now.Add(2*time.Hour), grace); len(acts) != 0 {
		t.Fatalf("the handled revoke value acted again: %+v", acts)
	}
	// A new value revokes it.
	store.Annotations[smaregiv1alpha1.RevokePreviousKeyAnnotation] = "v2"
	if acts := layoutKeySecret(sec, store, "goqsystem_key", now.Add(3*time.Hour), grace); len(acts) != 1 || acts[0].reason != "PreviousKeyRevoked" {
		t.Fatalf("actions %+v, want the second revocation", acts)
	}
	if _, ok := sec.Data["goqsystem_key.previous"]; ok {
		t.Fatal("the second previous key survived its revocation")
	}
}
