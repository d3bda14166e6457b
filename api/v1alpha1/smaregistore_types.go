/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretKeyReference names one key of a Secret in the store's namespace.
type SecretKeyReference struct {
	// Name of the Secret, in the same namespace as the SmaregiStore.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`

	// Key inside the Secret's data. Defaults to "accessToken".
	// +kubebuilder:default=accessToken
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +optional
	Key string `json:"key,omitempty"`
}

// ConfigMapReference names a ConfigMap in the same namespace.
type ConfigMapReference struct {
	// Name of the ConfigMap, in the same namespace as the referring object.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Name string `json:"name"`
}

// ReceiverSpec configures how Smaregi's outgoing sends (API送信) authenticate.
type ReceiverSpec struct {
	// ParameterName is the name of the extra parameter (パラメータ情報のキー) that
	// the shop adds to its send settings; its value is the generated receiver
	// key. Defaults to "goqsystem_key", so a shop moving from GoQSystem only
	// changes the URL and the value.
	// +kubebuilder:default=goqsystem_key
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]{1,64}$`
	// +optional
	ParameterName string `json:"parameterName,omitempty"`
}

// SyncSpec sets how often the operator reads stock from Smaregi when no send
// has arrived. Sends from Smaregi trigger a pull within seconds; these
// intervals are the safety net.
type SyncSpec struct {
	// PollInterval between incremental pulls (rows changed since the last
	// pull). Defaults to 1m; at least 10s. While polls find nothing that
	// sends had not already brought and the last full reconcile found no
	// drift, the operator doubles the interval after each such poll, up to
	// 8 times this value and never past fullResyncInterval; the first poll
	// that finds a change, or a full reconcile that finds drift, brings it
	// back to this value. Sends are pulled at once whatever the interval.
	// +kubebuilder:default="1m"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +optional
	PollInterval *metav1.Duration `json:"pollInterval,omitempty"`

	// FullResyncInterval between full reconciles, which read every stock row,
	// correct the mirror and count the rows that differed (drift). Defaults
	// to 1h; at least 5m.
	// +kubebuilder:default="1h"
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Format=duration
	// +optional
	FullResyncInterval *metav1.Duration `json:"fullResyncInterval,omitempty"`
}

// SmaregiStoreSpec declares one Smaregi shop: which contract and store, where
// its API is, and where its access token is kept.
// +kubebuilder:validation:XValidation:rule="!has(self.sync) || !has(self.sync.pollInterval) || duration(self.sync.pollInterval) >= duration('10s')",message="sync.pollInterval must be at least 10s",fieldPath=".sync.pollInterval",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!has(self.sync) || !has(self.sync.fullResyncInterval) || duration(self.sync.fullResyncInterval) >= duration('5m')",message="sync.fullResyncInterval must be at least 5m",fieldPath=".sync.fullResyncInterval",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!has(self.endpoint) || size(self.endpoint) == 0 || self.endpoint.startsWith('https://') || self.endpoint.matches('^http://(127\\\\.[0-9]+\\\\.[0-9]+\\\\.[0-9]+|localhost|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')",message="endpoint must use https (plain http is allowed only for loopback hosts such as 127.0.0.1)",fieldPath=".endpoint",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!has(self.tokenEndpoint) || size(self.tokenEndpoint) == 0 || self.tokenEndpoint.startsWith('https://') || self.tokenEndpoint.matches('^http://(127\\\\.[0-9]+\\\\.[0-9]+\\\\.[0-9]+|localhost|\\\\[::1\\\\])(:[0-9]+)?(/.*)?$')",message="tokenEndpoint must use https (plain http is allowed only for loopback hosts such as 127.0.0.1)",fieldPath=".tokenEndpoint",reason=FieldValueInvalid
// +kubebuilder:validation:XValidation:rule="!has(self.tokenEndpoint) || size(self.tokenEndpoint) == 0 || (has(self.api) && self.api == 'Platform')",message="tokenEndpoint is set only with api: Platform",fieldPath=".tokenEndpoint",reason=FieldValueForbidden
type SmaregiStoreSpec struct {
	// ContractID is the shop's Smaregi contract ID (契約ID), shown in
	// スマレジAPI設定 > API受信設定. Immutable: create a new SmaregiStore to
	// point at another contract.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_-]+$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="contractID is immutable"
	// +required
	ContractID string `json:"contractID"`

	// StoreID is the Smaregi store ID (店舗ID, up to 5 digits, no leading
	// zero: Smaregi answers "1" for store "01", and the two must match) whose
	// stock this object mirrors. Immutable.
	// +kubebuilder:validation:Pattern=`^(0|[1-9][0-9]{0,4})$`
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="storeID is immutable"
	// +required
	StoreID string `json:"storeID"`

	// API is the Smaregi API the shop is reached through: Legacy (the
	// スマレジAPI with a contract ID and access token, and outgoing sends;
	// the default) or Platform (an app's client ID and secret, and
	// webhooks; what Smaregi steers new integrations to). Immutable: the
	// two APIs name stock differently, so switching means a new
	// SmaregiStore.
	// +kubebuilder:default=Legacy
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="api is immutable"
	// +optional
	API StoreAPI `json:"api,omitempty"`

	// Endpoint is the Smaregi API URL. Legacy: the URL in API受信設定,
	// default https://webapi.smaregi.jp/access/. Platform: the API base,
	// default https://api.smaregi.jp/ (sandbox https://api.smaregi.dev/).
	// Must be https, except for loopback hosts (a local simulator).
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	Endpoint string `json:"endpoint,omitempty"`

	// TokenEndpoint is the Platform API's identity base that app tokens
	// come from, default https://id.smaregi.jp/ (sandbox
	// https://id.smaregi.dev/). Only with api: Platform. Must be https,
	// except for loopback hosts.
	// +kubebuilder:validation:MaxLength=2048
	// +optional
	TokenEndpoint string `json:"tokenEndpoint,omitempty"`

	// CredentialsRef points at the Secret holding the shop's credentials;
	// the operator reads only this Secret, and only when it is labelled
	// smaregi.stocksync.io/credentials=true. Legacy: the access token
	// (アクセストークン) under credentialsRef.key. Platform: the app's client
	// ID and client secret under the keys clientID and clientSecret
	// (credentialsRef.key is not used).
	// +required
	CredentialsRef SecretKeyReference `json:"credentialsRef"`

	// Receiver configures the endpoint that Smaregi's sends (API送信) post to.
	// +optional
	Receiver ReceiverSpec `json:"receiver,omitempty"`

	// Sync configures how often stock is read from Smaregi.
	// +optional
	Sync SyncSpec `json:"sync,omitempty"`

	// SafetyStock is held back from every product when the hub API reports
	// what may be sold online: available = stock - layaway - safetyStock
	// (never below 0), except for products with an entry in
	// safetyStockOverridesRef. Defaults to 0; at most 1,000,000,000 (far
	// above any shop's stock, and far from int64 overflow in that
	// subtraction). A change applies within seconds, and channels watching
	// the store's stock get an event for every product whose availability
	// it changes.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000000
	// +optional
	SafetyStock int64 `json:"safetyStock,omitempty"`

	// SafetyStockOverridesRef names a ConfigMap in the store's namespace
	// that sets the safety stock per product, instead of safetyStock: each
	// key is a Smaregi product ID (1 to 15 digits), each value the units
	// held back from it (a whole number from 0 to 1,000,000,000), e.g.
	// "8000001": "5". Tens of thousands of entries fit in one ConfigMap,
	// which suits GitOps. The ConfigMap must carry the label
	// smaregi.stocksync.io/safety-stock-overrides: "true" (the operator
	// watches only labelled ConfigMaps). A change applies within seconds,
	// with a watch event for each product whose availability it changes.
	// Invalid entries are ignored and listed in the SafetyStockOverridesValid
	// condition; while the ConfigMap is missing or unlabelled, no override
	// applies (only safetyStock) and the condition says so.
	// +optional
	SafetyStockOverridesRef *ConfigMapReference `json:"safetyStockOverridesRef,omitempty"`

	// Suspend stops credential checks, pulls and pushes for this store.
	// Sends that arrive are still recorded and processed after resuming.
	// +optional
	Suspend bool `json:"suspend,omitempty"`
}

// ReceiverStatus tells the shop where to send and how to authenticate.
type ReceiverStatus struct {
	// URL to enter as 送信URL in Smaregi's API送信設定. One URL serves every
	// SmaregiStore of the same contract in this namespace.
	// +optional
	URL string `json:"url,omitempty"`

	// RouteID is the last path segment of URL, the same for every
	// SmaregiStore of the contract in this namespace. It is stable while any
	// of them exists and is not derived from the key.
	// +optional
	RouteID string `json:"routeID,omitempty"`

	// KeySecretRef names the Secret and key holding the value to enter for
	// ParameterName in パラメータ情報: one Secret per contract and namespace,
	// owned by all of the contract's SmaregiStores.
	// +optional
	KeySecretRef *SecretKeyReference `json:"keySecretRef,omitempty"`

	// ParameterName is the extra parameter's key (パラメータ情報のキー).
	// +optional
	ParameterName string `json:"parameterName,omitempty"`

	// LastRotation is the value of the rotate-key annotation that the current
	// key answers.
	// +optional
	LastRotation string `json:"lastRotation,omitempty"`

	// PreviousKeyExpiresAt is when the key replaced by the last rotation
	// stops being accepted.
	// +optional
	PreviousKeyExpiresAt *metav1.Time `json:"previousKeyExpiresAt,omitempty"`

	// WebhookKey, on a Platform store, says where the key of the
	// operator-wide webhook URL is and how Smaregi must send it. URL is
	// then the webhook URL to enter in the app's settings in Smaregi's
	// developer console; RouteID, KeySecretRef and ParameterName are empty
	// (they describe legacy sends).
	// +optional
	WebhookKey *WebhookKeyReference `json:"webhookKey,omitempty"`
}

// WebhookKeyReference locates the operator-wide key of the Platform webhook
// URL. The Secret is in the operator's namespace, administered by whoever
// runs the operator, not by the store's namespace.
type WebhookKeyReference struct {
	// Namespace of the key Secret (the operator's namespace).
	// +optional
	Namespace string `json:"namespace,omitempty"`

	// Name of the key Secret (--platform-webhook-key-secret).
	// +optional
	Name string `json:"name,omitempty"`

	// Key in the Secret's data that holds the webhook key.
	// +optional
	Key string `json:"key,omitempty"`

	// Header is the custom header whose value must be the key, set in the
	// app's webhook settings. Empty when the operator does not accept the
	// key in a header.
	// +optional
	Header string `json:"header,omitempty"`

	// InPath is true when the operator accepts the key as one more path
	// segment of the URL (URL + "/" + key), for when a custom header
	// cannot be set.
	// +optional
	InPath bool `json:"inPath,omitempty"`
}

// InventoryStatus summarises the stock mirror. The rows themselves live in
// the operator's inventory store, never in this object.
type InventoryStatus struct {
	// SKUs is the number of stock rows in the mirror.
	// +optional
	SKUs int64 `json:"skus"`

	// LastPullTime is when stock was last read from Smaregi successfully.
	// +optional
	LastPullTime *metav1.Time `json:"lastPullTime,omitempty"`

	// LastFullSyncTime is when the last full reconcile finished.
	// +optional
	LastFullSyncTime *metav1.Time `json:"lastFullSyncTime,omitempty"`

	// LastFullSyncDuration is how long the last full reconcile took.
	// +optional
	LastFullSyncDuration *metav1.Duration `json:"lastFullSyncDuration,omitempty"`

	// Drift is the number of rows the last full reconcile had to correct:
	// changes that no send and no incremental pull had brought in.
	// +optional
	Drift int64 `json:"drift"`

	// LastHandledResyncRequest is the value of the resync-requested-at
	// annotation whose full reconcile has finished.
	// +optional
	LastHandledResyncRequest string `json:"lastHandledResyncRequest,omitempty"`

	// LastSendTime is when Smaregi last sent to the receiver for this store.
	// +optional
	LastSendTime *metav1.Time `json:"lastSendTime,omitempty"`

	// PendingAdjustments counts adjustments accepted but not yet applied in
	// Smaregi.
	// +optional
	PendingAdjustments int64 `json:"pendingAdjustments,omitempty"`

	// OldestPendingAdjustmentTime is when the oldest pending adjustment was
	// accepted.
	// +optional
	OldestPendingAdjustmentTime *metav1.Time `json:"oldestPendingAdjustmentTime,omitempty"`
}

// SmaregiStoreStatus is what the operator observed.
type SmaregiStoreStatus struct {
	// ObservedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (summary), CredentialsValid, ReceiverReady,
	// InventorySynced, SendsHealthy, SafetyStockOverridesValid (with
	// safetyStockOverridesRef), and kstatus's Reconciling and Stalled.
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// Receiver tells the shop what to enter in API送信設定.
	// +optional
	Receiver *ReceiverStatus `json:"receiver,omitempty"`

	// Inventory summarises the stock mirror.
	// +optional
	Inventory *InventoryStatus `json:"inventory,omitempty"`
}

// SmaregiStore is one Smaregi shop whose stock the operator mirrors and
// updates. Apply one per store; stores of the same contract share the
// receiver URL.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=sstore,categories=smaregi
// +kubebuilder:printcolumn:name="Contract",type=string,JSONPath=`.spec.contractID`
// +kubebuilder:printcolumn:name="Store",type=string,JSONPath=`.spec.storeID`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="SKUs",type=integer,JSONPath=`.status.inventory.skus`
// +kubebuilder:printcolumn:name="Drift",type=integer,JSONPath=`.status.inventory.drift`
// +kubebuilder:printcolumn:name="Last-Sync",type=date,JSONPath=`.status.inventory.lastPullTime`
// The wide column shows Ready's reason, not its message: messages are
// sentences with remedies that would stretch the table; describe shows them.
// +kubebuilder:printcolumn:name="API",type=string,priority=1,JSONPath=`.spec.api`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type SmaregiStore struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec SmaregiStoreSpec `json:"spec"`

	// +optional
	Status SmaregiStoreStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// SmaregiStoreList contains a list of SmaregiStore.
type SmaregiStoreList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []SmaregiStore `json:"items"`
}

func init() {
	SchemeBuilder.Register(&SmaregiStore{}, &SmaregiStoreList{})
}
