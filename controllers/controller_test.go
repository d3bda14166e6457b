package controllers_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

func TestGoodTokenBecomesReady(t *testing.T) {
	ctx := context.Background()
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken+"\n"))
	mustCreate(t, newStore(ns, "shop", s.endpoint))

	st := waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	for typ, want := range map[string]metav1.ConditionStatus{
		smaregiv1alpha1.CredentialsValidCondition: metav1.ConditionTrue,
		smaregiv1alpha1.ReceiverReadyCondition:    metav1.ConditionTrue,
		smaregiv1alpha1.StalledCondition:          metav1.ConditionFalse,
		smaregiv1alpha1.ReconcilingCondition:      metav1.ConditionFalse,
	} {
		if c := cond(st, typ); c.Status != want || c.ObservedGeneration != st.Generation {
			t.Errorf("%s = %s (gen %d), want %s (gen %d)", typ, c.Status, c.ObservedGeneration, want, st.Generation)
		}
	}
	if st.Status.ObservedGeneration != st.Generation {
		t.Errorf("observedGeneration %d, want %d", st.Status.ObservedGeneration, st.Generation)
	}
	rs := st.Status.Receiver
	if rs == nil {
		t.Fatal("status.receiver not published")
	}
	sec := keySecret(t, ns, "shop")
	if rs.RouteID != string(sec.UID) || rs.URL != receiverBase+"/smaregi/v1/"+string(sec.UID) {
		t.Errorf("receiver url %q routeID %q, want routeID = the contract key Secret's UID %q", rs.URL, rs.RouteID, sec.UID)
	}
	wantSecret := smaregiv1alpha1.ContractKeySecretName(simContract)
	if rs.ParameterName != "goqsystem_key" || rs.KeySecretRef == nil ||
		rs.KeySecretRef.Name != wantSecret || rs.KeySecretRef.Key != "goqsystem_key" {
		t.Errorf("receiver %+v, want parameter goqsystem_key in Secret %s", rs, wantSecret)
	}
	if sec.Labels[smaregiv1alpha1.ManagedByLabel] != smaregiv1alpha1.ManagedByValue ||
		sec.Annotations[smaregiv1alpha1.ContractIDAnnotation] != simContract {
		t.Errorf("key Secret labels %v annotations %v, want managed-by and the contract", sec.Labels, sec.Annotations)
	}
	if len(sec.OwnerReferences) != 1 || sec.OwnerReferences[0].UID != st.UID {
		t.Errorf("key Secret owners %+v, want the store", sec.OwnerReferences)
	}
	key := sec.Data["goqsystem_key"]
	raw, err := base64.RawURLEncoding.DecodeString(string(key))
	if err != nil || len(raw) != 32 {
		t.Errorf("receiver key is not 32 bytes in unpadded base64url (len %d, err %v)", len(raw), err)
	}

	// The manager caches only labelled Secrets: the user's token Secret
	// must be invisible to its cached client.
	if err := mgrClient.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-token"}, &corev1.Secret{}); !apierrors.IsNotFound(err) {
		t.Errorf("manager cache returned the credentials Secret (err %v); the Secret cache must be label-restricted", err)
	}
	// A transition event was recorded.
	eventually(t, waitLong, func() error {
		for _, e := range storeEvents(t, ns, "shop") {
			if e.Reason == smaregiv1alpha1.ReasonSucceeded && strings.Contains(e.Note, "CredentialsValid is True") {
				return nil
			}
		}
		return fmt.Errorf("no CredentialsValid event yet")
	})
	// The routeID is stable and Ready's transition time holds: a spec
	// change moves neither.
	before := rs.URL
	readySince := cond(st, smaregiv1alpha1.ReadyCondition).LastTransitionTime
	updateStore(t, ns, "shop", func(s *smaregiv1alpha1.SmaregiStore) { s.Spec.SafetyStock = 3 })
	eventually(t, waitLong, func() error {
		got := getStore(t, ns, "shop")
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("observedGeneration %d of %d", got.Status.ObservedGeneration, got.Generation)
		}
		if got.Status.Receiver == nil || got.Status.Receiver.URL != before {
			return fmt.Errorf("receiver URL moved to %+v", got.Status.Receiver)
		}
		if c := cond(got, smaregiv1alpha1.ReadyCondition); !c.LastTransitionTime.Equal(&readySince) || c.ObservedGeneration != got.Generation {
			return fmt.Errorf("Ready %+v, want generation %d and transition time %v", c, got.Generation, readySince)
		}
		return nil
	})
	assertNoSecretLeak(t, ns, "shop", simToken, string(key))
}

