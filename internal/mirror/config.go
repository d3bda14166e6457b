package mirror

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Defaults of a StoreConfig: the schedule of a SmaregiStore whose spec.sync
// leaves it out.
const (
	DefaultPollInterval       = time.Minute
	DefaultFullResyncInterval = time.Hour
)

// StoreConfig is what the engine needs of one SmaregiStore. The watch fills
// it from the object; tests build it directly.
type StoreConfig struct {
	Key        inventory.StoreKey
	UID        types.UID
	Generation int64
	ContractID string
	StoreID    string
	Endpoint   string
	// CredentialsSecret and CredentialsKey locate the access token in the
	// store's namespace.
	CredentialsSecret  string
	CredentialsKey     string
	PollInterval       time.Duration
	FullResyncInterval time.Duration
	Suspend            bool
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
		Endpoint:           obj.EndpointURL(),
		CredentialsSecret:  obj.Spec.CredentialsRef.Name,
		CredentialsKey:     obj.CredentialsKey(),
		PollInterval:       DefaultPollInterval,
		FullResyncInterval: DefaultFullResyncInterval,
		Suspend:            obj.Spec.Suspend,
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

func (c *StoreConfig) defaults() {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.FullResyncInterval <= 0 {
		c.FullResyncInterval = DefaultFullResyncInterval
	}
	if c.Endpoint == "" {
		c.Endpoint = v1alpha1.DefaultEndpoint
	}
	if c.CredentialsKey == "" {
		c.CredentialsKey = v1alpha1.DefaultCredentialsKey
	}
}
