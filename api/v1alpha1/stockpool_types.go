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

// AllocationPolicy decides which member shops a pool order takes stock from.
// +kubebuilder:validation:Enum=Priority;MostAvailable
type AllocationPolicy string

const (
	// AllocationPriority takes from the member with the highest priority
	// first (spec.memberPriorities; ties by name), then the next, splitting
	// an order line only when the first member has too little.
	AllocationPriority AllocationPolicy = "Priority"
	// AllocationMostAvailable takes from the member with the most available
	// first (ties by priority, then name), then the next: an order line is
	// split only when no single member has enough.
	AllocationMostAvailable AllocationPolicy = "MostAvailable"
)

// StockPool conditions reuse SmaregiStore's Ready, Reconciling and Stalled.
const (
	// ReasonNoMembers: the selector selects no SmaregiStore, so the pool
	// has nothing to sell.
	ReasonNoMembers = "NoMembers"
	// ReasonNoActiveMembers: members exist but none takes orders (all are
	// suspended, being deleted or Stalled).
	ReasonNoActiveMembers = "NoActiveMembers"
	// ReasonInvalidSelector: spec.storeSelector does not parse.
	ReasonInvalidSelector = "InvalidSelector"
)

// MemberPriority gives one member shop its place in the Priority policy.
type MemberPriority struct {
	// Store is the name of a SmaregiStore in the pool's namespace.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +required
	Store string `json:"store"`

	// Priority orders members for the Priority policy and breaks ties for
	// MostAvailable: a higher number is taken from first. Members not
	// listed have priority 0.
	// +kubebuilder:validation:Minimum=-1000000
	// +kubebuilder:validation:Maximum=1000000
	// +required
	Priority int32 `json:"priority"`
}

// StockPoolSpec selects the member shops and says how orders are shared.
type StockPoolSpec struct {
	// StoreSelector selects the member SmaregiStores by their labels, in the
	// pool's namespace only. An empty selector selects every SmaregiStore
	// of the namespace.
	// +required
	StoreSelector metav1.LabelSelector `json:"storeSelector"`

	// MemberPriorities give members a priority (default 0): the order of
	// the Priority policy, and the tie-break of MostAvailable. Entries that
	// name a store the selector does not select are ignored.
	// +listType=map
	// +listMapKey=store
	// +kubebuilder:validation:MaxItems=1000
	// +optional
	MemberPriorities []MemberPriority `json:"memberPriorities,omitempty"`

	// SafetyStock is held back from every product of the pool, on top of
	// each member's own spec.safetyStock: the pool's available is the sum
	// of its active members' available minus this (never below 0). Defaults
	// to 0.
	// +kubebuilder:default=0
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=1000000000
	// +optional
	SafetyStock int64 `json:"safetyStock,omitempty"`

	// SafetyStockOverridesRef names a ConfigMap in the pool's namespace that
	// sets the pool's safety stock per product, instead of safetyStock: each
	// key is a Smaregi product ID (1 to 15 digits), each value the units the
	// pool holds back from it (a whole number from 0 to 1,000,000,000),
	// e.g. "8000001": "5". It is read exactly like a SmaregiStore's
	// safetyStockOverridesRef (tens of thousands of entries fit; the
	// ConfigMap must carry the label
	// smaregi.stocksync.io/safety-stock-overrides: "true"), and one
	// ConfigMap may serve stores and pools alike. The pool's overrides come
	// on top of each member's own safety stock. A change applies within
	// seconds; channels watching the pool are told to list again (see
	// docs/hub-api.md). Invalid entries are ignored and listed in the
	// SafetyStockOverridesValid condition; while the ConfigMap is missing or
	// unlabelled, no override applies (only safetyStock) and the condition
	// says so.
	// +optional
	SafetyStockOverridesRef *ConfigMapReference `json:"safetyStockOverridesRef,omitempty"`

	// AllocationPolicy decides which members an order's lines take stock
	// from: Priority (default) or MostAvailable.
	// +kubebuilder:default=Priority
	// +optional
	AllocationPolicy AllocationPolicy `json:"allocationPolicy,omitempty"`
}

// StockPoolMember is one member shop as the pool last saw it.
type StockPoolMember struct {
	// Name of the SmaregiStore.
	Name string `json:"name"`
	// Priority from spec.memberPriorities (0 when not listed).
	Priority int32 `json:"priority"`
	// Ready is the SmaregiStore's Ready condition (True or not).
	Ready bool `json:"ready"`
	// Active is true when the member counts in the pool's available and
	// takes orders: it is not suspended, not being deleted and not Stalled
	// (a human must fix it). A transient failure (Ready False while
	// Reconciling) does not take a member out: its own stock listing keeps
	// selling too, and its adjustments are pushed once Smaregi answers.
	Active bool `json:"active"`
}

// StockPoolStatus is what the operator observed.
type StockPoolStatus struct {
	// ObservedGeneration is the generation of the spec last acted on.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Conditions: Ready (at least one active member), kstatus's
	// Reconciling and Stalled, and SafetyStockOverridesValid (with
	// spec.safetyStockOverridesRef only; it does not affect Ready).
	// +listType=map
	// +listMapKey=type
	// +patchStrategy=merge
	// +patchMergeKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty" patchStrategy:"merge" patchMergeKey:"type"`

	// Members are the selected SmaregiStores, sorted by name.
	// +listType=atomic
	// +optional
	Members []StockPoolMember `json:"members,omitempty"`

	// ActiveMembers counts the members that are active.
	// +optional
	ActiveMembers int32 `json:"activeMembers"`

	// SKUs is the number of distinct products with a stock row in any
	// active member's mirror.
	// +optional
	SKUs int64 `json:"skus"`
}

// StockPool sells the stock of several shops as one: online channels read
// the pooled availability and submit orders to the pool, and the operator
// splits each order across the member shops and applies it to each of them
// exactly once. See docs/hub-api.md.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=spool,categories=smaregi
// +kubebuilder:printcolumn:name="Policy",type=string,JSONPath=`.spec.allocationPolicy`
// +kubebuilder:printcolumn:name="Active",type=integer,JSONPath=`.status.activeMembers`,description="Members that take orders"
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="SKUs",type=integer,JSONPath=`.status.skus`
// +kubebuilder:printcolumn:name="Reason",type=string,priority=1,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type StockPool struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec StockPoolSpec `json:"spec"`

	// +optional
	Status StockPoolStatus `json:"status,omitempty"`
}

// Policy returns spec.allocationPolicy, defaulted.
func (in *StockPool) Policy() AllocationPolicy {
	if in.Spec.AllocationPolicy == "" {
		return AllocationPriority
	}
	return in.Spec.AllocationPolicy
}

// MemberPriority returns the priority spec.memberPriorities gives the store
// (0 when not listed).
func (in *StockPool) MemberPriority(store string) int32 {
	for _, p := range in.Spec.MemberPriorities {
		if p.Store == store {
			return p.Priority
		}
	}
	return 0
}

// +kubebuilder:object:root=true

// StockPoolList contains a list of StockPool.
type StockPoolList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []StockPool `json:"items"`
}

func init() {
	SchemeBuilder.Register(&StockPool{}, &StockPoolList{})
}
