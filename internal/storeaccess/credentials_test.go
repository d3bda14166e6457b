package storeaccess

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
)

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name,
		Labels: map[string]string{v1alpha1.CredentialsLabel: "true"}}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func TestReadCredentials(t *testing.T) {
	r := fake.NewClientBuilder().WithObjects(
		secret("from-file", map[string]string{"accessToken": "tok-123\n"}),
		secret("crlf", map[string]string{"accessToken": "  tok-456\r\n"}),
		secret("blank", map[string]string{"accessToken": " \n"}),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-creds"},
			Data: map[string][]byte{"password": []byte("hunter2")}},
	).Build()
	ctx := context.Background()
	ref := func(name string) CredentialsRef {
		return CredentialsRef{Namespace: "shop", Secret: name, Key: "accessToken"}
	}

	for name, want := range map[string]string{"from-file": "tok-123", "crlf": "tok-456"} {
		got, err := ReadCredentials(ctx, r, ref(name))
		if err != nil || got != (Credentials{AccessToken: want}) {
			t.Errorf("%s: ReadCredentials = %v; want token %q", name, err, want)
		}
	}

	cases := []struct {
		ref    CredentialsRef
		reason string
		hint   string
	}{
		{ref("missing"), v1alpha1.ReasonSecretNotFound, `"missing"`},
		{ref("blank"), v1alpha1.ReasonSecretKeyNotFound, `"accessToken"`},
		{CredentialsRef{Namespace: "shop", Secret: "from-file", Key: "token"}, v1alpha1.ReasonSecretKeyNotFound, "spec.credentialsRef.key"},
		// A Secret that did not opt in is never read for its value: a
		// namespace editor cannot make the operator send db-creds away.
		{CredentialsRef{Namespace: "shop", Secret: "db-creds", Key: "password"}, v1alpha1.ReasonSecretNotLabelled,
			"kubectl label secret -n shop db-creds smaregi.stocksync.io/credentials=true"},
	}
	for _, c := range cases {
		_, err := ReadCredentials(ctx, r, c.ref)
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Reason != c.reason || !strings.Contains(ce.Message, c.hint) {
			t.Errorf("%+v: err = %v, want a ConfigError %s mentioning %s", c.ref, err, c.reason, c.hint)
		}
		if !IsConfigError(err) {
			t.Errorf("%+v: IsConfigError = false", c.ref)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%+v: the error carries the Secret's value", c.ref)
		}
	}
}

// countingReader counts Secret reads.
type countingReader struct {
	client.Reader
	n int
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.n++
	return c.Reader.Get(ctx, key, obj, opts...)
}

func TestTokensCacheForTTLAndForget(t *testing.T) {
	r := &countingReader{Reader: fake.NewClientBuilder().WithObjects(secret("s", map[string]string{"accessToken": "tok\n"})).Build()}
	clk := clocktesting.NewFakePassiveClock(time.Now())
	tokens := NewTokens(r, time.Minute, clk)
	ref := CredentialsRef{Namespace: "shop", Secret: "s", Key: "accessToken"}
	ctx := context.Background()
	read := func() {
		t.Helper()
		if c, err := tokens.Credentials(ctx, ref); err != nil || c.AccessToken != "tok" {
			t.Fatalf("Credentials: %v", err)
		}
	}
	read()
	read()
	if r.n != 1 {
		t.Errorf("%d Secret reads within the TTL, want 1", r.n)
	}
	clk.SetTime(clk.Now().Add(time.Minute))
	read()
	if r.n != 2 {
		t.Errorf("%d Secret reads after the TTL, want 2", r.n)
	}
	tokens.Forget(ref)
	read()
	if r.n != 3 {
		t.Errorf("%d Secret reads after Forget, want 3", r.n)
	}
	// A failed read is not cached.
	missing := CredentialsRef{Namespace: "shop", Secret: "nope", Key: "accessToken"}
	for range 2 {
		if _, err := tokens.Credentials(ctx, missing); !IsConfigError(err) {
			t.Fatalf("missing Secret: %v", err)
		}
	}
	if r.n != 5 {
		t.Errorf("%d Secret reads, want 5 (a missing Secret is read again)", r.n)
	}
}

// A Platform store's Secret holds the app's client ID and secret under fixed
// keys, trimmed by the one rule; a missing one names both keys.
func TestReadPlatformCredentials(t *testing.T) {
	r := fake.NewClientBuilder().WithObjects(
		secret("app", map[string]string{"clientID": "cid\n", "clientSecret": " csecret \n"}),
		secret("half", map[string]string{"clientID": "cid"}),
	).Build()
	ctx := context.Background()
	ref := func(name string) CredentialsRef {
		return CredentialsRef{Namespace: "shop", Secret: name, Key: "accessToken", API: v1alpha1.APIPlatform}
	}
	got, err := ReadCredentials(ctx, r, ref("app"))
	if err != nil || got != (Credentials{ClientID: "cid", ClientSecret: "csecret"}) {
		t.Fatalf("ReadCredentials = %v; want the trimmed client ID and secret", err)
	}
	if red := got.Redact("id cid secret csecret"); strings.Contains(red, "csecret") || strings.Contains(red, "cid") {
		t.Errorf("Redact left a credential: %q", red)
	}
	_, err = ReadCredentials(ctx, r, ref("half"))
	var ce *ConfigError
	if !errors.As(err, &ce) || ce.Reason != v1alpha1.ReasonSecretKeyNotFound || !strings.Contains(ce.Message, `"clientSecret"`) {
		t.Errorf("Secret without clientSecret: %v", err)
	}
	_, err = ReadCredentials(ctx, r, ref("missing"))
	if !errors.As(err, &ce) || ce.Reason != v1alpha1.ReasonSecretNotFound || !strings.Contains(ce.Message, "client ID and client secret") {
		t.Errorf("missing Secret: %v", err)
	}
}