func TestBadTokenStallsWithoutHotLoop(t *testing.T) {
	ctx := context.Background()
	s := startSim(t)
	ns := newNamespace(t)
	const wrong = "tok-WRONG-5e1b77c0"
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", wrong))
	mustCreate(t, newStore(ns, "shop", s.endpoint))

	st := waitCondition(t, ns, "shop", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonInvalidAccessToken)
	if c := cond(st, smaregiv1alpha1.StalledCondition); c.Status != metav1.ConditionTrue || c.Reason != smaregiv1alpha1.ReasonInvalidAccessToken {
		t.Errorf("Stalled = %+v, want True/InvalidAccessToken", c)
	}
	if c := cond(st, smaregiv1alpha1.ReadyCondition); c.Status != metav1.ConditionFalse {
		t.Errorf("Ready = %+v, want False", c)
	}
	if msg := cond(st, smaregiv1alpha1.CredentialsValidCondition).Message; !strings.Contains(msg, "shop-token") || !strings.Contains(msg, "API受信設定") {
		t.Errorf("message %q should name the Secret and where to find the token", msg)
	}

	// Unrelated events (annotation changes) must not ask Smaregi again,
	// and nothing may loop in the background.
	callsAfterFirst := checker.count(s.endpoint)
	for range 3 {
		poke(t, ns, "shop")
		time.Sleep(time.Second)
	}
	if got := checker.count(s.endpoint); got != callsAfterFirst || got > 2 {
		t.Fatalf("credential checks went from %d to %d over 3s of unrelated events: hot loop", callsAfterFirst, got)
	}
	// At most one transition event for this reason, however often we
	// reconciled.
	n := 0
	for _, e := range storeEvents(t, ns, "shop") {
		if e.Reason == smaregiv1alpha1.ReasonInvalidAccessToken {
			n++
			if e.Type != corev1.EventTypeWarning {
				t.Errorf("event type %s, want Warning", e.Type)
			}
		}
	}
	if n > 1 {
		t.Errorf("%d InvalidAccessToken events, want one per transition", n)
	}

	// Fixing the token recovers at once: the Secret watch triggers and the
	// new token is checked regardless of the long stalled interval.
	sec := &corev1.Secret{}
	if err := live.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-token"}, sec); err != nil {
		t.Fatal(err)
	}
	sec.Data["accessToken"] = []byte(simToken)
	if err := live.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	if got := s.access.Load(); got > 4 {
		t.Errorf("simulator saw %d calls, want a handful", got)
	}
	assertNoSecretLeak(t, ns, "shop", wrong, simToken, string(keySecret(t, ns, "shop").Data["goqsystem_key"]))
}

