package smaregiplatform

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// listPages reads a list call page by page and hands each decoded page of
// wire rows to fn (fn must not keep the slice). It pages either way Smaregi
// does:
//   - by `page`, while a page is full;
//   - by `Link: <…>; rel="next"`, as soon as an answer carries one; from
//     then on the absence of the header is the end of the list.
//
// A server paging by Link ignores `page`: if its first page happened to be
// exactly full, page 2 repeats page 1 (same first key); that repeat is the
// end of the list and is not delivered.
//
// Lists are in key order (store, product; or ID), which rows changing during
// the walk do not disturb: a row created meanwhile can at most make the row
// before a page boundary appear twice, never make one vanish.
func listPages[W any](ctx context.Context, c *Client, call string, q url.Values, key func(*W) string, fn func([]W) error) error {
	limit := c.pageSize
	q.Set("limit", strconv.Itoa(limit))
	u := *c.apiBase
	u.Path += pathOf(call)
	page := 1
	q.Set("page", "1")
	u.RawQuery = q.Encode()
	next := u.String()
	var (
		buf       bytes.Buffer
		wire      []W
		linkSeen  bool
		prevFirst string
	)
	for {
		clear(wire[:cap(wire)]) // encoding/json reuses elements without zeroing absent fields
		wire = wire[:0]
		h, err := c.do(ctx, request{call: call, method: http.MethodGet, url: next}, &buf,
			func(b []byte) error { return json.Unmarshal(b, &wire) })
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		n := len(wire)
		if n > 0 {
			first := key(&wire[0])
			if page > 1 && !linkSeen && first == prevFirst {
				return nil
			}
			prevFirst = first
			if err := fn(wire); err != nil {
				return err
			}
		}
		link, ok, err := c.nextLink(h, next)
		if err != nil {
			return fmt.Errorf("page %d: %w", page, err)
		}
		page++
		switch {
		case ok:
			linkSeen = true
			next = link
		case linkSeen || n < limit:
			return nil
		default:
			q.Set("page", strconv.Itoa(page))
			u.RawQuery = q.Encode()
			next = u.String()
		}
	}
}

// pathOf is the path of a list call under {contract}/pos/.
func pathOf(call string) string {
	switch call {
	case CallStockList:
		return "stock"
	case CallChangesList:
		return "stock/changes"
	case CallProductList:
		return "products"
	}
	panic("smaregiplatform: no list path for " + call)
}

// nextLink returns the rel="next" target of a Link header, resolved against
// the request URL. The target must stay under the contract's API base: the
// Bearer token goes wherever it points.
func (c *Client) nextLink(h http.Header, reqURL string) (string, bool, error) {
	for _, v := range h.Values("Link") {
		for _, part := range splitLinks(v) {
			target, params, ok := cutLink(part)
			if !ok || !hasRelNext(params) {
				continue
			}
			base, _ := url.Parse(reqURL)
			ref, err := url.Parse(target)
			if err != nil || base == nil {
				return "", false, errors.New("Link rel=\"next\" is not a valid URL")
			}
			abs := base.ResolveReference(ref)
			if abs.Scheme != c.apiBase.Scheme || abs.Host != c.apiBase.Host || !strings.HasPrefix(abs.Path, c.apiBase.Path) || abs.User != nil {
				return "", false, fmt.Errorf("Link rel=\"next\" points outside the API base (%s://%s): not followed", abs.Scheme, abs.Host)
			}
			return abs.String(), true, nil
		}
	}
	return "", false, nil
}

// splitLinks splits a Link header value at the commas between links (not
// those inside <…>).
func splitLinks(v string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(v); i++ {
		switch v[i] {
		case '<':
			depth++
		case '>':
			depth = max(0, depth-1)
		case ',':
			if depth == 0 {
				out = append(out, v[start:i])
				start = i + 1
			}
		}
	}
	return append(out, v[start:])
}

// cutLink splits one link "<target>; params" into its target and params.
func cutLink(link string) (target, params string, ok bool) {
	link = strings.TrimSpace(link)
	end := strings.IndexByte(link, '>')
	if !strings.HasPrefix(link, "<") || end < 0 {
		return "", "", false
	}
	return link[1:end], link[end+1:], true
}

func hasRelNext(params string) bool {
	for _, p := range strings.Split(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "rel") {
			continue
		}
		for _, rel := range strings.Fields(strings.Trim(strings.TrimSpace(v), `"`)) {
			if strings.EqualFold(rel, "next") {
				return true
			}
		}
	}
	return false
}

// isoTime formats t as the API wants it: ISO 8601 with the +09:00 offset,
// whole seconds (truncated, so a watermark never moves past a row).
func isoTime(t time.Time) string {
	return t.Truncate(time.Second).In(smaregi.Tokyo).Format(time.RFC3339)
}

// parseTime parses an ISO 8601 time with offset; "" is the zero time.
func parseTime(f smaregi.Flex) (time.Time, error) {
	if f == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, string(f))
	if err != nil {
		return time.Time{}, fmt.Errorf("parse time %q: %w", string(f), err)
	}
	return t.In(smaregi.Tokyo), nil
}
