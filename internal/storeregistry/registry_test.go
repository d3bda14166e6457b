package storeregistry

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

func TestRetryNeeded(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base := StoreConfig{Generation: 1, CredentialsSecret: "s", CredentialsKey: "accessToken",
		CredentialsValid: metav1.ConditionFalse, CredentialsValidSince: t0}
	with := func(f func(*StoreConfig)) StoreConfig { c := base; f(&c); return c }
	cases := []struct {
		name string
		cur  StoreConfig
		want bool
	}{
		{"nothing changed", base, false},
		{"a resync request or status only", with(func(c *StoreConfig) { c.ResyncRequest = "1"; c.HandledResync = "0" }), false},
		{"new generation", with(func(c *StoreConfig) { c.Generation = 2 }), true},
		{"other Secret", with(func(c *StoreConfig) { c.CredentialsSecret = "t" }), true},
		{"other key", with(func(c *StoreConfig) { c.CredentialsKey = "token" }), true},
		{"credentials turned valid", with(func(c *StoreConfig) {
			c.CredentialsValid, c.CredentialsValidSince = metav1.ConditionTrue, t0.Add(time.Minute)
		}), true},
		{"credentials turned invalid", with(func(c *StoreConfig) { c.CredentialsValidSince = t0.Add(time.Minute) }), false},
	}
	for _, c := range cases {
		if got := RetryNeeded(base, c.cur); got != c.want {
			t.Errorf("%s: RetryNeeded = %v, want %v", c.name, got, c.want)
		}
	}
	valid := with(func(c *StoreConfig) { c.CredentialsValid = metav1.ConditionTrue })
	if RetryNeeded(valid, valid) {
		t.Error("a re-list with CredentialsValid still True asks for a retry")
	}
	if !RetryNeeded(valid, with(func(c *StoreConfig) {
		c.CredentialsValid, c.CredentialsValidSince = metav1.ConditionTrue, t0.Add(time.Hour)
	})) {
		t.Error("True with a new transition time (a False in between) does not ask for a retry")
	}
}

type recorder struct {
	updates []bool // retry flags
	removed []inventory.StoreKey
}

func (r *recorder) StoreUpdated(_ StoreConfig, retry bool) { r.updates = append(r.updates, retry) }
func (r *recorder) StoreRemoved(_ context.Context, key inventory.StoreKey) error {
	r.removed = append(r.removed, key)
	return nil
}

func TestRegistryNotifiesAndResolvesTargets(t *testing.T) {
	key := inventory.StoreKey{Namespace: "shop", Name: "shibuya"}
	reg := New()
	rec := &recorder{}
	reg.Subscribe(rec)
	secrets := fake.NewClientBuilder().WithObjects(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "creds", Labels: map[string]string{v1alpha1.CredentialsLabel: "true"}},
		Data:       map[string][]byte{"accessToken": []byte("tok-1\n")},
	}).Build()
	targets := Targets{Registry: reg, Tokens: storeaccess.NewTokens(secrets, time.Minute, nil)}
	ctx := context.Background()

	if _, err := targets.Target(ctx, key); err == nil || storeaccess.IsConfigError(err) {
		t.Errorf("unknown store: err = %v, want a plain error", err)
	}
	cfg := StoreConfig{Key: key, Generation: 1, ContractID: "sk1", StoreID: "1", CredentialsSecret: "creds"}
	reg.Upsert(cfg)
	reg.Upsert(cfg)
	cfg.Generation = 2
	cfg.Suspend = true
	reg.Upsert(cfg)
	if want := []bool{false, false, true}; len(rec.updates) != 3 || rec.updates[0] != want[0] || rec.updates[1] != want[1] || rec.updates[2] != want[2] {
		t.Errorf("retry flags %v, want %v", rec.updates, want)
	}
	var ce *storeaccess.ConfigError
	if _, err := targets.Target(ctx, key); !errors.As(err, &ce) || ce.Reason != v1alpha1.ReasonSuspended {
		t.Errorf("suspended store: err = %v, want a Suspended ConfigError", err)
	}
	cfg.Suspend = false
	reg.Upsert(cfg)
	got, err := targets.Target(ctx, key)
	want := storeaccess.Target{API: v1alpha1.APILegacy, Endpoint: v1alpha1.DefaultEndpoint, ContractID: "sk1", StoreID: "1", Credentials: storeaccess.Credentials{AccessToken: "tok-1"}}
	if err != nil || got != want {
		t.Errorf("Target = %+v, %v; want %+v (defaults filled, token trimmed)", got, err, want)
	}
	if err := reg.Remove(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := reg.Get(key); ok || len(rec.removed) != 1 {
		t.Errorf("after Remove: known %v, removals %v", ok, rec.removed)
	}
}
