package storeaccess

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
)

func TestEndpointAllowlist(t *testing.T) {
	allowed, err := ParseEndpoints([]string{"https://webapi.smaregi.jp/", "http://127.0.0.1", " "})
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"https://webapi.smaregi.jp/access/", "https://WEBAPI.smaregi.jp/access/", "http://127.0.0.1:9080/access/"} {
		if err := allowed.Check(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"https://webapi.smaregi.jp.evil.test/access/", // a prefix of the host is not the host
		"http://webapi.smaregi.jp/access/",            // https only, as listed
		"https://evil.test/access/",
		"https://user:pw@webapi.smaregi.jp/access/",
		"http://127.0.0.2:9080/access/",
		"::not a url",
	} {
		var ce *ConfigError
		if err := allowed.Check(bad); !errors.As(err, &ce) || ce.Reason != v1alpha1.ReasonEndpointNotAllowed {
			t.Errorf("%s: err = %v, want EndpointNotAllowed", bad, err)
		}
	}
	if err := (Endpoints{}).Check("https://anything.test/"); err != nil {
		t.Errorf("the zero allowlist refused: %v", err)
	}
	for _, bad := range []string{"webapi.smaregi.jp", "ftp://x/", "https://x/?a=1"} {
		if _, err := ParseEndpoints([]string{bad}); err == nil {
			t.Errorf("ParseEndpoints(%q) accepted it", bad)
		}
	}
}

// TestClientsSendNothingOutsideTheAllowlist: the token never leaves for an
// endpoint outside the list, since no client is built for it.
func TestClientsSendNothingOutsideTheAllowlist(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) }))
	defer srv.Close()
	allowed, err := ParseEndpoints([]string{"https://webapi.smaregi.jp/"})
	if err != nil {
		t.Fatal(err)
	}
	clients := &Clients{Allowed: allowed}
	_, err = clients.Backend(Target{Endpoint: srv.URL + "/access/", ContractID: "sk1", Credentials: Credentials{AccessToken: "tok"}}, Tune{})
	if d := Explain(err, Subject{}); d.Reason != v1alpha1.ReasonEndpointNotAllowed || !d.Config {
		t.Fatalf("Client outside the allowlist: %v (%+v)", err, d)
	}
	if hits.Load() != 0 {
		t.Errorf("%d requests reached the endpoint", hits.Load())
	}
}

// TestDefaultsAreAllowed: a legacy and a Platform shop declared with no
// endpoint (as the README shows) are not refused by the default allowlist,
// so every default works against Smaregi's production. Building a backend
// sends nothing, so no request leaves this machine.
func TestDefaultsAreAllowed(t *testing.T) {
	allowed, err := ParseEndpoints(DefaultAllowedEndpoints)
	if err != nil {
		t.Fatal(err)
	}
	clients := &Clients{Allowed: allowed}
	for _, api := range []v1alpha1.StoreAPI{"", v1alpha1.APILegacy, v1alpha1.APIPlatform} {
		store := &v1alpha1.SmaregiStore{Spec: v1alpha1.SmaregiStoreSpec{API: api, ContractID: "sk1", StoreID: "1"}}
		target := Target{API: store.APIName(), Endpoint: store.EndpointURL(), TokenEndpoint: store.TokenEndpointURL(),
			ContractID: "sk1", StoreID: "1", Credentials: Credentials{AccessToken: "tok", ClientID: "id", ClientSecret: "secret"}}
		if _, err := clients.Backend(target, Tune{}); err != nil {
			t.Errorf("api %q with default endpoints %q and %q: %v", api, target.Endpoint, target.TokenEndpoint, err)
		}
	}
	// The allowlist still refuses what is not Smaregi's.
	if err := allowed.Check("https://api.smaregi.jp.attacker.test/"); err == nil {
		t.Error("a look-alike host was allowed")
	}
}
