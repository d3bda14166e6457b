package webhookserver

import (
	"bytes"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// decodeForm decodes a send's form as http.Request.ParseForm would (body
// fields of an application/x-www-form-urlencoded POST first, then the query
// string; the first value of a name wins), but with a fraction of the
// memory: the body is the buffer formBody read (never copied into a
// string), and params is decoded once, straight into the bytes the JSON
// parser reads. params is the first "params" value, nil if none; it is not
// in form. More than maxFields fields (body and query together; 0: no
// limit) are errTooManyFields, counted before anything is decoded. It runs
// only after the key matched (see keyScan). Errors say nothing of the body
// or query: either may hold the key.
func decodeForm(body []byte, rawQuery string, maxFields int) (form url.Values, params []byte, err error) {
	if maxFields > 0 && countFields(body)+countFields([]byte(rawQuery)) > maxFields {
		return nil, nil, errTooManyFields
	}
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, nil, errors.New("query string not readable")
	}
	form = url.Values{}
	if params, err = parseFormBody(body, form); err != nil {
		return nil, nil, err
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

// countFields counts the non-empty '&'-separated fields of a form, as
// url.ParseQuery would make them.
func countFields(b []byte) int {
	n := 0
	for len(b) > 0 {
		var field []byte
		field, b, _ = bytes.Cut(b, []byte("&"))
		if len(field) > 0 {
			n++
		}
	}
	return n
}

// isFormBody reports whether the request's body is a form, the only body
// the receiver reads (others are ignored, as ParseForm ignores them).
func isFormBody(r *http.Request) (bool, error) {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false, errors.New("content type not readable")
	}
	return mt == "application/x-www-form-urlencoded", nil
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
