package storeregistry

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// Subscriber is told of every change of the registry, in order per store.
// Calls come from the registry controller's workers and must not block on
// I/O towards Smaregi.
type Subscriber interface {
	// StoreUpdated says the store exists with cfg. retry is
	// RetryNeeded(previous, cfg) (false on first sight): the change may
	// end a configuration error, so back-offs on the store should end.
	StoreUpdated(cfg StoreConfig, retry bool)
	// StoreRemoved says the SmaregiStore is gone. An error is retried by
	// the registry controller.
	StoreRemoved(ctx context.Context, key inventory.StoreKey) error
}

// Registry holds the StoreConfig of every SmaregiStore the registry
// controller has seen. It is safe for concurrent use.
type Registry struct {
	mu     sync.RWMutex
	stores map[inventory.StoreKey]StoreConfig
	subs   []Subscriber
}

// New returns an empty registry.
func New() *Registry { return &Registry{stores: map[inventory.StoreKey]StoreConfig{}} }

// Subscribe adds s. Call it while wiring, before the controller starts.
func (r *Registry) Subscribe(s Subscriber) {
	r.mu.Lock()
	r.subs = append(r.subs, s)
	r.mu.Unlock()
}

// Upsert records cfg and tells the subscribers.
func (r *Registry) Upsert(cfg StoreConfig) {
	cfg.Defaults()
	r.mu.Lock()
	old, known := r.stores[cfg.Key]
	r.stores[cfg.Key] = cfg
	subs := r.subs
	r.mu.Unlock()
	retry := known && RetryNeeded(old, cfg)
	for _, s := range subs {
		s.StoreUpdated(cfg, retry)
	}
}

// Remove forgets a store and tells the subscribers; the first error is
// returned after all were told.
func (r *Registry) Remove(ctx context.Context, key inventory.StoreKey) error {
	r.mu.Lock()
	delete(r.stores, key)
	subs := r.subs
	r.mu.Unlock()
	var errs []error
	for _, s := range subs {
		if err := s.StoreRemoved(ctx, key); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Get returns the store's configuration.
func (r *Registry) Get(key inventory.StoreKey) (StoreConfig, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	cfg, ok := r.stores[key]
	return cfg, ok
}

// Targets resolves a store's Target from the registry and a token cache
// shared with the sync engine, so the credentials Secret is read one way.
type Targets struct {
	Registry *Registry
	Tokens   *storeaccess.Tokens
}

// Target returns where and as whom the store's calls go. A suspended store
// or a missing Secret or key is a *storeaccess.ConfigError (terminal: a
// person must act); a store not (yet) known is an ordinary error.
func (t Targets) Target(ctx context.Context, key inventory.StoreKey) (storeaccess.Target, error) {
	cfg, ok := t.Registry.Get(key)
	if !ok {
		return storeaccess.Target{}, fmt.Errorf("no SmaregiStore %s is known", key)
	}
	if cfg.Suspend {
		return storeaccess.Target{}, &storeaccess.ConfigError{Reason: v1alpha1.ReasonSuspended,
			Message: fmt.Sprintf("SmaregiStore %s is suspended (spec.suspend)", key)}
	}
	creds, err := t.Tokens.Credentials(ctx, cfg.Credentials())
	if err != nil {
		return storeaccess.Target{}, err
	}
	return cfg.Target(creds), nil
}
