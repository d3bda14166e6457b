package hubapi

// A pool's own safety stock: spec.safetyStock, and per product the entries
// of the ConfigMap that spec.safetyStockOverridesRef names.
//
// Unlike a store's, it is not recorded in the inventory: a pool has no
// change log to give its changes resource versions in (see pool_watch.go),
// so the hub API reads the ConfigMap itself (from the manager's cache, which
// holds the labelled ConfigMaps) and a change ends the pool's watches with
// 410 instead of making events. Every replica reads the same ConfigMap, so
// listings agree; the pool's resourceVersion carries a fingerprint of the
// values, so a watch started (or resumed) from a listing made with other
// values answers 410 too.

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/safetystock"
)

// poolSafety is a pool's effective safety stock per product.
type poolSafety struct {
	inventory.SafetyStock
	// fingerprint identifies the values: the default and the valid
	// overrides, not the ConfigMap's resourceVersion, so that an edit that
	// changes no valid entry (a comment, a label, a bad entry) does not end
	// the pool's watches.
	fingerprint string
}

// overridesEntry is one parsed ConfigMap.
type overridesEntry struct {
	uid             types.UID
	resourceVersion string
	overrides       map[string]int64
	// digest covers the valid entries, sorted.
	digest [sha256.Size]byte
}

// overridesCache keeps each overrides ConfigMap parsed, keyed by its UID
// and resourceVersion, so that tens of thousands of entries are parsed once
// per change rather than per request.
type overridesCache struct {
	mu      sync.Mutex
	entries map[types.NamespacedName]*overridesEntry
}

// maxCachedOverrides bounds the cache: ConfigMaps named by pools are few; a
// cache this full has met deleted ones, and is simply started again.
const maxCachedOverrides = 1024

// get returns the parsed ConfigMap, or nil when it is missing or does not
// carry smaregiv1alpha1.SafetyStockOverridesLabel: then no override
// applies, as the StockPool controller's SafetyStockOverridesValid says.
func (c *overridesCache) get(ctx context.Context, r client.Reader, key types.NamespacedName) (*overridesEntry, error) {
	var cm corev1.ConfigMap
	// Read only (Parse does not write), so the cache's object is not copied:
	// a copy of a large ConfigMap per request would cost what the parse
	// cache saves.
	if err := r.Get(ctx, key, &cm, client.UnsafeDisableDeepCopy); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading ConfigMap %s: %w", key, err)
	}
	if cm.Labels[smaregiv1alpha1.SafetyStockOverridesLabel] != "true" {
		// The manager's cache selects on the label; this guards a reader
		// without that selector, as safetystock.Read does.
		return nil, nil
	}
	c.mu.Lock()
	e := c.entries[key]
	c.mu.Unlock()
	if e != nil && e.uid == cm.UID && e.resourceVersion == cm.ResourceVersion {
		return e, nil
	}
	// Two requests may parse the same new version at once; either result
	// is the same.
	p := safetystock.Parse(&cm)
	e = &overridesEntry{uid: cm.UID, resourceVersion: cm.ResourceVersion, overrides: p.Overrides, digest: digestOverrides(p.Overrides)}
	c.mu.Lock()
	if c.entries == nil || len(c.entries) >= maxCachedOverrides {
		c.entries = map[types.NamespacedName]*overridesEntry{}
	}
	c.entries[key] = e
	c.mu.Unlock()
	return e, nil
}

func digestOverrides(overrides map[string]int64) [sha256.Size]byte {
	h := sha256.New()
	var b []byte
	for _, id := range slices.Sorted(maps.Keys(overrides)) {
		b = append(b[:0], id...)
		b = append(b, '=')
		b = strconv.AppendInt(b, overrides[id], 10)
		b = append(b, '\n')
		h.Write(b)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// poolSafety returns the pool's effective safety stock, read from
// Options.Reader.
func (s *Server) poolSafety(ctx context.Context, pool *smaregiv1alpha1.StockPool) (poolSafety, error) {
	out := poolSafety{SafetyStock: inventory.SafetyStock{Default: pool.Spec.SafetyStock}}
	h := sha256.New()
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(pool.Spec.SafetyStock)))
	if ref := pool.Spec.SafetyStockOverridesRef; ref != nil {
		e, err := s.poolOverrides.get(ctx, s.opts.Reader, types.NamespacedName{Namespace: pool.Namespace, Name: ref.Name})
		if err != nil {
			return out, err
		}
		if e != nil && len(e.overrides) > 0 {
			out.Overrides = e.overrides
			h.Write(e.digest[:])
		}
	}
	// 64 bits: a fingerprint tells versions of one pool apart, it guards
	// against no adversary.
	out.fingerprint = hex.EncodeToString(h.Sum(nil)[:8])
	return out, nil
}
