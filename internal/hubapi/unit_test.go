package hubapi

import (
	"fmt"
	"testing"
	"time"
)

func TestTTLCacheIsBoundedAndExpires(t *testing.T) {
	c := newTTLCache[string, int](100)
	for i := range 10_000 {
		c.put(fmt.Sprint(i), i, t0, time.Second)
		if n := c.len(); n > 100 {
			t.Fatalf("cache grew to %d entries, bound is 100", n)
		}
	}
	if v, ok := c.get("9999", t0); !ok || v != 9999 {
		t.Fatalf("newest entry missing: %v %v", v, ok)
	}
	if _, ok := c.get("9999", t0.Add(time.Second)); ok {
		t.Fatal("entry still served at its expiry")
	}
	// Expired entries are swept before live ones are evicted.
	d := newTTLCache[string, int](3)
	d.put("old1", 1, t0, time.Second)
	d.put("old2", 2, t0, time.Second)
	d.put("live", 3, t0, time.Hour)
	d.put("new", 4, t0.Add(time.Minute), time.Hour)
	if _, ok := d.get("live", t0.Add(time.Minute)); !ok {
		t.Fatal("a live entry was evicted while expired ones were present")
	}
}

func TestBearerToken(t *testing.T) {
	for h, want := range map[string]string{
		"Bearer abc.def":   "abc.def",
		"bearer abc":       "abc",
		"Bearer  abc ":     "abc",
		"Bearer":           "",
		"Bearer ":          "",
		"Basic abc":        "",
		"Bearer a b":       "",
		"":                 "",
		"Token abc":        "",
		"Bearer\tabc":      "",
		"BearerX abc":      "",
		"Bearer abc\tdef":  "",
		"Bearer abc.d-e_f": "abc.d-e_f",
	} {
		got, ok := bearerToken(h)
		if got != want || ok != (want != "") {
			t.Errorf("bearerToken(%q) = %q, %v; want %q", h, got, ok, want)
		}
	}
}

func TestFingerprint(t *testing.T) {
	base := AdjustmentRequest{ID: "o", Reason: "r", Lines: []RequestLine{{ProductID: "1", Quantity: -1}, {ProductCode: "49", Quantity: 2}}}
	reordered := AdjustmentRequest{ID: "o", Reason: "r", Lines: []RequestLine{{ProductCode: "49", Quantity: 2}, {ProductID: "1", Quantity: -1}}}
	if base.fingerprint() != reordered.fingerprint() {
		t.Fatal("line order changed the fingerprint")
	}
	for name, other := range map[string]AdjustmentRequest{
		"reason":   {Reason: "r2", Lines: base.Lines},
		"quantity": {Reason: "r", Lines: []RequestLine{{ProductID: "1", Quantity: -2}, {ProductCode: "49", Quantity: 2}}},
		"id→code":  {Reason: "r", Lines: []RequestLine{{ProductCode: "1", Quantity: -1}, {ProductCode: "49", Quantity: 2}}},
		"fewer":    {Reason: "r", Lines: base.Lines[:1]},
		// The reason cannot be crafted to look like a line.
		"smuggled": {Reason: "r\n1:x", Lines: base.Lines},
	} {
		if other.fingerprint() == base.fingerprint() {
			t.Errorf("%s: different requests share a fingerprint", name)
		}
	}
}

// A pool's resourceVersion carries its members' positions and the safety
// stock fingerprint; one without a fingerprint (older) parses and matches
// no pool; anything else malformed is refused.
func TestPoolVersionRoundTrip(t *testing.T) {
	v := poolVersion{names: []string{"shibuya", "umeda.2"}, versions: []uint64{12, 40}, safety: "3fa1b2c3d4e5f607"}
	got, ok := parsePoolVersion(v.String())
	if !ok || fmt.Sprint(got) != fmt.Sprint(v) {
		t.Fatalf("%q parsed to %+v, %v", v.String(), got, ok)
	}
	if old, ok := parsePoolVersion("shibuya:12,umeda:40"); !ok || old.safety != "" || len(old.names) != 2 {
		t.Fatalf("a version without a fingerprint: %+v, %v", old, ok)
	}
	for _, bad := range []string{"", "~3fa1", "umeda:1,shibuya:2~x", "shibuya:x~y", "shibuya~y"} {
		if _, ok := parsePoolVersion(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
