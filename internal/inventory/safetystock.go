package inventory

import (
	"context"
	"fmt"
	"slices"
)

// Safety stock: the units held back from a product when the hub API reports
// what other channels may sell (hubapi.Available).
//
// The effective value of a product is its override when it has one, else
// the store's default (spec.safetyStock). It is kept here, next to the rows
// and the change log, rather than read from Kubernetes by each hub API
// replica: a change of it changes products' availability, so it must get
// resource versions like any other visible change, durably and in commit
// order, in the same transaction that makes it visible (versions.go). The
// leader's controller writes it (SetSafetyStock); every replica reads it.

// SafetyStock is a store's safety stock: Default for every product without
// an entry in Overrides.
type SafetyStock struct {
	Default   int64
	Overrides map[string]int64
}

// For returns the units held back for productID.
func (s SafetyStock) For(productID string) int64 {
	if v, ok := s.Overrides[productID]; ok {
		return v
	}
	return s.Default
}

// Validate refuses negative units and empty product IDs. The controller
// reports bad ConfigMap entries itself and passes only good ones, so a
// backend seeing one here has met a bug.
func (s SafetyStock) Validate() error {
	if s.Default < 0 {
		return fmt.Errorf("default %d is negative", s.Default)
	}
	for id, n := range s.Overrides {
		if id == "" || n < 0 {
			return fmt.Errorf("override %q = %d: want a product ID and a non-negative number", id, n)
		}
	}
	return nil
}

// SafetyStockChanges says which products' effective safety stock differs
// between old and next: every product when the defaults differ (all is
// true; the caller checks each product with a row using For), else the
// products among the overrides of either whose value differs (sorted).
// Backends use it so that both record the same changes.
func SafetyStockChanges(old, next SafetyStock) (all bool, products []string) {
	if old.Default != next.Default {
		return true, nil
	}
	for id := range old.Overrides {
		if old.For(id) != next.For(id) {
			products = append(products, id)
		}
	}
	for id := range next.Overrides {
		if _, seen := old.Overrides[id]; !seen && old.For(id) != next.For(id) {
			products = append(products, id)
		}
	}
	slices.Sort(products)
	return false, products
}

// SafetyStockStore is the safety-stock part of Store.
type SafetyStockStore interface {
	// SetSafetyStock replaces the store's safety stock and, in the same
	// transaction, records a change (a new resource version) for each
	// product with a mirror row whose effective safety stock it changes:
	// so a channel watching the store sees the new availability of exactly
	// those products. The first call for a store records a change for every
	// product with a row, since what was served before (spec.safetyStock,
	// read by the hub API directly) is not known here. It reports how many
	// products changed. Overrides must be non-negative.
	SetSafetyStock(ctx context.Context, key StoreKey, s SafetyStock) (changed int, err error)
	// SafetyStockFor reads the store's default and the overrides of the
	// given products (the others are absent from Overrides) in one read.
	// recorded is false when SetSafetyStock never ran for the store (or it
	// was deleted since): the caller then uses spec.safetyStock.
	SafetyStockFor(ctx context.Context, key StoreKey, productIDs []string) (s SafetyStock, recorded bool, err error)
}
