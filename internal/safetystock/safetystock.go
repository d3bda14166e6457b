// Package safetystock reads per-product safety stock overrides from a
// ConfigMap: each key is a Smaregi product ID, each value the units held
// back from that product. A SmaregiStore names its ConfigMap in
// spec.safetyStockOverridesRef; anything else that holds stock back per
// product (a StockPool) reads its ConfigMap the same way, through Read.
//
// Bad entries never fail the whole ConfigMap: they are left out and
// described in the result, so one typo in a GitOps repository does not
// drop tens of thousands of good entries.
package safetystock

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// maxProductIDDigits is Smaregi's limit on productId.
const maxProductIDDigits = 15

// maxListed bounds how many bad entries a message names; the count says
// how many there are in all.
const maxListed = 5

// Problem is one entry left out, and why.
type Problem struct {
	Key    string
	Reason string
}

// Parsed is what a ConfigMap's entries come to.
type Parsed struct {
	// Overrides are the valid entries: product ID to units.
	Overrides map[string]int64
	// Invalid are the entries left out, sorted by key.
	Invalid []Problem
	// Entries is the number of entries read (data and binaryData).
	Entries int
}

// Parse reads the entries of a ConfigMap. A valid entry has a product ID
// (1 to 15 digits) for key and a whole number of units from 0 to
// smaregiv1alpha1.MaxSafetyStock for value (spaces around it are allowed).
// binaryData entries are all invalid: the values are meant to be read and
// reviewed as text.
func Parse(cm *corev1.ConfigMap) Parsed {
	p := Parsed{Overrides: make(map[string]int64, len(cm.Data)), Entries: len(cm.Data) + len(cm.BinaryData)}
	for k, v := range cm.Data {
		if err := smaregi.ValidateID("product", k, maxProductIDDigits); err != nil {
			p.Invalid = append(p.Invalid, Problem{Key: k, Reason: "the key is not a product ID (1 to 15 digits)"})
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < 0 || n > smaregiv1alpha1.MaxSafetyStock {
			p.Invalid = append(p.Invalid, Problem{Key: k, Reason: fmt.Sprintf("the value %s is not a whole number from 0 to %d", quote(v), smaregiv1alpha1.MaxSafetyStock)})
			continue
		}
		p.Overrides[k] = n
	}
	for k := range cm.BinaryData {
		p.Invalid = append(p.Invalid, Problem{Key: k, Reason: "binaryData is not read: put the entry under data"})
	}
	slices.SortFunc(p.Invalid, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return p
}

// quote shows a user's string in a message, cut short: a message is for
// reading, and a value may be anything.
func quote(s string) string {
	const max = 24
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}

// Result is the overrides to apply and the condition that reports them.
type Result struct {
	// Overrides are the valid entries; none when the ConfigMap is missing
	// or unlabelled.
	Overrides map[string]int64
	Status    metav1.ConditionStatus
	Reason    string
	Message   string
}

// Read reads the ConfigMap namespace/name and parses it. cached is the
// manager's cache, which holds only ConfigMaps labelled
// smaregiv1alpha1.SafetyStockOverridesLabel=true (so that the operator does
// not keep every ConfigMap of the cluster in memory, and reads no ConfigMap
// that did not opt in); uncached is read only when the cache has no such
// ConfigMap, to tell a missing one from an unlabelled one. A missing or
// unlabelled ConfigMap gives no overrides and a False status saying what to
// do: the store keeps working with spec.safetyStock alone. The error is
// for API failures only (retry).
func Read(ctx context.Context, cached, uncached client.Reader, namespace, name string) (Result, error) {
	var cm corev1.ConfigMap
	err := cached.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &cm)
	if err == nil && cm.Labels[smaregiv1alpha1.SafetyStockOverridesLabel] != "true" {
		// The cache selects on the label; this guards a reader without
		// that selector.
		err = apierrors.NewNotFound(corev1.Resource("configmaps"), name)
	}
	if apierrors.IsNotFound(err) {
		var meta metav1.PartialObjectMetadata
		meta.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
		uerr := uncached.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, &meta)
		switch {
		case apierrors.IsNotFound(uerr):
			return Result{Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonConfigMapNotFound,
				Message: fmt.Sprintf("ConfigMap %q does not exist in namespace %q: create it (labelled %s: \"true\") or remove safetyStockOverridesRef; until then no override applies, only spec.safetyStock",
					name, namespace, smaregiv1alpha1.SafetyStockOverridesLabel)}, nil
		case uerr != nil:
			return Result{}, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, name, uerr)
		}
		return Result{Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonConfigMapNotLabelled,
			Message: fmt.Sprintf("ConfigMap %q lacks the label %s: \"true\" (the operator reads only ConfigMaps that opt in); until it has it, no override applies, only spec.safetyStock",
				name, smaregiv1alpha1.SafetyStockOverridesLabel)}, nil
	}
	if err != nil {
		return Result{}, fmt.Errorf("reading ConfigMap %s/%s: %w", namespace, name, err)
	}
	p := Parse(&cm)
	if len(p.Invalid) == 0 {
		return Result{Overrides: p.Overrides, Status: metav1.ConditionTrue, Reason: smaregiv1alpha1.ReasonSucceeded,
			Message: fmt.Sprintf("%d overrides from ConfigMap %q apply", len(p.Overrides), name)}, nil
	}
	return Result{Overrides: p.Overrides, Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonInvalidEntries,
		Message: p.describe(name)}, nil
}

// describe words the invalid entries for a condition message: a count, the
// first few, and that the rest apply.
func (p Parsed) describe(name string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d entries of ConfigMap %q are ignored (the other %d apply): ", len(p.Invalid), p.Entries, name, len(p.Overrides))
	for i, pr := range p.Invalid {
		if i == maxListed {
			fmt.Fprintf(&b, "; and %d more", len(p.Invalid)-maxListed)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s", quote(pr.Key), pr.Reason)
	}
	return b.String()
}
