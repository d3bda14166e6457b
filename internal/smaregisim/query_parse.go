package smaregisim

import (
	"bytes"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
)

// parseQuery reads the params of a ref function.
func parseQuery(raw map[string]json.RawMessage, tables map[string]*tableDef, b Behaviour) (*query, *apiError) {
	var name string
	if err := json.Unmarshal(raw["table_name"], &name); err != nil || name == "" {
		return nil, errf(31, "table_name is missing or not a string")
	}
	t := tables[name]
	if t == nil {
		return nil, errf(31, "table_name %q is not readable by this function", name)
	}
	q := &query{table: t, limit: DefaultLimit, page: 1, and: b.ConditionObjects == ConditionsAnd}

	if f, ok := raw["fields"]; ok && !isNull(f) {
		if err := json.Unmarshal(f, &q.fields); err != nil {
			return nil, errf(41, "fields must be an array of strings")
		}
		for _, c := range q.fields {
			if !t.has(c) {
				return nil, errf(41, "fields: unknown column %q", c)
			}
		}
	}
	if len(q.fields) == 0 {
		q.fields = t.cols
	}

	if c, ok := raw["conditions"]; ok && !isNull(c) {
		var objs []map[string]json.RawMessage
		if err := json.Unmarshal(c, &objs); err != nil {
			// A single object instead of an array is accepted as one group.
			var one map[string]json.RawMessage
			if err2 := json.Unmarshal(c, &one); err2 != nil {
				return nil, errf(41, "conditions must be an array of objects")
			}
			objs = append(objs, one)
		}
		for _, o := range objs {
			g, e := parseGroup(o, t)
			if e != nil {
				return nil, e
			}
			if len(g) > 0 {
				q.groups = append(q.groups, g)
			}
		}
	}

	if o, ok := raw["order"]; ok && !isNull(o) {
		var keys []string
		if err := json.Unmarshal(o, &keys); err != nil {
			var one string
			if err2 := json.Unmarshal(o, &one); err2 != nil {
				return nil, errf(41, "order must be an array of strings")
			}
			keys = []string{one}
		}
		for _, k := range keys {
			parts := strings.Fields(k)
			if len(parts) == 0 || len(parts) > 2 || !t.has(parts[0]) {
				return nil, errf(41, "order: cannot sort by %q", k)
			}
			ok := orderKey{col: parts[0]}
			if len(parts) == 2 {
				switch strings.ToLower(parts[1]) {
				case "asc":
				case "desc":
					ok.desc = true
				default:
					return nil, errf(41, "order: direction of %q must be asc or desc", k)
				}
			}
			q.order = append(q.order, ok)
		}
	}

	var e *apiError
	if q.limit, e = intParam(raw, "limit", DefaultLimit); e != nil {
		return nil, e
	}
	if q.limit < 1 {
		return nil, errf(41, "limit must be at least 1")
	}
	if q.limit > MaxLimit {
		if b.LimitOverMax == LimitOverMaxClamp {
			q.limit = MaxLimit
		} else {
			return nil, errf(41, "limit must be at most %d", MaxLimit)
		}
	}
	if q.page, e = intParam(raw, "page", 1); e != nil {
		return nil, e
	}
	if q.page < 1 {
		return nil, errf(41, "page must be at least 1")
	}
	if q.page > 1<<30/q.limit {
		return nil, errf(41, "page is too large")
	}
	return q, nil
}

func isNull(m json.RawMessage) bool { return string(bytes.TrimSpace(m)) == "null" }

// intParam reads an integer sent as a JSON number or a string of digits.
func intParam(raw map[string]json.RawMessage, key string, def int) (int, *apiError) {
	m, ok := raw[key]
	if !ok || isNull(m) {
		return def, nil
	}
	s, ok := scalarString(m)
	if !ok {
		return 0, errf(41, "%s must be an integer", key)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errf(41, "%s must be an integer", key)
	}
	return n, nil
}

// scalarString returns a JSON string's value or a JSON number's text.
func scalarString(m json.RawMessage) (string, bool) {
	m = bytes.TrimSpace(m)
	if len(m) == 0 {
		return "", false
	}
	if m[0] == '"' {
		var s string
		if err := json.Unmarshal(m, &s); err != nil {
			return "", false
		}
		return s, true
	}
	var n json.Number
	if err := json.Unmarshal(m, &n); err != nil {
		return "", false
	}
	return n.String(), true
}

var condOps = map[string]bool{"like": true, "<": true, "<=": true, ">": true, ">=": true}

func parseGroup(o map[string]json.RawMessage, t *tableDef) ([]cond, *apiError) {
	keys := make([]string, 0, len(o))
	for k := range o {
		keys = append(keys, k)
	}
	sort.Strings(keys) // deterministic evaluation and error messages
	var g []cond
	for _, k := range keys {
		parts := strings.Fields(k)
		if len(parts) == 0 || len(parts) > 2 || !t.has(parts[0]) {
			return nil, errf(41, "conditions: unknown column in %q", k)
		}
		c := cond{col: parts[0]}
		if len(parts) == 2 {
			c.op = strings.ToLower(parts[1])
			if !condOps[c.op] {
				return nil, errf(41, "conditions: unknown operator in %q", k)
			}
		}
		v, ok := scalarString(o[k])
		if !ok {
			return nil, errf(41, "conditions: value of %q must be a string", k)
		}
		c.val = v
		if t.numeric[c.col] && c.op != "like" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, errf(41, "conditions: value of %q must be an integer", k)
			}
			c.n, c.numeric = n, true
		}
		g = append(g, c)
	}
	return g, nil
}
