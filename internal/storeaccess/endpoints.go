package storeaccess

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// DefaultAllowedEndpoints are Smaregi's production endpoints, the legacy
// API's and the Platform API's (its API base and its identity base, where
// tokens are fetched): the operator's --allowed-endpoints default. Every
// default of spec.endpoint and spec.tokenEndpoint must be in it
// (TestDefaultsAreAllowed), so a shop declared with no endpoint works.
var DefaultAllowedEndpoints = []string{
	"https://webapi.smaregi.jp/",
	"https://api.smaregi.jp/",
	"https://id.smaregi.jp/",
}

// Endpoints is an allowlist of API endpoints: a store whose spec.endpoint
// matches none of them gets no request at all, so that whoever may edit a
// SmaregiStore cannot make the operator send its credentials to a server of
// their choosing. An entry matches an endpoint with the same scheme and host
// (and port, when the entry names one) whose path starts with the entry's
// path. The zero value allows every endpoint (tests, libraries).
type Endpoints struct {
	entries []endpointEntry
}

type endpointEntry struct {
	scheme, host, port, path string
}

// ParseEndpoints parses allowlist entries such as "https://webapi.smaregi.jp/"
// or "http://127.0.0.1" (any port of 127.0.0.1).
func ParseEndpoints(list []string) (Endpoints, error) {
	var e Endpoints
	for _, raw := range list {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" || u.User != nil ||
			u.RawQuery != "" || u.Fragment != "" {
			return Endpoints{}, fmt.Errorf("allowed endpoint %q: want an absolute http(s) URL prefix such as %s", raw, DefaultAllowedEndpoints[0])
		}
		p := u.Path
		if p == "" {
			p = "/"
		}
		e.entries = append(e.entries, endpointEntry{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: u.Port(), path: p})
	}
	return e, nil
}

// Check returns a *ConfigError when endpoint is outside the allowlist.
func (e Endpoints) Check(endpoint string) error {
	if len(e.entries) == 0 {
		return nil
	}
	u, err := url.Parse(endpoint)
	if err == nil {
		host, port, path := strings.ToLower(u.Hostname()), u.Port(), u.EscapedPath()
		for _, a := range e.entries {
			if u.Scheme == a.scheme && host == a.host && (a.port == "" || port == a.port) && strings.HasPrefix(path, a.path) &&
				u.User == nil {
				return nil
			}
		}
	}
	return &ConfigError{Reason: v1alpha1.ReasonEndpointNotAllowed, Message: fmt.Sprintf(
		"spec.endpoint %q is not among the operator's allowed endpoints (--allowed-endpoints): no request was sent. "+
			"Use Smaregi's endpoint, or ask the platform team to allow this one", endpoint)}
}