func TestFunctionDisabledGivesTheHint(t *testing.T) {
	s := startSim(t)
	if err := s.SetAccount(smaregisim.Account{DisabledFunctions: []string{"stock_ref"}}); err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", s.endpoint))

	st := waitCondition(t, ns, "shop", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonFunctionDisabled)
	msg := cond(st, smaregiv1alpha1.CredentialsValidCondition).Message
	for _, want := range []string{"機能設定", "15 在庫情報参照", "利用する"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	if c := cond(st, smaregiv1alpha1.StalledCondition); c.Status != metav1.ConditionTrue {
		t.Errorf("Stalled = %+v, want True", c)
	}
	// The receiver does not depend on the credentials.
	if c := cond(st, smaregiv1alpha1.ReceiverReadyCondition); c.Status != metav1.ConditionTrue {
		t.Errorf("ReceiverReady = %+v, want True", c)
	}
	assertNoSecretLeak(t, ns, "shop", simToken)
}

func TestAccountLockedAndIPNotAllowed(t *testing.T) {
	s := startSim(t)
	ns := newNamespace(t)
	if err := s.SetAccount(smaregisim.Account{AllowedIPs: []string{"192.0.2.1"}}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, tokenSecret(ns, "ip-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "ip", s.endpoint))
	waitCondition(t, ns, "ip", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonIPNotAllowed)

	if err := s.SetAccount(smaregisim.Account{Locked: true}); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, tokenSecret(ns, "locked-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "locked", s.endpoint))
	waitCondition(t, ns, "locked", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonAccountLocked)
}

func TestMissingSecretStallsAndRecovers(t *testing.T) {
	ctx := context.Background()
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, newStore(ns, "shop", s.endpoint))

	st := waitCondition(t, ns, "shop", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonSecretNotFound)
	stalled := cond(st, smaregiv1alpha1.StalledCondition)
	if stalled.Status != metav1.ConditionTrue || !strings.Contains(stalled.Message, `"shop-token"`) {
		t.Errorf("Stalled = %+v, want True naming Secret shop-token", stalled)
	}
	if checker.count(s.endpoint) != 0 {
		t.Errorf("Smaregi was called without a token")
	}

	// A Secret without the key: SecretKeyNotFound, naming the key.
	mustCreate(t, tokenSecret(ns, "shop-token", "token", simToken))
	st = waitCondition(t, ns, "shop", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonSecretKeyNotFound)
	if msg := cond(st, smaregiv1alpha1.StalledCondition).Message; !strings.Contains(msg, `"accessToken"`) {
		t.Errorf("Stalled message %q should name the missing key", msg)
	}

	// Adding the key recovers without any requeue timer: the metadata
	// watch on Secrets brings the store back.
	sec := &corev1.Secret{}
	if err := live.Get(ctx, client.ObjectKey{Namespace: ns, Name: "shop-token"}, sec); err != nil {
		t.Fatal(err)
	}
	sec.Data["accessToken"] = []byte(simToken)
	if err := live.Update(ctx, sec); err != nil {
		t.Fatal(err)
	}
	st = waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	if c := cond(st, smaregiv1alpha1.StalledCondition); c.Status != metav1.ConditionFalse {
		t.Errorf("Stalled = %+v after recovery, want False", c)
	}
	assertNoSecretLeak(t, ns, "shop", simToken)
}

func TestUnreachableBacksOff(t *testing.T) {
	ns := newNamespace(t)
	// A port nobody listens on: take one from a closed test server.
	s := startSim(t)
	dead := strings.Replace(s.endpoint, "127.0.0.1", "127.0.0.2", 1)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", dead))

	st := waitCondition(t, ns, "shop", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionUnknown, smaregiv1alpha1.ReasonUnreachable)
	if c := cond(st, smaregiv1alpha1.ReconcilingCondition); c.Status != metav1.ConditionTrue || c.Reason != smaregiv1alpha1.ReasonUnreachable {
		t.Errorf("Reconciling = %+v, want True/Unreachable", c)
	}
	if c := cond(st, smaregiv1alpha1.StalledCondition); c.Status != metav1.ConditionFalse {
		t.Errorf("Stalled = %+v, want False for a transient failure", c)
	}
	// The first retry comes after ~5s (the fake clock does not move, so
	// the memo holds): over 3s, at most one further check.
	first := checker.count(dead)
	time.Sleep(3 * time.Second)
	if got := checker.count(dead); got > first+1 {
		t.Errorf("%d checks within 3s after the first %d: not backing off", got, first)
	}
}

func TestSuspendMakesNoCalls(t *testing.T) {
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	store := newStore(ns, "shop", s.endpoint)
	store.Spec.Suspend = true
	mustCreate(t, store)

	st := waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonSuspended)
	if c := cond(st, smaregiv1alpha1.CredentialsValidCondition); c.Reason != smaregiv1alpha1.ReasonSuspended {
		t.Errorf("CredentialsValid = %+v, want reason Suspended", c)
	}
	// Sends are still recorded while suspended, so the receiver is kept.
	if st.Status.Receiver == nil || st.Status.Receiver.URL == "" {
		t.Errorf("receiver not published while suspended")
	}
	if n := s.access.Load(); n != 0 {
		t.Errorf("suspended store called Smaregi %d times", n)
	}

	updateStore(t, ns, "shop", func(s *smaregiv1alpha1.SmaregiStore) { s.Spec.Suspend = false })
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
}

func TestAPIServerRejectsInvalidSpecs(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	s := startSim(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	store := newStore(ns, "shop", s.endpoint)
	mustCreate(t, store)

	// Merge patches carry no resourceVersion, so the controller's status
	// writes cannot turn the expected rejection into a conflict.
	patchSpec := func(spec string) error {
		return live.Patch(ctx, getStore(t, ns, "shop"), client.RawPatch(types.MergePatchType, []byte(`{"spec":`+spec+`}`)))
	}
	if err := patchSpec(`{"contractID":"other"}`); err == nil || !strings.Contains(err.Error(), "contractID is immutable") {
		t.Errorf("changing contractID: err %v, want rejection", err)
	}
	if err := patchSpec(`{"storeID":"2"}`); err == nil || !strings.Contains(err.Error(), "storeID is immutable") {
		t.Errorf("changing storeID: err %v, want rejection", err)
	}
	if err := patchSpec(`{"endpoint":"http://10.0.0.1/access/"}`); err == nil || !strings.Contains(err.Error(), "spec.endpoint: Invalid value") ||
		!strings.Contains(err.Error(), "endpoint must use https") {
		t.Errorf("changing endpoint to plain http: err %v, want rejection", err)
	}

	plain := newStore(ns, "plain", "http://webapi.smaregi.jp/access/")
	if err := live.Create(ctx, plain); err == nil || !strings.Contains(err.Error(), "spec.endpoint: Invalid value") ||
		!strings.Contains(err.Error(), "endpoint must use https") {
		t.Errorf("http non-loopback endpoint: err %v, want rejection", err)
	}
	fast := newStore(ns, "fast", s.endpoint)
	fast.Spec.Sync.PollInterval = &metav1.Duration{Duration: 5 * time.Second}
	if err := live.Create(ctx, fast); err == nil || !strings.Contains(err.Error(), "spec.sync.pollInterval: Invalid value") ||
		!strings.Contains(err.Error(), "pollInterval must be at least 10s") {
		t.Errorf("pollInterval 5s: err %v, want rejection", err)
	}
	ok := newStore(ns, "ok", s.endpoint)
	ok.Spec.Sync.PollInterval = &metav1.Duration{Duration: 10 * time.Second}
	if err := live.Create(ctx, ok); err != nil {
		t.Errorf("pollInterval 10s rejected: %v", err)
	}
	if got := getStore(t, ns, "ok").Spec.API; got != smaregiv1alpha1.APILegacy {
		t.Errorf("spec.api defaulted to %q, want Legacy", got)
	}
	if err := patchSpec(`{"api":"Platform"}`); err == nil || !strings.Contains(err.Error(), "api is immutable") {
		t.Errorf("changing api: err %v, want rejection", err)
	}
	if err := patchSpec(`{"api":"Cloud"}`); err == nil || !strings.Contains(err.Error(), "spec.api: Unsupported value") {
		t.Errorf("api Cloud: err %v, want rejection", err)
	}
	legacyTok := newStore(ns, "legacy-token-endpoint", s.endpoint)
	legacyTok.Spec.TokenEndpoint = "https://id.smaregi.dev/"
	if err := live.Create(ctx, legacyTok); err == nil || !strings.Contains(err.Error(), "tokenEndpoint is set only with api: Platform") {
		t.Errorf("tokenEndpoint on a legacy store: err %v, want rejection", err)
	}
	plainTok := newStore(ns, "plain-token-endpoint", s.endpoint)
	plainTok.Spec.API = smaregiv1alpha1.APIPlatform
	plainTok.Spec.TokenEndpoint = "http://id.smaregi.dev/"
	if err := live.Create(ctx, plainTok); err == nil || !strings.Contains(err.Error(), "tokenEndpoint must use https") {
		t.Errorf("plain-http tokenEndpoint: err %v, want rejection", err)
	}
}

func TestKeyRotationAndParameterRename(t *testing.T) {
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", s.endpoint))
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	k1 := string(keySecret(t, ns, "shop").Data["goqsystem_key"])

	rotatedAt := fakeClock.Now()
	updateStore(t, ns, "shop", func(s *smaregiv1alpha1.SmaregiStore) {
		s.Annotations = map[string]string{smaregiv1alpha1.RotateKeyAnnotation: "r1"}
	})
	st := waitCondition(t, ns, "shop", smaregiv1alpha1.ReceiverReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonKeyRotating)
	sec := keySecret(t, ns, "shop")
	k2 := string(sec.Data["goqsystem_key"])
	if k2 == "" || k2 == k1 {
		t.Fatalf("key not replaced by the rotation")
	}
	if string(sec.Data["goqsystem_key.previous"]) != k1 {
		t.Fatalf("old key not kept under goqsystem_key.previous")
	}
	exp, err := time.Parse(time.RFC3339, sec.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation])
	if err != nil {
		t.Fatalf("expiry annotation: %v", err)
	}
	if d := exp.Sub(rotatedAt); d < 24*time.Hour-2*time.Second || d > 24*time.Hour+2*time.Second {
		t.Errorf("previous key expires %s after the rotation, want the 24h grace", d)
	}
	if st.Status.Receiver.LastRotation != "r1" || st.Status.Receiver.PreviousKeyExpiresAt == nil ||
		!st.Status.Receiver.PreviousKeyExpiresAt.Time.Equal(exp) {
		t.Errorf("status.receiver %+v, want lastRotation r1 and the expiry", st.Status.Receiver)
	}
	if c := cond(st, smaregiv1alpha1.ReadyCondition); c.Status != metav1.ConditionTrue {
		t.Errorf("Ready = %+v during the grace period, want True", c)
	}

	// Reconciling again within the grace keeps both keys and does not
	// rotate a second time.
	poke(t, ns, "shop")
	time.Sleep(time.Second)
	sec = keySecret(t, ns, "shop")
	if string(sec.Data["goqsystem_key"]) != k2 || string(sec.Data["goqsystem_key.previous"]) != k1 {
		t.Fatalf("keys changed on a reconcile without a new rotate-key value")
	}

	// After the grace period the previous key goes.
	fakeClock.Step(24*time.Hour + time.Minute)
	poke(t, ns, "shop")
	eventually(t, waitLong, func() error {
		sec = keySecret(t, ns, "shop")
		if _, ok := sec.Data["goqsystem_key.previous"]; ok {
			return fmt.Errorf("previous key still present")
		}
		if _, ok := sec.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]; ok {
			return fmt.Errorf("expiry annotation still present")
		}
		return nil
	})
	if string(sec.Data["goqsystem_key"]) != k2 {
		t.Fatalf("current key changed when the previous one expired")
	}
	st = waitCondition(t, ns, "shop", smaregiv1alpha1.ReceiverReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonKeyProvisioned)
	if st.Status.Receiver.PreviousKeyExpiresAt != nil {
		t.Errorf("previousKeyExpiresAt %v still in status", st.Status.Receiver.PreviousKeyExpiresAt)
	}

	// Renaming the parameter moves the value: the shop keeps its key.
	updateStore(t, ns, "shop", func(s *smaregiv1alpha1.SmaregiStore) { s.Spec.Receiver.ParameterName = "stocksync_key" })
	eventually(t, waitLong, func() error {
		got := getStore(t, ns, "shop")
		if got.Status.Receiver == nil || got.Status.Receiver.ParameterName != "stocksync_key" ||
			got.Status.Receiver.KeySecretRef.Key != "stocksync_key" {
			return fmt.Errorf("receiver %+v", got.Status.Receiver)
		}
		return nil
	})
	sec = keySecret(t, ns, "shop")
	if string(sec.Data["stocksync_key"]) != k2 {
		t.Errorf("key not moved to stocksync_key")
	}
	if _, ok := sec.Data["goqsystem_key"]; ok {
		t.Errorf("old parameter key left behind")
	}
	assertNoSecretLeak(t, ns, "shop", simToken, k1, k2)
}

func TestForeignKeySecretIsNotOverwritten(t *testing.T) {
	s := startSim(t)
	ns := newNamespace(t)
	foreign := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: smaregiv1alpha1.ContractKeySecretName(simContract)},
		Data:       map[string][]byte{"goqsystem_key": []byte("someone-elses-value-123")},
	}
	mustCreate(t, foreign)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", s.endpoint))

	st := waitCondition(t, ns, "shop", smaregiv1alpha1.ReceiverReadyCondition, metav1.ConditionFalse, "KeySecretConflict")
	if c := cond(st, smaregiv1alpha1.StalledCondition); c.Status != metav1.ConditionTrue {
		t.Errorf("Stalled = %+v, want True", c)
	}
	got := keySecret(t, ns, "shop")
	if string(got.Data["goqsystem_key"]) != "someone-elses-value-123" || len(got.OwnerReferences) != 0 {
		t.Errorf("foreign Secret was modified")
	}
	assertNoSecretLeak(t, ns, "shop", "someone-elses-value-123", simToken)
}

