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

// Defaults and names derived from a SmaregiStore, in one place for every
// component that needs them.

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// GetConditions returns the status conditions (for condition helpers).
func (in *SmaregiStore) GetConditions() []metav1.Condition { return in.Status.Conditions }

// SetConditions replaces the status conditions (for condition helpers).
func (in *SmaregiStore) SetConditions(c []metav1.Condition) { in.Status.Conditions = c }

// CredentialsKey returns the Secret key holding the access token.
func (in *SmaregiStore) CredentialsKey() string {
	if in.Spec.CredentialsRef.Key == "" {
		return DefaultCredentialsKey
	}
	return in.Spec.CredentialsRef.Key
}

// ReceiverParameterName returns the send parameter that carries the key.
func (in *SmaregiStore) ReceiverParameterName() string {
	if in.Spec.Receiver.ParameterName == "" {
		return DefaultReceiverParameterName
	}
	return in.Spec.Receiver.ParameterName
}

// APIName returns the store's Smaregi API, defaulted to Legacy.
func (in *SmaregiStore) APIName() StoreAPI {
	if in.Spec.API == "" {
		return APILegacy
	}
	return in.Spec.API
}

// IsPlatform reports whether the store speaks the Platform API.
func (in *SmaregiStore) IsPlatform() bool { return in.APIName() == APIPlatform }

// EndpointURL returns the Smaregi API endpoint, defaulted by API.
func (in *SmaregiStore) EndpointURL() string {
	switch {
	case in.Spec.Endpoint != "":
		return in.Spec.Endpoint
	case in.IsPlatform():
		return DefaultPlatformEndpoint
	}
	return DefaultEndpoint
}

// TokenEndpointURL returns the Platform identity base, defaulted; "" for a
// legacy store.
func (in *SmaregiStore) TokenEndpointURL() string {
	switch {
	case !in.IsPlatform():
		return ""
	case in.Spec.TokenEndpoint != "":
		return in.Spec.TokenEndpoint
	}
	return DefaultPlatformTokenEndpoint
}

// ReceiverKeySecretName is the per-store key Secret of operator versions
// before one key per contract. The receiver still accepts it on the store's
// own route (its UID) while the store exists, so that a Smaregi configured
// then keeps working until the shop enters the contract's URL once.
func (in *SmaregiStore) ReceiverKeySecretName() string { return in.Name + "-receiver-key" }

// ContractKeySecretName is the Secret holding the one receiver key of every
// SmaregiStore of contractID in a namespace (Smaregi has one send URL and
// parameter per contract). The contract ID is lowered and its underscores
// turned into dashes to make a Secret name; the hash of the exact ID keeps
// "AB" and "ab" apart.
func ContractKeySecretName(contractID string) string {
	sum := sha256.Sum256([]byte(contractID))
	name := strings.ToLower(strings.ReplaceAll(contractID, "_", "-"))
	return "smaregi-receiver-" + name + "-" + hex.EncodeToString(sum[:4])
}

// ContractIDAnnotation on a contract key Secret holds the exact contract ID
// (label values cannot hold every contract ID).
const ContractIDAnnotation = "smaregi.stocksync.io/contract-id"

// ParameterNameAnnotation on a contract key Secret names the send parameter
// its key answers: one per contract, like the key.
const ParameterNameAnnotation = "smaregi.stocksync.io/parameter-name"

// ReceiverKeyLocation says where the receiver key is: the send parameter that
// carries it, and the Secret and key holding its value. What status publishes
// wins over the spec's defaults, because status names the Secret the key was
// actually written to (the receiver and the setup helper must agree with it).
func (in *SmaregiStore) ReceiverKeyLocation() (param, secretName, secretKey string) {
	param, secretName = in.ReceiverParameterName(), in.ReceiverKeySecretName()
	rs := in.Status.Receiver
	if rs != nil && rs.ParameterName != "" {
		param = rs.ParameterName
	}
	secretKey = param
	if rs != nil && rs.KeySecretRef != nil {
		if rs.KeySecretRef.Name != "" {
			secretName = rs.KeySecretRef.Name
		}
		if rs.KeySecretRef.Key != "" {
			secretKey = rs.KeySecretRef.Key
		}
	}
	return param, secretName, secretKey
}
