package mirror

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
)

func TestStatusWritesAreRateLimitedButConditionChangesGoOutAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	writes := &countingStatus{}
	e, _ := newEngine(t, h, func(o *Options) {
		o.Clock = clk
		o.Status = writes
		o.StatusInterval = 5 * time.Second
	})
	ctx := context.Background()
	// The engine's loops are not running: sync and flushStatus are driven
	// by hand so the fake clock alone decides.
	pull := func() {
		e.RequestPull(testKey, TriggerSend)
		e.sync(ctx, testKey)
	}
	e.UpsertStore(h.config())
	e.sync(ctx, testKey) // initial import: InventorySynced becomes True
	if n := e.flushStatus(ctx); n != 1 {
		t.Fatalf("first flush wrote %d, want 1 (the new condition)", n)
	}
	for i := range 10 {
		h.clk.Advance(time.Second)
		sale(t, h, "1", "8000001", 1)
		pull()
		clk.Step(400 * time.Millisecond)
		if n := e.flushStatus(ctx); n != 0 {
			t.Fatalf("pull %d: %d status writes within 5 s of the last one, want 0", i, n)
		}
	}
	clk.Step(time.Second) // 5 s since the first write
	if n := e.flushStatus(ctx); n != 1 {
		t.Fatalf("after the interval: %d writes, want 1", n)
	}
	if n := e.flushStatus(ctx); n != 0 {
		t.Fatalf("nothing new: %d writes, want 0", n)
	}

	// The function is switched off: the condition flips and is written
	// without waiting for the interval.
	if err := h.sim.SetAccount(smaregisim.Account{DisabledFunctions: []string{"stock_ref"}}); err != nil {
		t.Fatal(err)
	}
	clk.Step(time.Second)
	pull()
	if n := e.flushStatus(ctx); n != 1 {
		t.Fatalf("condition change: %d writes, want 1 at once", n)
	}
	s, _ := e.Snapshot(testKey)
	if s.Condition.Reason != v1alpha1.ReasonFunctionDisabled || !s.Condition.LastTransitionTime.Time.Equal(clk.Now()) {
		t.Errorf("condition %+v", s.Condition)
	}
	// Triggers during the back-off wait for it; nothing is written either.
	pull()
	if got := h.refCalls.Load(); got != 12 {
		t.Errorf("%d stock_ref calls, want 12 (import, 10 pulls, 1 failed; none during the back-off)", got)
	}
	if n := e.flushStatus(ctx); n != 0 {
		t.Errorf("%d writes during the back-off", n)
	}
}

func TestApplyObjectClaimsOnlyTheEnginesFields(t *testing.T) {
	u := StatusUpdate{
		Key: testKey,
		Condition: metav1.Condition{Type: v1alpha1.InventorySyncedCondition, Status: metav1.ConditionTrue,
			Reason: v1alpha1.ReasonSucceeded, Message: "ok", ObservedGeneration: 3,
			LastTransitionTime: metav1.NewTime(time.Date(2026, 12, 1, 1, 2, 3, 0, time.UTC))},
		SKUs: 7, LastPullTime: time.Date(2026, 12, 1, 1, 2, 4, 0, time.UTC), LastFullSyncDuration: 1500 * time.Millisecond,
	}
	status := statusFields(u)
	for k := range status {
		if k != "conditions" && k != "inventory" {
			t.Errorf("the engine claims status.%s", k)
		}
	}
	obj := map[string]any{"apiVersion": v1alpha1.GroupVersion.String(), "kind": "SmaregiStore", "status": status}
	// It must decode into the typed object as the API server will see it.
	var typed v1alpha1.SmaregiStore
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj, &typed); err != nil {
		t.Fatalf("apply object does not fit the type: %v", err)
	}
	if len(typed.Status.Conditions) != 1 || typed.Status.Conditions[0].ObservedGeneration != 3 ||
		typed.Status.Inventory == nil || typed.Status.Inventory.SKUs != 7 ||
		typed.Status.Inventory.LastFullSyncDuration.Duration != 1500*time.Millisecond ||
		typed.Status.Inventory.LastFullSyncTime != nil || typed.Status.Inventory.LastPullTime == nil {
		t.Errorf("decoded status %+v / %+v", typed.Status.Conditions, typed.Status.Inventory)
	}
	if typed.Status.Receiver != nil {
		t.Error("the apply object claims status.receiver")
	}
}

// TestClassifyCredentialsErrors: a missing Secret or key, read through the
// operator's one token cache, is a configuration error of the pull.
func TestClassifyCredentialsErrors(t *testing.T) {
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "smaregi-credentials",
		Labels: map[string]string{v1alpha1.CredentialsLabel: "true"}},
		Data: map[string][]byte{"accessToken": []byte(testToken + "\n")}}
	c := fake.NewClientBuilder().WithObjects(sec).Build()
	ts := storeaccess.NewTokens(c, time.Minute, clocktesting.NewFakeClock(time.Now()))
	ctx := context.Background()
	cfg := newHarnessConfigOnly()

	if c, err := ts.Credentials(ctx, cfg.Credentials()); err != nil || c.AccessToken != testToken {
		t.Fatalf("Credentials: %v; want the trimmed token", err)
	}
	missingKey := cfg
	missingKey.CredentialsKey = "token"
	_, err := ts.Credentials(ctx, missingKey.Credentials())
	if f := classify(err, missingKey); f.reason != v1alpha1.ReasonSecretKeyNotFound || !f.config || f.outcome != OutcomeConfigError {
		t.Errorf("missing key: %+v (%v)", f, err)
	}
	missing := cfg
	missing.CredentialsSecret = "nope"
	_, err = ts.Credentials(ctx, missing.Credentials())
	if f := classify(err, missing); f.reason != v1alpha1.ReasonSecretNotFound || !f.config || f.outcome != OutcomeConfigError {
		t.Errorf("missing Secret: %+v (%v)", f, err)
	}
}

func newHarnessConfigOnly() storeregistry.StoreConfig {
	return storeregistry.StoreConfig{Key: testKey, CredentialsSecret: "smaregi-credentials", CredentialsKey: "accessToken", ContractID: testContract}
}
