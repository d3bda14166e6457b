package controllers_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

const (
	platClientID = "ctrl-app"
	platSecret   = "app-SECRET-7c2d90aa51"
)

// startPlatformSim serves a shop whose app platClientID/platSecret is
// installed for simContract; base is the API and identity base.
func startPlatformSim(t *testing.T) (srv *smaregisim.Server, base string, stop func()) {
	t.Helper()
	srv, err := smaregisim.New(smaregisim.Options{Contract: simContract, Token: simToken, Stores: []string{"1"}, Products: 3,
		InitialStock: 5, Seed: 1, Platform: smaregisim.PlatformOptions{ClientID: platClientID, ClientSecret: platSecret}})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	stop = func() { hs.Close(); _ = srv.Close() }
	t.Cleanup(stop)
	return srv, hs.URL + "/", stop
}

func platformStore(ns, name, base string) *smaregiv1alpha1.SmaregiStore {
	s := newStore(ns, name, base)
	s.Spec.API = smaregiv1alpha1.APIPlatform
	s.Spec.TokenEndpoint = base
	s.Spec.CredentialsRef.Name = name + "-app"
	return s
}

func appSecret(ns, name, secret string) *corev1.Secret {
	s := tokenSecret(ns, name, smaregiv1alpha1.PlatformClientIDKey, platClientID)
	s.Data[smaregiv1alpha1.PlatformClientSecretKey] = []byte(secret)
	return s
}

// Each Platform refusal is its own precise, Stalled condition with the
// remedy, checked once (no hot loop under unrelated events), and the fix
// recovers the store; an endpoint that is down is Unreachable and retried
// with back-off, not Stalled.
func TestPlatformRefusalsArePreciseConditions(t *testing.T) {
	cases := []struct {
		name   string
		secret string
		break_ func(*smaregisim.Server)
		fix    func(t *testing.T, ns string, srv *smaregisim.Server) // nil: fixed in Smaregi
		reason string
		hint   string
	}{
		{name: "bad-secret", secret: "wrong-" + platSecret, reason: smaregiv1alpha1.ReasonInvalidClient, hint: "clientSecret",
			fix: func(t *testing.T, ns string, _ *smaregisim.Server) {
				sec := &corev1.Secret{}
				if err := live.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: "bad-secret-app"}, sec); err != nil {
					t.Fatal(err)
				}
				sec.Data[smaregiv1alpha1.PlatformClientSecretKey] = []byte(platSecret)
				if err := live.Update(context.Background(), sec); err != nil {
					t.Fatal(err)
				}
			}},
		{name: "missing-scope", secret: platSecret, reason: smaregiv1alpha1.ReasonMissingScope, hint: "pos.stock:read",
			break_: func(s *smaregisim.Server) {
				_ = s.SetPlatform(smaregisim.PlatformSettings{Scopes: []string{smaregisim.ScopeProductsRead}})
			}},
		{name: "not-installed", secret: platSecret, reason: smaregiv1alpha1.ReasonAppNotInstalled, hint: "利用開始",
			break_: func(s *smaregisim.Server) {
				_ = s.SetPlatform(smaregisim.PlatformSettings{Installed: []string{"someone-else"}})
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv, base, _ := startPlatformSim(t)
			if c.break_ != nil {
				c.break_(srv)
			}
			ns := newNamespace(t)
			mustCreate(t, appSecret(ns, c.name+"-app", c.secret))
			mustCreate(t, platformStore(ns, c.name, base))
			st := waitCondition(t, ns, c.name, smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, c.reason)
			if s := cond(st, smaregiv1alpha1.StalledCondition); s.Status != metav1.ConditionTrue || s.Reason != c.reason {
				t.Errorf("Stalled = %+v, want True/%s", s, c.reason)
			}
			if msg := cond(st, smaregiv1alpha1.CredentialsValidCondition).Message; !strings.Contains(msg, c.hint) {
				t.Errorf("message %q should say what to fix (%q)", msg, c.hint)
			}
			first := checker.count(base)
			for range 3 {
				poke(t, ns, c.name)
				time.Sleep(time.Second)
			}
			if got := checker.count(base); got != first || got > 2 {
				t.Fatalf("credential checks went from %d to %d over 3s of unrelated events: hot loop", first, got)
			}
			assertNoSecretLeak(t, ns, c.name, platSecret)

			if c.fix == nil {
				// Fixed in Smaregi, not in Kubernetes: picked up at the
				// stalled re-check (hourly), as for the legacy API's
				// switched-off functions.
				return
			}
			c.fix(t, ns, srv)
			waitCondition(t, ns, c.name, smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)
		})
	}

	t.Run("endpoint-down", func(t *testing.T) {
		_, base, stop := startPlatformSim(t)
		stop()
		ns := newNamespace(t)
		mustCreate(t, appSecret(ns, "down-app", platSecret))
		mustCreate(t, platformStore(ns, "down", base))
		st := waitCondition(t, ns, "down", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionUnknown, smaregiv1alpha1.ReasonUnreachable)
		if s := cond(st, smaregiv1alpha1.StalledCondition); s.Status == metav1.ConditionTrue {
			t.Errorf("Stalled = %+v: an endpoint that is down is retried, not a person's to fix", s)
		}
		if msg := cond(st, smaregiv1alpha1.CredentialsValidCondition).Message; !strings.Contains(msg, "retrying in") {
			t.Errorf("message %q should say when it retries", msg)
		}
	})
}

// A Platform store without the app's keys is told which keys to add.
func TestPlatformSecretWithoutClientSecret(t *testing.T) {
	_, base, _ := startPlatformSim(t)
	ns := newNamespace(t)
	mustCreate(t, tokenSecret(ns, "half-app", smaregiv1alpha1.PlatformClientIDKey, platClientID))
	mustCreate(t, platformStore(ns, "half", base))
	st := waitCondition(t, ns, "half", smaregiv1alpha1.CredentialsValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonSecretKeyNotFound)
	if msg := cond(st, smaregiv1alpha1.CredentialsValidCondition).Message; !strings.Contains(msg, `"clientSecret"`) {
		t.Errorf("message %q should name the missing key", msg)
	}
}
