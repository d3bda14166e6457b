// Package stockpool is what a StockPool means: which SmaregiStores are its
// members and which of them count, and how an order's line is split across
// them by the pool's allocation policy. The hub API (listing and accepting
// pool orders) and the StockPool controller (status) both use it, so that
// the status and the API never disagree about membership.
package stockpool

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math"
	"sort"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// Member is one SmaregiStore the pool's selector selects.
type Member struct {
	Store    *smaregiv1alpha1.SmaregiStore
	Priority int32
	// Ready: the store's Ready condition is True (reported, not used).
	Ready bool
	// Active: the member counts in the pool's availability and takes
	// orders (StoreActive).
	Active bool
}

// Name is the member store's name.
func (m Member) Name() string { return m.Store.Name }

// StoreActive is the rule Member.Active applies: a store takes pool orders
// unless it is suspended, being deleted (it accepts no adjustments) or
// Stalled (its parts would wait for a human). A transient failure (Ready
// False while Reconciling, as Smaregi's 5xx make it) does not take it out:
// its own listing keeps selling the same stock, and its adjustments are
// pushed, exactly once, once Smaregi answers again. Taking it out would
// make the pool refuse orders its stock covers at every blip.
func StoreActive(st *smaregiv1alpha1.SmaregiStore) bool {
	return st.DeletionTimestamp == nil && !st.Spec.Suspend &&
		!meta.IsStatusConditionTrue(st.Status.Conditions, smaregiv1alpha1.StalledCondition)
}

// Members lists the pool's members sorted by name. An invalid selector is
// an error (the API validates it on no write, so it can happen).
func Members(ctx context.Context, r client.Reader, pool *smaregiv1alpha1.StockPool) ([]Member, error) {
	sel, err := metav1.LabelSelectorAsSelector(&pool.Spec.StoreSelector)
	if err != nil {
		return nil, fmt.Errorf("stockpool %s/%s: spec.storeSelector: %w", pool.Namespace, pool.Name, err)
	}
	var list smaregiv1alpha1.SmaregiStoreList
	if err := r.List(ctx, &list, client.InNamespace(pool.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("stockpool %s/%s: listing SmaregiStores: %w", pool.Namespace, pool.Name, err)
	}
	out := make([]Member, len(list.Items))
	for i := range list.Items {
		st := &list.Items[i]
		out[i] = Member{Store: st, Priority: pool.MemberPriority(st.Name), Ready: meta.IsStatusConditionTrue(st.Status.Conditions, smaregiv1alpha1.ReadyCondition), Active: StoreActive(st)}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Store.Name < out[j].Store.Name })
	return out, nil
}

// Candidate is an active member's availability of one product.
type Candidate struct {
	Store     string
	Priority  int32
	Available int64
}

// Take is what one member gives to an order line (Amount > 0).
type Take struct {
	Store  string
	Amount int64
}

// Pooled is the pool's availability of a product: the sum of its active
// members' available less the pool's safety stock, never below 0. The sum
// saturates, like Available, so that no overflow turns into stock.
func Pooled(cands []Candidate, safetyStock int64) int64 {
	var sum int64
	for _, c := range cands {
		if c.Available > 0 {
			if sum > math.MaxInt64-c.Available {
				sum = math.MaxInt64
			} else {
				sum += c.Available
			}
		}
	}
	return max(sum-max(safetyStock, 0), 0)
}

// Allocate splits want (> 0 units to take) across the candidates by policy:
// Priority takes from the highest priority first, MostAvailable from the
// one with the most available first; either way a member gives at most its
// available and the line is split only when the first member has too
// little. ok is false when the pool (Pooled) has less than want: then
// nothing is taken.
func Allocate(policy smaregiv1alpha1.AllocationPolicy, cands []Candidate, safetyStock, want int64) (takes []Take, ok bool) {
	if want <= 0 || Pooled(cands, safetyStock) < want {
		return nil, false
	}
	order := append([]Candidate(nil), cands...)
	sort.SliceStable(order, func(i, j int) bool {
		a, b := order[i], order[j]
		if policy == smaregiv1alpha1.AllocationMostAvailable && a.Available != b.Available {
			return a.Available > b.Available
		}
		if a.Priority != b.Priority {
			return a.Priority > b.Priority
		}
		return a.Store < b.Store
	})
	for _, c := range order {
		if want == 0 {
			break
		}
		n := min(c.Available, want)
		if n <= 0 {
			continue
		}
		takes = append(takes, Take{Store: c.Store, Amount: n})
		want -= n
	}
	// Pooled >= want and each member gives up to its available, so this
	// cannot remain; checked all the same, since the answer takes stock.
	if want != 0 {
		return nil, false
	}
	return takes, true
}

// AdjustmentIDPrefix starts the ID of every member adjustment a pool order
// becomes; the hub API refuses it in IDs that callers choose for a store's
// own adjustments, so the two never collide.
const AdjustmentIDPrefix = "spool:"

// maxAdjustmentIDLen is the hub API's limit on adjustment IDs, so that a
// member adjustment can be read through the store's own route too.
const maxAdjustmentIDLen = 128

// MemberAdjustmentID is the ID of the adjustment that a pool order becomes
// in one member store: "spool:<pool>:<order id>", or, when that is too long,
// "spool:" and a hash of both. It depends on nothing but the pool and the
// order, so that submitting an allocation again (a retry, a recovery after
// a crash) finds the adjustment already there instead of adding a second
// one.
func MemberAdjustmentID(pool, orderID string) string {
	id := AdjustmentIDPrefix + pool + ":" + orderID
	if len(id) <= maxAdjustmentIDLen {
		return id
	}
	sum := sha256.Sum256([]byte(pool + "\x00" + orderID))
	return AdjustmentIDPrefix + hex.EncodeToString(sum[:])
}
