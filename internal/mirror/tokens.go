package mirror

import (
	"context"
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
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// TokenSource supplies a store's access token. Forget drops a cached token
// (after Smaregi rejected it, or the credentialsRef changed) so that the next
// Token reads it afresh.
type TokenSource interface {
	Token(ctx context.Context, cfg StoreConfig) (string, error)
	Forget(key inventory.StoreKey)
}

// SecretTokens reads access tokens from the Secrets that credentialsRef names,
// through an uncached reader (the manager's cache holds only the operator's
// labelled Secrets, and a cache of every Secret would hold every secret of
// the cluster in memory). Tokens are kept for a TTL: Smaregi tokens do not
// expire, so the TTL only bounds how long a rotated token takes to be used
// when Smaregi still accepts the old one.
type SecretTokens struct {
	r     client.Reader
	ttl   time.Duration
	clock clock.PassiveClock

	mu sync.Mutex
	m  map[inventory.StoreKey]cachedToken
}

type cachedToken struct {
	secret, key string
	token       string
	at          time.Time
}

// NewSecretTokens returns a TokenSource reading Secrets with r.
func NewSecretTokens(r client.Reader, ttl time.Duration, c clock.PassiveClock) *SecretTokens {
	return &SecretTokens{r: r, ttl: ttl, clock: c, m: map[inventory.StoreKey]cachedToken{}}
}

// Token returns the store's access token.
func (s *SecretTokens) Token(ctx context.Context, cfg StoreConfig) (string, error) {
	now := s.clock.Now()
	s.mu.Lock()
	c, ok := s.m[cfg.Key]
	s.mu.Unlock()
	if ok && c.secret == cfg.CredentialsSecret && c.key == cfg.CredentialsKey && now.Sub(c.at) < s.ttl {
		return c.token, nil
	}
	var sec corev1.Secret
	name := types.NamespacedName{Namespace: cfg.Key.Namespace, Name: cfg.CredentialsSecret}
	if err := s.r.Get(ctx, name, &sec); err != nil {
		if apierrors.IsNotFound(err) {
			return "", &CredentialsError{Reason: v1alpha1.ReasonSecretNotFound, Message: fmt.Sprintf(
				"Secret %s named in spec.credentialsRef does not exist in namespace %s: create it with the access token (アクセストークン) under key %s.",
				cfg.CredentialsSecret, cfg.Key.Namespace, cfg.CredentialsKey)}
		}
		return "", fmt.Errorf("reading credentials Secret %s/%s: %w", cfg.Key.Namespace, cfg.CredentialsSecret, err)
	}
	// Trimmed because a token pasted with `kubectl create secret
	// --from-file` usually ends in a newline, which Smaregi would reject.
	tok := strings.TrimSpace(string(sec.Data[cfg.CredentialsKey]))
	if tok == "" {
		return "", &CredentialsError{Reason: v1alpha1.ReasonSecretKeyNotFound, Message: fmt.Sprintf(
			"Secret %s/%s has no non-empty key %s (spec.credentialsRef.key): put the access token (アクセストークン) there.",
			cfg.Key.Namespace, cfg.CredentialsSecret, cfg.CredentialsKey)}
	}
	s.mu.Lock()
	s.m[cfg.Key] = cachedToken{secret: cfg.CredentialsSecret, key: cfg.CredentialsKey, token: tok, at: now}
	s.mu.Unlock()
	return tok, nil
}

// Forget drops the cached token of a store.
func (s *SecretTokens) Forget(key inventory.StoreKey) {
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}
