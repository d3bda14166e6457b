package webhookserver

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// readForm reads a send's form as http.Request.ParseForm would (body
// fields of an application/x-www-form-urlencoded POST first, then the query
// string; the first value of a name wins), but with a fraction of the
// memory: the body is read into one buffer sized from Content-Length (not
// grown by io.ReadAll, which allocated several times the body), never
// copied into a string, and params is decoded once, straight into the bytes
// the JSON parser reads. params is the first "params" value, nil if none;
// it is not in form. Errors say nothing of the body or query: either may
// hold the key.
func readForm(r *http.Request, maxBytes int64) (form url.Values, params []byte, err error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, nil, errors.New("query string not readable")
	}
	form = url.Values{}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return nil, nil, errors.New("content type not readable")
	}
	if mt == "application/x-www-form-urlencoded" {
		body, err := readBody(r, maxBytes)
		if err != nil {
			return nil, nil, err
		}
		if params, err = parseFormBody(body, form); err != nil {
			return nil, nil, err
		}
	}
	for k, vs := range query {
		if k == "params" {
			if params == nil && len(vs) > 0 {
				params = []byte(vs[0])
			}
			continue
		}
		form[k] = append(form[k], vs...)
	}
	return form, params, nil
}

// readBody reads the whole body. With a Content-Length (which Smaregi
// sends) the buffer has exactly that size; a chunked body grows a
// bytes.Buffer, still bounded by maxBytes through the MaxBytesReader the
// caller installed.
func readBody(r *http.Request, maxBytes int64) ([]byte, error) {
	if r.ContentLength >= 0 && r.ContentLength <= maxBytes {
		// net/http delivers exactly Content-Length bytes, or an error.
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return nil, err
		}
		return buf, nil
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(r.Body); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// parseFormBody adds the fields of body to form, except the first
// "params", which it returns decoded into a new byte slice. It refuses what
// url.ParseQuery refuses (bad escapes, ';' separators).
func parseFormBody(body []byte, form url.Values) (params []byte, err error) {
	for len(body) > 0 {
		var pair []byte
		pair, body, _ = bytes.Cut(body, []byte("&"))
		if bytes.IndexByte(pair, ';') >= 0 {
			return nil, errors.New("form not readable: ';' separator")
		}
		if len(pair) == 0 {
			continue
		}
		rawKey, rawValue, _ := bytes.Cut(pair, []byte("="))
		key, err := url.QueryUnescape(string(rawKey))
		if err != nil {
			return nil, errors.New("form not readable: bad escape in a name")
		}
		if key == "params" && params == nil {
			if params, err = unescapeForm(rawValue); err != nil {
				return nil, err
			}
			continue
		}
		value, err := url.QueryUnescape(string(rawValue))
		if err != nil {
			return nil, errors.New("form not readable: bad escape in a value")
		}
		if key == "params" {
			continue // a later params: ParseForm's Get would not see it either
		}
		form[key] = append(form[key], value)
	}
	return params, nil
}

// unescapeForm decodes one form-urlencoded value ('+' is a space, %XX a
// byte) into a new slice of exactly the decoded size.
func unescapeForm(s []byte) ([]byte, error) {
	n := len(s) - 2*bytes.Count(s, []byte("%"))
	if n < 0 {
		return nil, errors.New("form not readable: bad escape in params")
	}
	out := make([]byte, 0, n)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '+':
			out = append(out, ' ')
		case '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return nil, errors.New("form not readable: bad escape in params")
			}
			out = append(out, unhex(s[i+1])<<4|unhex(s[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	if out == nil {
		out = []byte{} // present but empty, unlike absent
	}
	return out, nil
}

func isHex(c byte) bool {
	return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
