package webhookserver

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"sync"
)

// Authenticating before decoding (issue 20 §1). The receiver's URL is
// public (status.receiver.url, and Smaregi's admin screen), so whatever it
// does for a request without the right key, anyone can make it do, as often
// and as concurrently as they like. Decoding a 4 MiB form of empty fields
// into url.Values cost about 30 times the body, before the key was even
// looked at. So the key field is found in the raw bytes, as they arrive,
// with nothing allocated per field; the rest of the form is decoded only
// once the key matched.

// scanPrefix is how much of a body is read before the key is looked for: a
// key field that comes early (Smaregi's form has few fields) is checked
// having read this much, whatever the body's length.
const scanPrefix = 32 << 10

// errTooManyFields marks a form with more fields than
// Options.MaxFormFields; the receiver answers 413 for it.
var errTooManyFields = errors.New("too many form fields")

// errBadKeyField marks a key field whose value is not valid
// form-urlencoding: the whole form would be refused as malformed.
var errBadKeyField = errors.New("form not readable: bad escape in a value")

// keyScan finds the first field named name in form-urlencoded bytes, and
// counts the fields it passes. It keeps only the SHA-256 digest of the
// field's decoded value (authentication compares digests), so a key field
// of any length costs the same. It sees the fields url.ParseQuery would:
// '&' separates them, empty ones are skipped, '+' and %XX are decoded in
// the name and the value; a field that ParseQuery would refuse (';', a bad
// escape in the name) is not the key, and the decode after authentication
// refuses the form for it.
type keyScan struct {
	name      string
	maxFields int // 0: no limit

	next   int // offset of the first field not scanned yet
	fields int
	found  bool
	sum    [sha256.Size]byte
}

// scan looks at the complete fields of buf[s.next:]: those ended by '&',
// and the last one too if final (buf holds all of the input). It stops at
// the key field.
func (s *keyScan) scan(buf []byte, final bool) error {
	for !s.found && s.next < len(buf) {
		rest := buf[s.next:]
		field := rest
		if i := bytes.IndexByte(rest, '&'); i >= 0 {
			field = rest[:i]
			s.next += i + 1
		} else if final {
			s.next = len(buf)
		} else {
			return nil // the field may go on in bytes not read yet
		}
		if len(field) == 0 {
			continue
		}
		s.fields++
		if s.maxFields > 0 && s.fields > s.maxFields {
			return errTooManyFields
		}
		if bytes.IndexByte(field, ';') >= 0 {
			continue
		}
		rawName, rawValue, _ := bytes.Cut(field, []byte("="))
		// "params" is taken out of the form before the key is read (see
		// readForm), so a store whose parameter is named so never matched.
		if s.name == "params" || !formNameIs(rawName, s.name) {
			continue
		}
		sum, ok := digestFormValue(rawValue)
		if !ok {
			return errBadKeyField
		}
		s.found, s.sum = true, sum
	}
	return nil
}

// eachFormByte hands the bytes of raw, form-decoded ('+' is a space, %XX a
// byte), to emit one at a time, without decoding raw into memory; it stops
// early when emit returns false. ok is false for a bad escape.
func eachFormByte(raw []byte, emit func(byte) bool) (ok bool) {
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return false
			}
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		if !emit(c) {
			return true
		}
	}
	return true
}

// formNameIs reports whether raw, form-decoded, is name.
func formNameIs(raw []byte, name string) bool {
	j, same := 0, true
	ok := eachFormByte(raw, func(c byte) bool {
		if j >= len(name) || name[j] != c {
			same = false
			return false
		}
		j++
		return true
	})
	return ok && same && j == len(name)
}

// digestFormValue is the SHA-256 of raw form-decoded, computed through a
// small buffer so that a long value costs no more than a short one; ok is
// false for a bad escape.
func digestFormValue(raw []byte) (sum [sha256.Size]byte, ok bool) {
	h := sha256.New()
	var buf [256]byte
	n := 0
	if !eachFormByte(raw, func(c byte) bool {
		buf[n] = c
		n++
		if n == len(buf) {
			h.Write(buf[:n])
			n = 0
		}
		return true
	}) {
		return sum, false
	}
	h.Write(buf[:n])
	h.Sum(sum[:0])
	return sum, true
}

