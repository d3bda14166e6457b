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

// The names SmaregiStore users and other tools meet: defaults, annotations,
// labels, Secret keys, paths, condition types and reasons.

// DefaultEndpoint is the legacy Smaregi API URL shown in every shop's admin
// screen (スマレジAPI設定 > API受信設定 > URL).
const DefaultEndpoint = "https://webapi.smaregi.jp/access/"

// DefaultCredentialsKey is the Secret key read when credentialsRef.key is empty.
const DefaultCredentialsKey = "accessToken"

// StoreAPI names the Smaregi API generation a shop is reached through.
// +kubebuilder:validation:Enum=Legacy;Platform
type StoreAPI string

const (
	// APILegacy is the スマレジAPI of the set-up guide: contract ID and
	// access token, proc_name calls, outgoing sends (API送信).
	APILegacy StoreAPI = "Legacy"
	// APIPlatform is the Smaregi Platform API: an app's client ID and
	// secret, OAuth2 client-credentials tokens, REST calls, webhooks.
	APIPlatform StoreAPI = "Platform"
)

// Platform API defaults: the production API and identity bases. The sandbox
// is https://api.smaregi.dev/ and https://id.smaregi.dev/ (set both).
const (
	DefaultPlatformEndpoint      = "https://api.smaregi.jp/"
	DefaultPlatformTokenEndpoint = "https://id.smaregi.jp/"
)

// The keys of a Platform store's credentials Secret: the app's client ID and
// client secret from Smaregi's developer console.
const (
	PlatformClientIDKey     = "clientID"
	PlatformClientSecretKey = "clientSecret"
)

// DefaultReceiverParameterName is the extra send parameter that carries the
// receiver key. It matches GoQSystem's name so a shop that moves from
// GoQSystem changes only the URL and the value.
const DefaultReceiverParameterName = "goqsystem_key"

// RotateKeyAnnotation asks the operator to replace the receiver key. Set it to
// any new value (a timestamp, say); the old key keeps working for the grace
// period so the shop has time to paste the new one into Smaregi.
const RotateKeyAnnotation = "smaregi.stocksync.io/rotate-key"

// RevokePreviousKeyAnnotation ends the grace of a rotated-out receiver key at
// once (for a key that leaked, say), instead of after --key-rotation-grace.
// Set it to any new value; each value revokes once. The key is the
// contract's, so it is revoked for every store of the contract.
const RevokePreviousKeyAnnotation = "smaregi.stocksync.io/revoke-previous-key"

// The receiver key Secret (<store>-receiver-key) holds the current key under
// the key named by spec.receiver.parameterName. During a rotation it also holds
// the replaced key under that name plus PreviousKeySuffix, accepted until the
// RFC 3339 time in the PreviousKeyExpiresAnnotation of the Secret.
const (
	PreviousKeySuffix            = ".previous"
	PreviousKeyExpiresAnnotation = "smaregi.stocksync.io/previous-key-expires-at"
)

// ReceiverPathPrefix is the receiver's URL path before the route ID.
const ReceiverPathPrefix = "/smaregi/v1/"

// PlatformWebhookPath is the receiver's one URL path for the webhooks of
// Smaregi's Platform API: Smaregi has one webhook URL per app, so every
// Platform store of the operator shares it. When the operator accepts the
// key in the URL (--platform-webhook-key-in-path), it is this path plus
// "/" and the key.
const PlatformWebhookPath = "/smaregi/platform/v1/webhook"

// PlatformWebhookKeyKey is the key, in the operator-wide Platform webhook
// key Secret (--platform-webhook-key-secret, in the operator's namespace),
// that holds the webhook key. During a rotation the replaced key is kept
// under this name plus PreviousKeySuffix until the Secret's
// PreviousKeyExpiresAnnotation.
const PlatformWebhookKeyKey = "key"

// RotatedForAnnotation on a generated key Secret records the rotate-key
// value its current key answers. The Secret, not a status, is the record of
// a rotation: a lost status write must not rotate a second time and throw
// away the key Smaregi is still using.
const RotatedForAnnotation = "smaregi.stocksync.io/rotated-for"

// ResyncRequestAnnotation asks for a full reconcile of the store's stock now
// rather than at the next spec.sync.fullResyncInterval. Set it to any new
// value (a timestamp, say); status.inventory.lastHandledResyncRequest shows
// the value once that reconcile has finished.
const ResyncRequestAnnotation = "smaregi.stocksync.io/resync-requested-at"

// OutboxFinalizer holds a deleted SmaregiStore until its outbox is empty:
// every adjustment other channels submitted has been applied by Smaregi or
// definitely rejected. Deleting the store earlier would drop orders Smaregi
// never saw.
const OutboxFinalizer = "smaregi.stocksync.io/outbox"

// DiscardPendingAdjustmentsAnnotation, set to "true" on a store being
// deleted, drops its pending adjustments on purpose (they are marked failed
// and an event names them) so the deletion completes without pushing them.
// It does nothing on a store that is not being deleted.
const DiscardPendingAdjustmentsAnnotation = "smaregi.stocksync.io/discard-pending-adjustments"

// CredentialsLabel must be "true" on a Secret that credentialsRef names: the
// operator, which may read Secrets in every watched namespace, reads and
// sends only Secrets that opt in, so a SmaregiStore cannot make it send
// another Secret's value (a database password, say) to an endpoint.
const CredentialsLabel = "smaregi.stocksync.io/credentials"

