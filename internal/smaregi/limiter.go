package smaregi

import (
	"sync"

	"golang.org/x/time/rate"
)

// LimiterRegistry hands out one rate limiter per contract ID. Smaregi limits
// calls per contract, shared by every store of that contract, so all clients
// of one contract must draw from the same limiter.
type LimiterRegistry struct {
	limit rate.Limit
	burst int

	mu       sync.Mutex
	limiters map[string]*rate.Limiter
}

// NewLimiterRegistry returns a registry whose limiters allow rps calls per
// second with the given burst. rps <= 0 means no limit.
func NewLimiterRegistry(rps float64, burst int) *LimiterRegistry {
	l := rate.Limit(rps)
	if rps <= 0 {
		l = rate.Inf
	}
	if burst < 1 {
		burst = 1
	}
	return &LimiterRegistry{limit: l, burst: burst, limiters: map[string]*rate.Limiter{}}
}

// For returns the limiter of a contract, creating it on first use.
func (r *LimiterRegistry) For(contractID string) *rate.Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.limiters[contractID]
	if !ok {
		l = rate.NewLimiter(r.limit, r.burst)
		r.limiters[contractID] = l
	}
	return l
}

// Forget drops a contract's limiter, for when its last store is deleted.
func (r *LimiterRegistry) Forget(contractID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.limiters, contractID)
}