// formBody reads a body in steps: first scanPrefix bytes (or the whole
// body if shorter), then the rest into one buffer of the Content-Length (a
// chunked body doubles its buffer). Each step's bytes are reserved from the
// budget first, so the bytes the receiver holds for all requests together
// stay under Options.MaxInFlightBytes.
type formBody struct {
	r      io.Reader
	length int64 // Content-Length; -1 if unknown (chunked)
	max    int64 // MaxBodyBytes
	budget *byteBudget

	buf      []byte
	reserved int64
	done     bool // buf holds the whole body
}

// errBusy marks a body the receiver has no room for now: the bytes in
// flight of other requests fill Options.MaxInFlightBytes.
var errBusy = errors.New("too many bytes in flight")

// read reads until the whole body is in buf or, with sc, until sc found
// its field, scanning each step's bytes as they arrive.
func (b *formBody) read(sc *keyScan) error {
	if b.length == 0 {
		b.done = true
	}
	for !b.done {
		if sc != nil && sc.found {
			return nil
		}
		if len(b.buf) == cap(b.buf) {
			if err := b.grow(); err != nil {
				return err
			}
			if b.done || len(b.buf) == cap(b.buf) {
				// The probe of a full chunked body found its end, or
				// nothing yet.
				if err := b.scanned(sc); err != nil {
					return err
				}
				continue
			}
		}
		n, err := b.r.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		switch {
		case err == io.EOF:
			b.done = true
		case err != nil:
			return err
		case b.length >= 0 && int64(len(b.buf)) >= b.length:
			// net/http delivers exactly Content-Length bytes, or an error.
			b.done = true
		}
		if err := b.scanned(sc); err != nil {
			return err
		}
	}
	return nil
}

// scanned runs sc, if any, over what has been read.
func (b *formBody) scanned(sc *keyScan) error {
	if sc == nil {
		return nil
	}
	return sc.scan(b.buf, b.done)
}

// grow makes room for the next step, reserving it first.
func (b *formBody) grow() error {
	var size int64
	switch {
	case cap(b.buf) == 0 && b.length >= 0:
		size = min(scanPrefix, b.length)
	case cap(b.buf) == 0:
		size = min(scanPrefix, b.max)
	case b.length >= 0:
		size = b.length
	case int64(cap(b.buf)) >= b.max:
		// A chunked body that filled MaxBodyBytes: it is too large unless
		// it ends right here.
		var probe [1]byte
		n, err := b.r.Read(probe[:])
		switch {
		case n > 0:
			return &http.MaxBytesError{Limit: b.max}
		case err == io.EOF:
			b.done = true
			return nil
		case err != nil:
			return err
		}
		return nil // nothing read, no error: read again
	default:
		size = min(2*int64(cap(b.buf)), b.max)
	}
	if size <= int64(cap(b.buf)) {
		// Content-Length lied (more bytes than it said): there is no room
		// for them.
		return errors.New("body longer than its Content-Length")
	}
	more := size - b.reserved
	if !b.budget.tryAcquire(more) {
		return errBusy
	}
	b.reserved += more
	nb := make([]byte, len(b.buf), size)
	copy(nb, b.buf)
	b.buf = nb
	return nil
}

// release gives back the body's reservation; the buffer must not be used
// afterwards by anything that outlives the request.
func (b *formBody) release() {
	b.budget.release(b.reserved)
	b.reserved = 0
}

// byteBudget is a counting semaphore of bytes that never waits: a request
// that does not fit is answered 503 at once, so a flood cannot queue up
// goroutines or memory behind it.
type byteBudget struct {
	mu    sync.Mutex
	limit int64
	used  int64
}

func (b *byteBudget) tryAcquire(n int64) bool {
	if b == nil {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	inFlightBytes.Set(float64(b.used))
	return true
}

func (b *byteBudget) release(n int64) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	inFlightBytes.Set(float64(b.used))
}
