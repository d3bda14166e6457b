package storeaccess

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/answertext"
)

// CredentialsRef locates a store's credentials: a Secret in the store's
// namespace (spec.credentialsRef) and, for a legacy store, the key holding
// the access token. A Platform store's Secret holds the app's client ID and
// secret under fixed keys (v1alpha1.PlatformClientIDKey, …SecretKey).
type CredentialsRef struct {
	Namespace string
	Secret    string
	Key       string
	// API says which keys to read; empty means Legacy.
	API v1alpha1.StoreAPI
}

// CredentialsRefOf returns the store's reference, with the default key.
func CredentialsRefOf(store *v1alpha1.SmaregiStore) CredentialsRef {
	return CredentialsRef{Namespace: store.Namespace, Secret: store.Spec.CredentialsRef.Name, Key: store.CredentialsKey(),
		API: store.APIName()}
}

// Platform reports whether ref names a Platform app's credentials.
func (ref CredentialsRef) Platform() bool { return ref.API == v1alpha1.APIPlatform }

// Credentials are what a store's calls authenticate with: a legacy access
// token, or a Platform app's client ID and secret. Every field is secret
// (a client ID is not, but it is kept out of logs all the same): none
// enters an error, a log line or status.
type Credentials struct {
	AccessToken  string
	ClientID     string
	ClientSecret string
}

// Redact replaces every credential in s with "[redacted]": defence in
// depth for text that came from elsewhere (the clients already keep
// credentials out of their errors).
func (c Credentials) Redact(s string) string {
	return answertext.Redact(s, c.values()...)
}

// values lists the non-empty secrets, for redaction.
func (c Credentials) values() []string {
	var out []string
	for _, v := range []string{c.AccessToken, c.ClientID, c.ClientSecret} {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

// ConfigError is a problem only a person can fix in Kubernetes: the
// credentials Secret or its key is missing, or the store is suspended.
// Reason is a v1alpha1 condition reason; Message says what to do and never
// carries a secret. Callers treat it as terminal: no hot retry.
type ConfigError struct {
	Reason  string
	Message string
}

func (e *ConfigError) Error() string { return e.Message }

// IsConfigError reports whether err is, or wraps, a *ConfigError.
func IsConfigError(err error) bool {
	var ce *ConfigError
	return errors.As(err, &ce)
}

// ReadCredentials reads the credentials ref names: the access token under
// ref.Key (legacy), or the client ID and secret (Platform). r should be an
// uncached reader: the manager's cache holds only the operator's own
// labelled Secrets, and caching every Secret would hold all of the
// cluster's secrets in memory.
func ReadCredentials(ctx context.Context, r client.Reader, ref CredentialsRef) (Credentials, error) {
	var sec corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Secret}, &sec)
	if apierrors.IsNotFound(err) {
		return Credentials{}, &ConfigError{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
			"Secret %q (spec.credentialsRef) not found in namespace %q: create it with %s",
			ref.Secret, ref.Namespace, ref.wanted())}
	}
	if err != nil {
		return Credentials{}, fmt.Errorf("reading credentials Secret %s/%s: %w", ref.Namespace, ref.Secret, err)
	}
	if sec.Labels[v1alpha1.CredentialsLabel] != "true" {
		return Credentials{}, &ConfigError{Reason: v1alpha1.ReasonSecretNotLabelled, Message: fmt.Sprintf(
			"Secret %q (spec.credentialsRef) is not labelled %s=true: the operator reads only Secrets that opt in. "+
				"Label it: kubectl label secret -n %s %s %s=true", ref.Secret, v1alpha1.CredentialsLabel,
			ref.Namespace, ref.Secret, v1alpha1.CredentialsLabel)}
	}
	if !ref.Platform() {
		token := CleanToken(sec.Data[ref.Key])
		if token == "" {
			return Credentials{}, &ConfigError{Reason: v1alpha1.ReasonSecretKeyNotFound, Message: fmt.Sprintf(
				"Secret %q has no key %q (or it is empty): put the access token (アクセストークン) under that key, "+
					"or set spec.credentialsRef.key", ref.Secret, ref.Key)}
		}
		return Credentials{AccessToken: token}, nil
	}
	c := Credentials{
		ClientID:     CleanToken(sec.Data[v1alpha1.PlatformClientIDKey]),
		ClientSecret: CleanToken(sec.Data[v1alpha1.PlatformClientSecretKey]),
	}
	for _, k := range []struct{ key, value string }{
		{v1alpha1.PlatformClientIDKey, c.ClientID}, {v1alpha1.PlatformClientSecretKey, c.ClientSecret},
	} {
		if k.value == "" {
			return Credentials{}, &ConfigError{Reason: v1alpha1.ReasonSecretKeyNotFound, Message: fmt.Sprintf(
				"Secret %q has no key %q (or it is empty): a Platform store's Secret holds the app's client ID and client "+
					"secret from %s under the keys %s and %s", ref.Secret, k.key, DeveloperConsole,
				v1alpha1.PlatformClientIDKey, v1alpha1.PlatformClientSecretKey)}
		}
	}
	return c, nil
}

// wanted says what the Secret ref names must hold.
func (ref CredentialsRef) wanted() string {
	if ref.Platform() {
		return fmt.Sprintf("the app's client ID and client secret (from %s) under the keys %q and %q",
			DeveloperConsole, v1alpha1.PlatformClientIDKey, v1alpha1.PlatformClientSecretKey)
	}
	return fmt.Sprintf("the access token (アクセストークン from %s) under key %q", AdminPath, ref.Key)
}

// CleanToken is the one trim rule for a token read from a Secret: a token
// pasted with `kubectl create secret --from-file` usually ends in a newline,
// which is not part of the token and would break the HTTP header.
func CleanToken(raw []byte) string { return strings.TrimSpace(string(raw)) }

// Tokens caches credentials read with ReadCredentials for a TTL. Smaregi's
// legacy tokens and Platform client secrets do not expire, so the TTL only
// bounds how long rotated credentials take to be used while Smaregi still
// accepts the old ones; Forget drops them at once (Smaregi rejected them, or
// the reference changed). (Platform access tokens, which do expire, are the
// smaregiplatform.TokenCache's business.)
type Tokens struct {
	r     client.Reader
	ttl   time.Duration
	clock clock.PassiveClock

	mu sync.Mutex
	m  map[CredentialsRef]cachedToken
}

type cachedToken struct {
	creds Credentials
	at    time.Time
}

// NewTokens returns a cache reading Secrets with r (uncached, see
// ReadCredentials).
func NewTokens(r client.Reader, ttl time.Duration, c clock.PassiveClock) *Tokens {
	if c == nil {
		c = clock.RealClock{}
	}
	return &Tokens{r: r, ttl: ttl, clock: c, m: map[CredentialsRef]cachedToken{}}
}

// Credentials returns the credentials ref names, from the cache while they
// are fresh.
func (t *Tokens) Credentials(ctx context.Context, ref CredentialsRef) (Credentials, error) {
	now := t.clock.Now()
	t.mu.Lock()
	c, ok := t.m[ref]
	t.mu.Unlock()
	if ok && now.Sub(c.at) < t.ttl {
		return c.creds, nil
	}
	creds, err := ReadCredentials(ctx, t.r, ref)
	if err != nil {
		return Credentials{}, err
	}
	t.mu.Lock()
	t.m[ref] = cachedToken{creds: creds, at: now}
	t.mu.Unlock()
	return creds, nil
}

// Forget drops the cached credentials of ref.
func (t *Tokens) Forget(ref CredentialsRef) {
	t.mu.Lock()
	delete(t.m, ref)
	t.mu.Unlock()
}
