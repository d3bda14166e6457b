package safetystock

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseKeepsGoodEntriesAndNamesBadOnes(t *testing.T) {
	cm := &corev1.ConfigMap{
		Data: map[string]string{
			"8000001":           "5",
			"8000002":           " 0 ",
			"8000003":           "1000000000",
			"8000004":           "-1",
			"8000005":           "2.5",
			"8000006":           "1000000001",
			"jan-4901234567894": "3",
			"1234567890123456":  "1",
			"8000007":           "",
		},
		BinaryData: map[string][]byte{"8000008": []byte("1")},
	}
	p := Parse(cm)
	if fmt.Sprint(p.Overrides) != "map[8000001:5 8000002:0 8000003:1000000000]" {
		t.Fatalf("overrides %v", p.Overrides)
	}
	var keys []string
	for _, pr := range p.Invalid {
		keys = append(keys, pr.Key)
	}
	if fmt.Sprint(keys) != "[1234567890123456 8000004 8000005 8000006 8000007 8000008 jan-4901234567894]" || p.Entries != 10 {
		t.Fatalf("invalid %v of %d entries", p.Invalid, p.Entries)
	}
	msg := p.describe("overrides")
	for _, want := range []string{`7 of 10 entries of ConfigMap "overrides" are ignored (the other 3 apply)`,
		`"1234567890123456": the key is not a product ID`, `"8000004": the value "-1" is not a whole number`, "and 2 more"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestMessageCutsLongValues(t *testing.T) {
	p := Parse(&corev1.ConfigMap{Data: map[string]string{"1": strings.Repeat("x", 10_000)}})
	if msg := p.describe("c"); len(msg) > 200 {
		t.Fatalf("a long value made a %d-byte message: %q", len(msg), msg)
	}
}