// applyInventorySynced plays the sync engine: another field manager
// applying only its own condition.
func applyInventorySynced(t *testing.T, ns, name string, status metav1.ConditionStatus, reason string) {
	t.Helper()
	applyInventorySyncedMessage(t, ns, name, status, reason, "from the test's sync engine")
}

func applyInventorySyncedMessage(t *testing.T, ns, name string, status metav1.ConditionStatus, reason, message string) {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": smaregiv1alpha1.GroupVersion.String(),
		"kind":       "SmaregiStore",
		"metadata":   map[string]any{"name": name, "namespace": ns},
		"status": map[string]any{"conditions": []any{map[string]any{
			"type": smaregiv1alpha1.InventorySyncedCondition, "status": string(status), "reason": reason,
			"message": message, "lastTransitionTime": time.Now().UTC().Format(time.RFC3339),
		}}},
	}}
	if err := live.Status().Apply(context.Background(), client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner("test-sync-engine"), client.ForceOwnership); err != nil {
		t.Fatalf("apply InventorySynced: %v", err)
	}
}

func TestOtherWritersConditionsSurviveAndFeedReady(t *testing.T) {
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", s.endpoint))
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)

	applyInventorySynced(t, ns, "shop", metav1.ConditionFalse, smaregiv1alpha1.ReasonSyncFailed)
	st := waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonSyncFailed)
	if c := cond(st, smaregiv1alpha1.InventorySyncedCondition); c.Status != metav1.ConditionFalse {
		t.Fatalf("the controller's status write dropped InventorySynced: %+v", st.Status.Conditions)
	}
	// Our writes touch only our conditions: a spec change (new status
	// write) keeps the other manager's condition.
	updateStore(t, ns, "shop", func(s *smaregiv1alpha1.SmaregiStore) { s.Spec.SafetyStock = 1 })
	eventually(t, waitLong, func() error {
		got := getStore(t, ns, "shop")
		if got.Status.ObservedGeneration != got.Generation {
			return fmt.Errorf("not yet reconciled")
		}
		if c := cond(got, smaregiv1alpha1.InventorySyncedCondition); c.Status != metav1.ConditionFalse {
			return fmt.Errorf("InventorySynced lost: %+v", got.Status.Conditions)
		}
		return nil
	})

	applyInventorySynced(t, ns, "shop", metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
}

