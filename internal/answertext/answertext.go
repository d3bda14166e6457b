// Package answertext turns what a server answered into text fit for
// errors, status conditions and events: secrets removed (a server might
// echo a header back), one line, bounded, and a proxy's HTML page reduced
// to its title. Both Smaregi clients (legacy and Platform) use it, so a
// fault reads the same whichever API a store speaks.
package answertext

import (
	"bytes"
	"fmt"
	"html"
	"strings"
	"unicode/utf8"
)

// maxLen bounds a text in bytes (cut at a rune boundary).
const maxLen = 300

// Redact returns s with every non-empty secret replaced by "[redacted]".
// It is the one place that says how a secret leaves a text, so that an
// operator finds the same marker in a status, an event or a log line,
// whichever part removed it.
func Redact(s string, secrets ...string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "[redacted]")
		}
	}
	return s
}

// Safe returns s redacted (Redact), its white space folded to single
// spaces, and cut to maxLen bytes.
func Safe(s string, secrets ...string) string {
	s = strings.Join(strings.Fields(Redact(s, secrets...)), " ")
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// Opaque summarises a non-JSON answer (a proxy's HTML page, say) by its
// content type, size and title, so an operator sees "502 Bad Gateway"
// rather than markup. The title passes through Safe with secrets.
func Opaque(contentType string, body []byte, secrets ...string) string {
	if i := strings.IndexByte(contentType, ';'); i >= 0 {
		contentType = contentType[:i]
	}
	desc := fmt.Sprintf("non-JSON answer (%s, %d bytes)", strings.TrimSpace(contentType), len(body))
	if title := htmlTitle(body); title != "" {
		desc += ": " + Safe(title, secrets...)
	}
	return desc
}

// htmlTitle is the text of the page's <title>, looked for in its first 4 KiB.
func htmlTitle(body []byte) string {
	lower := bytes.ToLower(body[:min(len(body), 4096)])
	i := bytes.Index(lower, []byte("<title"))
	if i < 0 {
		return ""
	}
	j := bytes.IndexByte(lower[i:], '>')
	if j < 0 {
		return ""
	}
	start := i + j + 1
	end := bytes.Index(lower[start:], []byte("</title"))
	if end < 0 {
		return ""
	}
	return html.UnescapeString(string(body[start : start+end]))
}
