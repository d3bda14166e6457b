package webhookserver

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// needsDecoding reports whether a JSON string's contents differ from their
// decoded value: escapes, or invalid UTF-8 (which encoding/json turns into
// U+FFFD).
func needsDecoding(raw []byte) bool {
	return bytes.IndexByte(raw, '\\') >= 0 || !utf8.Valid(raw)
}

// unquote decodes the contents of a JSON string (without its quotes).
func unquote(raw []byte) string {
	if !needsDecoding(raw) {
		return string(raw)
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		// Unreachable for input json.Valid accepted.
		return string(raw)
	}
	return s
}

// walker steps through JSON that json.Valid has accepted, so it checks only
// the types the caller asks about, never the syntax.
type walker struct {
	b []byte
	i int
}

func (w *walker) space() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\r', '\n':
			w.i++
		default:
			return
		}
	}
}

// peek returns the first byte of the next value, after white space.
func (w *walker) peek() byte {
	w.space()
	if w.i >= len(w.b) {
		return 0
	}
	return w.b[w.i]
}

// rawString consumes a string and returns its contents, escapes undecoded.
func (w *walker) rawString() []byte {
	w.space()
	w.i++ // opening quote
	start := w.i
	for w.b[w.i] != '"' {
		if w.b[w.i] == '\\' {
			w.i++
		}
		w.i++
	}
	raw := w.b[start:w.i]
	w.i++
	return raw
}

// str consumes a string value and returns it decoded, as a new string.
func (w *walker) str() string { return unquote(w.rawString()) }

// number consumes a number and returns its text.
func (w *walker) number() string {
	start := w.i
	for w.i < len(w.b) && isNumberByte(w.b[w.i]) {
		w.i++
	}
	return string(w.b[start:w.i])
}

func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// object consumes an object, calling each with the raw key while the walker
// stands at the key's value; each must consume the value.
func (w *walker) object(each func(key []byte) error) error {
	w.space()
	w.i++ // {
	if w.peek() == '}' {
		w.i++
		return nil
	}
	for {
		key := w.rawString()
		w.space()
		w.i++ // :
		w.space()
		if err := each(key); err != nil {
			return err
		}
		w.space()
		if w.b[w.i] == '}' {
			w.i++
			return nil
		}
		w.i++ // ,
	}
}

// array consumes an array, calling each with the walker at every element;
// each must consume the element.
func (w *walker) array(each func() error) error {
	w.space()
	w.i++ // [
	if w.peek() == ']' {
		w.i++
		return nil
	}
	for {
		w.space()
		if err := each(); err != nil {
			return err
		}
		w.space()
		if w.b[w.i] == ']' {
			w.i++
			return nil
		}
		w.i++ // ,
	}
}

// skip consumes one value of any type.
func (w *walker) skip() {
	switch w.peek() {
	case '"':
		w.rawString()
	case '{':
		_ = w.object(func([]byte) error { w.skip(); return nil })
	case '[':
		_ = w.array(func() error { w.skip(); return nil })
	case 't', 'n':
		w.i += 4
	case 'f':
		w.i += 5
	default:
		w.number()
	}
}
