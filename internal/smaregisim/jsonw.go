package smaregisim

import (
	"strconv"
	"unicode/utf8"
)

// jsonWriter builds response bodies by hand: field order must follow the
// request's "fields", every value is a string, and non-ASCII text is
// optionally \uXXXX-escaped like PHP's json_encode (which encoding/json
// cannot do).
type jsonWriter struct {
	buf   []byte
	ascii bool
}

const hexDigits = "0123456789abcdef"

func (w *jsonWriter) raw(s string) { w.buf = append(w.buf, s...) }

func (w *jsonWriter) u16(r rune) {
	w.buf = append(w.buf, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
}

func (w *jsonWriter) str(s string) {
	w.buf = append(w.buf, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				w.buf = append(w.buf, '\\', c)
			case c == '\n':
				w.buf = append(w.buf, '\\', 'n')
			case c == '\r':
				w.buf = append(w.buf, '\\', 'r')
			case c == '\t':
				w.buf = append(w.buf, '\\', 't')
			case c < 0x20 || c == 0x7f:
				w.u16(rune(c))
			default:
				w.buf = append(w.buf, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			w.u16(0xfffd)
		case !w.ascii && r != 0x2028 && r != 0x2029:
			w.buf = append(w.buf, s[i:i+size]...)
		case r > 0xffff:
			r -= 0x10000
			w.u16(0xd800 + (r>>10)&0x3ff)
			w.u16(0xdc00 + r&0x3ff)
		default:
			w.u16(r)
		}
		i += size
	}
	w.buf = append(w.buf, '"')
}

func (w *jsonWriter) int(n int64) { w.buf = strconv.AppendInt(w.buf, n, 10) }
