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
)

// CredentialsRef locates a store's access token: a key of a Secret in the
// store's namespace (spec.credentialsRef).
type CredentialsRef struct {
	Namespace string
	Secret    string
	Key       string
}

// CredentialsRefOf returns the store's reference, with the default key.
func CredentialsRefOf(store *v1alpha1.SmaregiStore) CredentialsRef {
	return CredentialsRef{Namespace: store.Namespace, Secret: store.Spec.CredentialsRef.Name, Key: store.CredentialsKey()}
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

// ReadToken reads the access token from the Secret ref names. r should be an
// uncached reader: the manager's cache holds only the operator's own
// labelled Secrets, and caching every Secret would hold all of the
// cluster's secrets in memory.
func ReadToken(ctx context.Context, r client.Reader, ref CredentialsRef) (string, error) {
	var sec corev1.Secret
	err := r.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Secret}, &sec)
	if apierrors.IsNotFound(err) {
		return "", &ConfigError{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
			"Secret %q (spec.credentialsRef) not found in namespace %q: create it with the access token "+
				"(アクセストークン from %s) under key %q", ref.Secret, ref.Namespace, AdminPath, ref.Key)}
	}
	if err != nil {
		return "", fmt.Errorf("reading credentials Secret %s/%s: %w", ref.Namespace, ref.Secret, err)
	}
	if sec.Labels[v1alpha1.CredentialsLabel] != "true" {
		return "", &ConfigError{Reason: v1alpha1.ReasonSecretNotLabelled, Message: fmt.Sprintf(
			"Secret %q (spec.credentialsRef) is not labelled %s=true: the operator reads only Secrets that opt in. "+
				"Label it: kubectl label secret -n %s %s %s=true", ref.Secret, v1alpha1.CredentialsLabel,
			ref.Namespace, ref.Secret, v1alpha1.CredentialsLabel)}
	}
	token := CleanToken(sec.Data[ref.Key])
	if token == "" {
		return "", &ConfigError{Reason: v1alpha1.ReasonSecretKeyNotFound, Message: fmt.Sprintf(
			"Secret %q has no key %q (or it is empty): put the access token (アクセストークン) under that key, "+
				"or set spec.credentialsRef.key", ref.Secret, ref.Key)}
	}
	return token, nil
}

// CleanToken is the one trim rule for a token read from a Secret: a token
// pasted with `kubectl create secret --from-file` usually ends in a newline,
// which is not part of the token and would break the HTTP header.
func CleanToken(raw []byte) string { return strings.TrimSpace(string(raw)) }

// Tokens caches tokens read with ReadToken for a TTL. Smaregi's legacy
// tokens do not expire, so the TTL only bounds how long a rotated token
// takes to be used while Smaregi still accepts the old one; Forget drops a
// token at once (Smaregi rejected it, or the reference changed).
type Tokens struct {
	r     client.Reader
	ttl   time.Duration
	clock clock.PassiveClock

	mu sync.Mutex
	m  map[CredentialsRef]cachedToken
}

type cachedToken struct {
	token string
	at    time.Time
}

// NewTokens returns a cache reading Secrets with r (uncached, see ReadToken).
func NewTokens(r client.Reader, ttl time.Duration, c clock.PassiveClock) *Tokens {
	if c == nil {
		c = clock.RealClock{}
	}
	return &Tokens{r: r, ttl: ttl, clock: c, m: map[CredentialsRef]cachedToken{}}
}

// Token returns the token ref names, from the cache while it is fresh.
func (t *Tokens) Token(ctx context.Context, ref CredentialsRef) (string, error) {
	now := t.clock.Now()
	t.mu.Lock()
	c, ok := t.m[ref]
	t.mu.Unlock()
	if ok && now.Sub(c.at) < t.ttl {
		return c.token, nil
	}
	tok, err := ReadToken(ctx, t.r, ref)
	if err != nil {
		return "", err
	}
	t.mu.Lock()
	t.m[ref] = cachedToken{token: tok, at: now}
	t.mu.Unlock()
	return tok, nil
}

// Forget drops the cached token of ref.
func (t *Tokens) Forget(ref CredentialsRef) {
	t.mu.Lock()
	delete(t.m, ref)
	t.mu.Unlock()
}
