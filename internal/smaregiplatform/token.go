package smaregiplatform

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"time"
)

// refreshFraction is the part of a token's lifetime after which it is
// replaced: early enough that a call never leaves with a token about to
// expire, late enough that a busy contract fetches about one token an hour.
const refreshFraction = 0.8

// defaultLifetime is assumed when the token answer has no expires_in.
const defaultLifetime = 10 * time.Minute

// TokenCache holds app access tokens per token endpoint, contract, client
// (client ID and a hash of its secret, so a store with a wrong secret never
// borrows a token obtained with the right one) and scope set. Every client
// of one operator should share one cache: all stores of a contract then use
// one token, and the token calls count against the contract's rate limit.
// The zero value is not usable; call NewTokenCache.
type TokenCache struct {
	now func() time.Time

	mu sync.Mutex
	m  map[tokenKey]*tokenEntry
}

type tokenKey struct {
	endpoint, contract, clientID, scopes string
	secret                               [32]byte
}

type tokenEntry struct {
	// lock (a one-slot channel, so that waiting honours the caller's
	// context) serialises fetches for one key: a hundred stores whose token
	// expires at once cause one token call, not a hundred.
	lock      chan struct{}
	token     string
	refreshAt time.Time
	expiresAt time.Time
}

// NewTokenCache returns an empty cache; now is its clock (nil: time.Now).
func NewTokenCache(now func() time.Time) *TokenCache {
	if now == nil {
		now = time.Now
	}
	return &TokenCache{now: now, m: map[tokenKey]*tokenEntry{}}
}

func newTokenKey(endpoint, contract, clientID, secret, scopes string) tokenKey {
	return tokenKey{endpoint: endpoint, contract: contract, clientID: clientID, scopes: scopes,
		secret: sha256.Sum256([]byte(secret))}
}

func (c *TokenCache) entry(k tokenKey) *tokenEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.m[k]
	if e == nil {
		e = &tokenEntry{lock: make(chan struct{}, 1)}
		c.m[k] = e
	}
	return e
}

// get returns the cached token of k, fetching a new one when there is none
// or it is due for refresh. A failed refresh falls back to the old token
// while it has not expired: Smaregi still accepts it, and a brief outage of
// the identity server then costs nothing.
func (c *TokenCache) get(ctx context.Context, k tokenKey, fetch func(context.Context) (string, time.Duration, error)) (string, error) {
	e := c.entry(k)
	select {
	case e.lock <- struct{}{}:
	case <-ctx.Done():
		return "", &TransportError{Call: CallToken, Err: fmt.Errorf("wait for another caller's token request: %w", ctx.Err())}
	}
	defer func() { <-e.lock }()
	now := c.now()
	if e.token != "" && now.Before(e.refreshAt) {
		return e.token, nil
	}
	tok, life, err := fetch(ctx)
	if err != nil {
		if e.token != "" && now.Before(e.expiresAt) && IsTransient(err) {
			return e.token, nil
		}
		return "", err
	}
	if life <= 0 {
		life = defaultLifetime
	}
	at := c.now()
	e.token = tok
	e.refreshAt = at.Add(time.Duration(float64(life) * refreshFraction))
	e.expiresAt = at.Add(life)
	return tok, nil
}

// invalidate drops tok from k's entry after Smaregi refused it (401), unless
// another caller has replaced it already.
func (c *TokenCache) invalidate(k tokenKey, tok string) {
	e := c.entry(k)
	e.lock <- struct{}{}
	defer func() { <-e.lock }()
	if e.token == tok {
		e.token = ""
	}
}

// Forget drops every token of a contract and client ID, for when a store is
// deleted or its credentials change.
func (c *TokenCache) Forget(contract, clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.contract == contract && k.clientID == clientID {
			delete(c.m, k)
		}
	}
}
