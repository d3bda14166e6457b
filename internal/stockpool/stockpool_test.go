package stockpool

import (
	"context"
	"reflect"
	"strconv"
	"testing"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
)

func TestAllocate(t *testing.T) {
	cands := []Candidate{
		{Store: "a", Priority: 0, Available: 5},
		{Store: "b", Priority: 10, Available: 3},
		{Store: "c", Priority: 0, Available: 8},
	}
	for _, tc := range []struct {
		name   string
		policy smaregiv1alpha1.AllocationPolicy
		safety int64
		want   int64
		takes  []Take
		ok     bool
	}{
		{"priority first, no split", smaregiv1alpha1.AllocationPriority, 0, 2, []Take{{"b", 2}}, true},
		{"priority splits, ties by name", smaregiv1alpha1.AllocationPriority, 0, 9, []Take{{"b", 3}, {"a", 5}, {"c", 1}}, true},
		{"most available, one member enough", smaregiv1alpha1.AllocationMostAvailable, 0, 8, []Take{{"c", 8}}, true},
		{"most available splits", smaregiv1alpha1.AllocationMostAvailable, 0, 10, []Take{{"c", 8}, {"a", 2}}, true},
		{"everything", smaregiv1alpha1.AllocationPriority, 0, 16, []Take{{"b", 3}, {"a", 5}, {"c", 8}}, true},
		{"one more than there is", smaregiv1alpha1.AllocationPriority, 0, 17, nil, false},
		{"pool safety stock holds back", smaregiv1alpha1.AllocationMostAvailable, 2, 15, nil, false},
		{"within the pool safety stock", smaregiv1alpha1.AllocationMostAvailable, 2, 14, []Take{{"c", 8}, {"a", 5}, {"b", 1}}, true},
		{"nothing wanted", smaregiv1alpha1.AllocationPriority, 0, 0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			takes, ok := Allocate(tc.policy, cands, tc.safety, tc.want)
			if ok != tc.ok || !reflect.DeepEqual(takes, tc.takes) {
				t.Fatalf("Allocate = %v, %v; want %v, %v", takes, ok, tc.takes, tc.ok)
			}
		})
	}
}

func TestPooled(t *testing.T) {
	cands := []Candidate{{Store: "a", Available: 5}, {Store: "b", Available: 0}, {Store: "c", Available: 1 << 62}, {Store: "d", Available: 1 << 62}, {Store: "e", Available: 1 << 62}}
	if got := Pooled(cands[:2], 1); got != 4 {
		t.Errorf("Pooled = %d, want 4", got)
	}
	if got := Pooled(cands[:2], 9); got != 0 {
		t.Errorf("Pooled below the safety stock = %d, want 0", got)
	}
	if got := Pooled(cands, 0); got <= 0 {
		t.Errorf("Pooled overflowed to %d", got)
	}
}

// pager serves fixed mirrors by product ID, a page at a time.
type pager map[inventory.StoreKey][]inventory.Row

func (p pager) RowsPage(_ context.Context, key inventory.StoreKey, after string, limit int) ([]inventory.Row, error) {
	var out []inventory.Row
	for _, r := range p[key] {
		if r.ProductID > after && len(out) < limit {
			out = append(out, r)
		}
	}
	return out, nil
}

func TestMergeAcrossPages(t *testing.T) {
	a, b, c := inventory.StoreKey{Namespace: "n", Name: "a"}, inventory.StoreKey{Namespace: "n", Name: "b"}, inventory.StoreKey{Namespace: "n", Name: "c"}
	rows := func(ids ...string) []inventory.Row {
		var out []inventory.Row
		for _, id := range ids {
			out = append(out, inventory.Row{ProductID: id, StockAmount: int64(len(id))})
		}
		return out
	}
	p := pager{a: rows("1", "3", "5", "7"), b: rows("2", "3", "4"), c: nil}
	var got []string
	err := Merge(context.Background(), p, []inventory.StoreKey{a, b, c}, 2, func(id string, rs []MemberRow) error {
		s := id + ":"
		for _, r := range rs {
			s += strconv.Itoa(r.Index)
		}
		got = append(got, s)
		return nil
	})
	want := []string{"1:0", "2:1", "3:01", "4:1", "5:0", "7:0"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Merge = %v, %v; want %v", got, err, want)
	}
}