// The manager's cache holds no managedFields (CacheOptions: they were most
// of a cached store's memory), and writing from stripped objects loses
// nothing on the server: the second store's Update of the shared key Secret
// (made from the cached copy) keeps the Secret's managedFields, and the
// status applies still record their field managers.
func TestCacheHoldsNoManagedFields(t *testing.T) {
	ctx := context.Background()
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, tokenSecret(ns, "second-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", s.endpoint))
	second := newStore(ns, "second", s.endpoint)
	second.Spec.StoreID = "2"
	mustCreate(t, second)
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
	waitCondition(t, ns, "second", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)

	sec := keySecret(t, ns, "shop")
	if len(sec.OwnerReferences) != 2 {
		t.Errorf("key Secret owners %v, want both stores (the second joined by an Update from the cache)", sec.OwnerReferences)
	}
	if len(sec.ManagedFields) == 0 {
		t.Error("the key Secret lost its managedFields on the server after an Update from a stripped object")
	}
	if st := getStore(t, ns, "shop"); len(st.ManagedFields) < 2 {
		t.Errorf("store managedFields on the server %v, want the creator's and the status writer's", st.ManagedFields)
	}

	var cachedStore smaregiv1alpha1.SmaregiStore
	if err := mgrClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: "shop"}, &cachedStore); err != nil {
		t.Fatal(err)
	}
	var cachedSecret corev1.Secret
	if err := mgrClient.Get(ctx, types.NamespacedName{Namespace: ns, Name: sec.Name}, &cachedSecret); err != nil {
		t.Fatal(err)
	}
	if len(cachedStore.ManagedFields) != 0 || len(cachedSecret.ManagedFields) != 0 {
		t.Errorf("cached store has %d managedFields entries, cached key Secret %d: want none",
			len(cachedStore.ManagedFields), len(cachedSecret.ManagedFields))
	}
}