// SafetyStockOverridesLabel must be "true" on a ConfigMap that
// spec.safetyStockOverridesRef names: the operator caches (and so watches)
// only ConfigMaps that opt in, not every ConfigMap of the cluster.
const SafetyStockOverridesLabel = "smaregi.stocksync.io/safety-stock-overrides"

// MaxSafetyStock bounds spec.safetyStock and each override: far above any
// shop's stock, and far from int64 overflow in available's arithmetic.
const MaxSafetyStock = 1_000_000_000

// ManagedByLabel and ManagedByValue mark objects this operator creates.
const (
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "smaregi-operator"
)

// Condition types. Each has exactly one writer in the operator.
const (
	// ReadyCondition summarises the others: True when the store is usable.
	ReadyCondition = "Ready"
	// ReconcilingCondition (kstatus) is True while the operator is working
	// towards the latest spec.
	ReconcilingCondition = "Reconciling"
	// StalledCondition (kstatus) is True when progress needs a human: a
	// missing Secret, a rejected token, a function switched off in Smaregi.
	StalledCondition = "Stalled"
	// CredentialsValidCondition reports the result of the credential check
	// against Smaregi's API.
	CredentialsValidCondition = "CredentialsValid"
	// ReceiverReadyCondition reports that the receiver key exists and the
	// receiver URL is published.
	ReceiverReadyCondition = "ReceiverReady"
	// SendsHealthyCondition reports what the receiver sees of Smaregi's
	// sends for the store's contract: False when sends arrive with a wrong
	// key (Smaregi's パラメータ情報 is out of date), True with reason
	// PreviousKey while they still carry a rotated-out key in its grace.
	// Written by the receiver (every replica, rate-limited).
	SendsHealthyCondition = "SendsHealthy"
	// InventorySyncedCondition reports whether the stock mirror is current.
	InventorySyncedCondition = "InventorySynced"
	// SafetyStockOverridesValidCondition reports on the ConfigMap that
	// spec.safetyStockOverridesRef names: True when every entry applies,
	// False when it is missing or unlabelled (no override applies) or when
	// some entries are invalid (they are ignored, the others apply). Absent
	// without safetyStockOverridesRef. It does not affect Ready: the store
	// works with spec.safetyStock alone. Written by the safety stock
	// controller on a SmaregiStore, by the StockPool controller on a
	// StockPool.
	SafetyStockOverridesValidCondition = "SafetyStockOverridesValid"
)

// Condition reasons that tell the user what to do.
const (
	ReasonSucceeded          = "Succeeded"
	ReasonProgressing        = "Progressing"
	ReasonSuspended          = "Suspended"
	ReasonSecretNotFound     = "SecretNotFound"
	ReasonSecretKeyNotFound  = "SecretKeyNotFound"
	ReasonSecretNotLabelled  = "SecretNotLabelled"
	ReasonEndpointNotAllowed = "EndpointNotAllowed"
	ReasonInvalidAccessToken = "InvalidAccessToken"
	ReasonInvalidContractID  = "InvalidContractID"
	ReasonFunctionDisabled   = "FunctionDisabled"
	ReasonIPNotAllowed       = "IPNotAllowed"
	ReasonAccountLocked      = "AccountLocked"
	// Platform API causes: the app's client ID or secret is refused (fix
	// in the developer console), the shop has not installed the app for
	// its contract (fix in the shop's app settings), the app or its token
	// lacks a scope (developer console), calls are throttled (transient).
	ReasonInvalidClient   = "InvalidClient"
	ReasonAppNotInstalled = "AppNotInstalled"
	ReasonMissingScope    = "MissingScope"
	ReasonRateLimited     = "RateLimited"
	ReasonUnreachable     = "Unreachable"
	ReasonSmaregiError    = "SmaregiError"
	ReasonKeyProvisioned  = "KeyProvisioned"
	ReasonKeyRotating     = "KeyRotating"
	ReasonSyncFailed      = "SyncFailed"
	// ReasonOutboxPending: the store is being deleted and waits for its
	// pending adjustments to reach Smaregi.
	ReasonOutboxPending = "OutboxPending"
	// ReasonNoStockRows: the credentials work but Smaregi has no stock rows
	// for the store ID (a wrong 店舗ID, or a store whose stock never
	// changed); CredentialsValid stays True with this reason.
	ReasonNoStockRows = "NoStockRows"
	// ReasonWrongKey: sends for the contract arrive with a key the
	// receiver refuses.
	ReasonWrongKey = "WrongKey"
	// ReasonPreviousKey: sends arrive with the rotated-out key, accepted
	// until it expires.
	ReasonPreviousKey = "PreviousKey"
	// ReasonSendsAccepted: the last sends arrived with the current key.
	ReasonSendsAccepted = "SendsAccepted"
	// ReasonUnknownStoreID: Smaregi refused an update because the contract
	// has no such store.
	ReasonUnknownStoreID = "UnknownStoreID"
	// ReasonPlatformWebhook: ReceiverReady of a Platform store. It has no
	// per-contract route or key: Smaregi posts the app's webhooks to the
	// operator-wide URL in status.receiver.url, authenticated by the key
	// that status.receiver.webhookKey locates.
	ReasonPlatformWebhook = "PlatformWebhook"
	// SafetyStockOverridesValid reasons: the ConfigMap does not exist, or
	// lacks SafetyStockOverridesLabel (no override applies until fixed);
	// some entries are not a product ID mapped to a whole number of units
	// (those are ignored).
	ReasonConfigMapNotFound    = "ConfigMapNotFound"
	ReasonConfigMapNotLabelled = "ConfigMapNotLabelled"
	ReasonInvalidEntries       = "InvalidEntries"
)
