package answertext

import (
	"strings"
	"testing"
)

func TestSafe(t *testing.T) {
	if got := Safe("bad  token\ttok-123\nseen", "tok-123", ""); got != "bad token [redacted] seen" {
		t.Errorf("Safe = %q", got)
	}
	long := strings.Repeat("あ", 200) // 600 bytes
	got := Safe(long)
	if len(got) > maxLen+len("…") || !strings.HasSuffix(got, "…") || !strings.HasPrefix(long, strings.TrimSuffix(got, "…")) {
		t.Errorf("Safe cut %d bytes badly: %q", len(got), got)
	}
}

func TestOpaque(t *testing.T) {
	page := []byte("<html><head><TITLE>502 Bad Gateway &amp; tok-1</TITLE></head><body>x</body></html>")
	got := Opaque("text/html; charset=UTF-8", page, "tok-1")
	if want := "non-JSON answer (text/html, 82 bytes): 502 Bad Gateway & [redacted]"; got != want {
		t.Errorf("Opaque = %q, want %q", got, want)
	}
	if got := Opaque("", []byte("oops")); got != "non-JSON answer (, 4 bytes)" {
		t.Errorf("Opaque without a title = %q", got)
	}
}

func TestRedact(t *testing.T) {
	// Empty secrets are skipped: replacing "" would put the marker between
	// every byte. White space is kept as it is (only Safe folds it).
	if got := Redact("id cid  secret csecret", "", "csecret", "cid"); got != "id [redacted]  secret [redacted]" {
		t.Errorf("Redact = %q", got)
	}
	if got := Redact("nothing to hide", "tok"); got != "nothing to hide" {
		t.Errorf("Redact without a secret in the text = %q", got)
	}
}