// Ready quotes InventorySynced's reason and message while it is False, so a
// new cause (still False) is taken over at once, not at the next re-check.
func TestReadyFollowsInventorySyncedCauseWhileFalse(t *testing.T) {
	s := startSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "shop-token", "accessToken", simToken))
	mustCreate(t, newStore(ns, "shop", s.endpoint))
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)

	applyInventorySyncedMessage(t, ns, "shop", metav1.ConditionFalse, smaregiv1alpha1.ReasonUnreachable, "Smaregi did not answer")
	waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonUnreachable)

	applyInventorySyncedMessage(t, ns, "shop", metav1.ConditionFalse, smaregiv1alpha1.ReasonFunctionDisabled, "switch on 15 在庫情報参照")
	st := waitCondition(t, ns, "shop", smaregiv1alpha1.ReadyCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonFunctionDisabled)
	if c := cond(st, smaregiv1alpha1.ReadyCondition); !strings.Contains(c.Message, "switch on 15 在庫情報参照") {
		t.Errorf("Ready message %q does not quote InventorySynced's", c.Message)
	}

	// Same reason, new message.
	applyInventorySyncedMessage(t, ns, "shop", metav1.ConditionFalse, smaregiv1alpha1.ReasonFunctionDisabled, "switch on 4 在庫情報更新 too")
	eventually(t, waitLong, func() error {
		c := cond(getStore(t, ns, "shop"), smaregiv1alpha1.ReadyCondition)
		if !strings.Contains(c.Message, "switch on 4 在庫情報更新 too") {
			return fmt.Errorf("Ready message %q", c.Message)
		}
		return nil
	})
}
