// Package storeregistry is the operator's in-memory registry of
// SmaregiStores: what the sync engine and the adjustment pusher need of each
// (StoreConfig), kept in step with the API server by the registry
// controller, the second controller of SmaregiStores (the first,
// controllers.SmaregiStoreReconciler, checks credentials and provisions the
// receiver; this one only reads). Both consumers subscribe to it, so neither
// calls the other and the wiring in cmd/main.go stays one-way.
package storeregistry

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// Defaults of StoreConfig, as the API documents them.
const (
	DefaultPollInterval       = time.Minute
	DefaultFullResyncInterval = time.Hour
)

// StoreConfig is what the sync engine and the pusher need of one
// SmaregiStore. ConfigFromObject fills it from the object; tests build it
// directly.
type StoreConfig struct {
	Key        inventory.StoreKey
	UID        types.UID
	Generation int64
	ContractID string
	StoreID    string
	// API is the store's Smaregi API (spec.api, defaulted); Endpoint and
	// TokenEndpoint its bases, defaulted by API (TokenEndpoint is empty for
	// a legacy store).
	API           v1alpha1.StoreAPI
	Endpoint      string
	TokenEndpoint string
	// CredentialsSecret and CredentialsKey locate the credentials in the
	// store's namespace (the key only for a legacy store's access token).
	CredentialsSecret  string
	CredentialsKey     string
	PollInterval       time.Duration
	FullResyncInterval time.Duration
	Suspend            bool
	// Deleting says the SmaregiStore has a deletionTimestamp and waits on
	// the SmaregiStore controller's finalizer for its outbox to drain. A
	// deleting store is NOT suspended: the pusher must still push its
	// pending adjustments (and the engine pull to confirm them), or the
	// deletion would wait for ever. Only spec.suspend stops calls.
	Deleting bool
	// Synced is the InventorySynced condition found on the object, so that
	// a restarted leader keeps its lastTransitionTime.
	Synced *metav1.Condition
	// CredentialsValid and CredentialsValidSince are the status and
	// lastTransitionTime of the SmaregiStore controller's CredentialsValid
	// condition on the object (empty when it has none). Its turning True
	// says the user fixed the Secret (or what Smaregi rejected), so it lifts
	// a configuration back-off like a new generation does.
	CredentialsValid      metav1.ConditionStatus
	CredentialsValidSince time.Time
	// ResyncRequest is the resync-requested-at annotation; HandledResync the
	// request whose full reconcile status already reports. A request that
	// differs from both the handled one and the one in hand asks for a full
	// reconcile, so neither a restart nor a re-list repeats it.
	ResyncRequest string
	HandledResync string
}

// ConfigFromObject builds a StoreConfig from a SmaregiStore, with defaults.
func ConfigFromObject(obj *v1alpha1.SmaregiStore) StoreConfig {
	cfg := StoreConfig{
		Key:                inventory.StoreKey{Namespace: obj.Namespace, Name: obj.Name},
		UID:                obj.UID,
		Generation:         obj.Generation,
		ContractID:         obj.Spec.ContractID,
		StoreID:            obj.Spec.StoreID,
		API:                obj.APIName(),
		Endpoint:           obj.EndpointURL(),
		TokenEndpoint:      obj.TokenEndpointURL(),
		CredentialsSecret:  obj.Spec.CredentialsRef.Name,
		CredentialsKey:     obj.CredentialsKey(),
		PollInterval:       DefaultPollInterval,
		FullResyncInterval: DefaultFullResyncInterval,
		Suspend:            obj.Spec.Suspend,
		Deleting:           !obj.DeletionTimestamp.IsZero(),
		ResyncRequest:      obj.Annotations[v1alpha1.ResyncRequestAnnotation],
	}
	if inv := obj.Status.Inventory; inv != nil {
		cfg.HandledResync = inv.LastHandledResyncRequest
	}
	if d := obj.Spec.Sync.PollInterval; d != nil && d.Duration > 0 {
		cfg.PollInterval = d.Duration
	}
	if d := obj.Spec.Sync.FullResyncInterval; d != nil && d.Duration > 0 {
		cfg.FullResyncInterval = d.Duration
	}
	for i := range obj.Status.Conditions {
		switch c := obj.Status.Conditions[i]; c.Type {
		case v1alpha1.InventorySyncedCondition:
			cfg.Synced = &c
		case v1alpha1.CredentialsValidCondition:
			cfg.CredentialsValid, cfg.CredentialsValidSince = c.Status, c.LastTransitionTime.Time
		}
	}
	return cfg
}

// Defaults fills what a hand-built config left empty.
func (c *StoreConfig) Defaults() {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.FullResyncInterval <= 0 {
		c.FullResyncInterval = DefaultFullResyncInterval
	}
	if c.API == "" {
		c.API = v1alpha1.APILegacy
	}
	if c.Endpoint == "" {
		c.Endpoint = v1alpha1.DefaultEndpoint
		if c.API == v1alpha1.APIPlatform {
			c.Endpoint = v1alpha1.DefaultPlatformEndpoint
		}
	}
	if c.TokenEndpoint == "" && c.API == v1alpha1.APIPlatform {
		c.TokenEndpoint = v1alpha1.DefaultPlatformTokenEndpoint
	}
	if c.CredentialsKey == "" {
		c.CredentialsKey = v1alpha1.DefaultCredentialsKey
	}
}

// Credentials locates the store's credentials.
func (c StoreConfig) Credentials() storeaccess.CredentialsRef {
	return storeaccess.CredentialsRef{Namespace: c.Key.Namespace, Secret: c.CredentialsSecret, Key: c.CredentialsKey, API: c.API}
}

// Subject names the store in a diagnosis of a failed call.
func (c StoreConfig) Subject(call string) storeaccess.Subject {
	return storeaccess.Subject{Call: call, Endpoint: c.Endpoint, ContractID: c.ContractID, StoreID: c.StoreID, Credentials: c.Credentials()}
}

// Target is where and as whom the store's calls go, with creds.
func (c StoreConfig) Target(creds storeaccess.Credentials) storeaccess.Target {
	return storeaccess.Target{API: c.API, Endpoint: c.Endpoint, TokenEndpoint: c.TokenEndpoint, ContractID: c.ContractID,
		StoreID: c.StoreID, Credentials: creds}
}

// RetryNeeded reports whether a store's configuration changed from old to
// cur in a way that may end a configuration error, so that whoever backs off
// on the store (the engine's pulls, the pusher's pushes) should try again
// now: a new generation (an unsuspend, a new endpoint), another credentials
// reference, or CredentialsValid turning True (the controller found the
// fixed Secret good). A True seen with another lastTransitionTime went
// through a False (or Unknown) the caller did not see.
func RetryNeeded(old, cur StoreConfig) bool {
	credsValidated := cur.CredentialsValid == metav1.ConditionTrue &&
		(old.CredentialsValid != metav1.ConditionTrue || !old.CredentialsValidSince.Equal(cur.CredentialsValidSince))
	return old.Generation != cur.Generation || credsValidated ||
		old.CredentialsSecret != cur.CredentialsSecret || old.CredentialsKey != cur.CredentialsKey
}
