package inventory

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestLatestPerProduct(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("JST", 9*3600))
	got, err := LatestPerProduct([]Row{
		{ProductID: "1", StockAmount: 1, UpdDateTime: t1.Add(time.Minute)},
		{ProductID: "2", StockAmount: 2, UpdDateTime: t1},
		{ProductID: "1", StockAmount: 9, UpdDateTime: t1}, // older: loses
		{ProductID: "2", StockAmount: 3, UpdDateTime: t1.Add(1500 * time.Nanosecond)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].StockAmount != 1 || got[1].StockAmount != 3 {
		t.Fatalf("got %+v", got)
	}
	if loc := got[1].UpdDateTime.Location(); loc != time.UTC || got[1].UpdDateTime.Nanosecond() != 1000 {
		t.Fatalf("not normalised to UTC microseconds: %v", got[1].UpdDateTime)
	}
	if _, err := LatestPerProduct([]Row{{StockAmount: 1}}); err == nil {
		t.Fatal("accepted a row without product ID")
	}
}

func TestDriftSampleKeepsSmallestIDs(t *testing.T) {
	var d Drift
	for i := 99; i >= 0; i-- {
		d.AddSample(DriftEntry{ProductID: fmt.Sprintf("%03d", i)})
	}
	if len(d.Sample) != DriftSampleSize {
		t.Fatalf("sample size %d", len(d.Sample))
	}
	for i, e := range d.Sample {
		if want := fmt.Sprintf("%03d", i); e.ProductID != want {
			t.Fatalf("sample[%d] = %s, want %s", i, e.ProductID, want)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for _, in := range []string{
		"postgres://op:hunter2@db/inv",
		"postgres://op@db/inv?password=hunter2",
		"host=db user=op password=hunter2",
	} {
		if out := RedactURL(in); strings.Contains(out, "hunter2") {
			t.Errorf("RedactURL(%q) = %q", in, out)
		}
	}
}

func TestParseStoreKey(t *testing.T) {
	k := StoreKey{Namespace: "shops", Name: "umeda"}
	got, err := ParseStoreKey(k.String())
	if err != nil || got != k {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range []string{"", "x", "/x", "x/"} {
		if _, err := ParseStoreKey(bad); err == nil {
			t.Errorf("ParseStoreKey(%q) succeeded", bad)
		}
	}
}

// Drift.Count: a listed row changed after the sync began is news, not
// drift; anything else counts by kind and is sampled, removed rows always.
func TestDriftCountLeavesNewsOut(t *testing.T) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	old, news := Row{ProductID: "x", UpdDateTime: since}, Row{ProductID: "x", UpdDateTime: since.Add(time.Second)}
	var d Drift
	cases := []struct {
		e    DriftEntry
		want bool
	}{
		{DriftEntry{ProductID: "3", Kind: DriftChanged, After: news}, false},
		{DriftEntry{ProductID: "4", Kind: DriftAdded, After: news}, false},
		{DriftEntry{ProductID: "2", Kind: DriftChanged, After: old}, true},
		{DriftEntry{ProductID: "1", Kind: DriftAdded, After: old}, true},
		{DriftEntry{ProductID: "0", Kind: DriftRemoved, Before: news}, true},
	}
	for _, c := range cases {
		if got := d.Count(c.e, since); got != c.want {
			t.Errorf("Count(%s %s) = %v, want %v", c.e.Kind, c.e.ProductID, got, c.want)
		}
	}
	if d.Changed != 1 || d.Added != 1 || d.Removed != 1 || len(d.Sample) != 3 || d.Sample[0].ProductID != "0" || d.Sample[2].ProductID != "2" {
		t.Fatalf("drift %+v, want one of each kind, sampled in product order", d)
	}
}
