package hubapi

import (
	"bytes"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
)

// TestLoggedRequestsCarryNoQuery: no log line carries a request's query
// string, nor a "?" smuggled into the path as %3F, where a receiver key or
// other secret could ride along (issue 9 §8).
func TestLoggedRequestsCarryNoQuery(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		logs.WriteString(prefix + " " + args + "\n")
	}, funcr.Options{Verbosity: 10})
	f := newFixture(t, fixtureOpts{log: log})
	const marker = "query-secret-4f9c"
	for _, target := range []string{
		f.path("/stock") + "?goqsystem_key=" + marker,
		f.base + "/api/v1/namespaces/" + f.ns + "%3Fgoqsystem_key=" + marker + "/smaregistores/" + f.store.Name + "/stock",
		f.base + "/api/v1/namespaces/" + f.ns + "/smaregistores/" + f.store.Name + "%3Fk=" + marker + "/adjustments",
	} {
		for _, tok := range []string{"not-a-token", f.nobody, f.viewer} {
			req, err := http.NewRequest(http.MethodGet, target, nil)
			must(t, err)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := f.client.Do(req)
			must(t, err)
			resp.Body.Close()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "refused") {
		t.Fatalf("expected refusals in the log; the check below would prove nothing:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), marker) || strings.Contains(logs.String(), "?") {
		t.Fatalf("a request's query reached the log:\n%s", logs.String())
	}
}
