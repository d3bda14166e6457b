package smaregi

import "strings"

// CanonicalStoreID is a numeric store ID without leading zeros ("007" →
// "7", "000" → "0"), so that IDs are compared as the numbers they are.
// Anything else is compared as given. spec.storeID refuses leading zeros,
// but Smaregi's answers and sends carry storeId as text that may have them.
func CanonicalStoreID(id string) string {
	if id == "" {
		return id
	}
	for i := 0; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return id
		}
	}
	t := strings.TrimLeft(id, "0")
	if t == "" {
		return "0"
	}
	return t
}
