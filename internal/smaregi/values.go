package smaregi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Flex holds one JSON value that Smaregi may send as a string ("2") or as a
// bare number (2): the protocol sends almost every value as a string, but
// update counters and sometimes error_code come as numbers. It keeps the
// text; null and absent decode to "".
type Flex string

// UnmarshalJSON accepts a string, a number, a boolean or null.
func (f *Flex) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		*f = ""
	case b[0] == '"':
		// Fast path: no escapes, so the bytes between the quotes are the value.
		if len(b) >= 2 && bytes.IndexByte(b[1:len(b)-1], '\\') < 0 {
			*f = Flex(b[1 : len(b)-1])
			return nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("decode string value: %w", err)
		}
		*f = Flex(s)
	case bytes.Equal(b, []byte("null")):
		*f = ""
	case b[0] == '{' || b[0] == '[':
		return fmt.Errorf("expected a string or number, got %.20s", b)
	default:
		*f = Flex(b)
	}
	return nil
}

// String returns the text of the value.
func (f Flex) String() string { return string(f) }

// Int64 parses the value as a base-10 integer; "" is 0. Smaregi sends
// quantities as integers, but a decimal such as "3.0" is accepted when it has
// no fractional part, because some columns are stored as decimals.
func (f Flex) Int64() (int64, error) {
	if f == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(string(f), 10, 64)
	if err == nil {
		return n, nil
	}
	x, ferr := strconv.ParseFloat(string(f), 64)
	if ferr != nil || x != float64(int64(x)) {
		return 0, fmt.Errorf("not an integer: %q", string(f))
	}
	return int64(x), nil
}

// Time parses the value as a Smaregi time; "" is the zero time.
func (f Flex) Time() (time.Time, error) {
	if f == "" {
		return time.Time{}, nil
	}
	return ParseTime(string(f))
}
