package hubapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// tokenFor returns a real token of a ServiceAccount of the fixture,
// issued for audiences (none: the API server's own).
func (f *fixture) tokenFor(name string, audiences ...string) string {
	f.t.Helper()
	tr, err := clientset.CoreV1().ServiceAccounts(f.ns).CreateToken(context.Background(), name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600), Audiences: audiences},
	}, metav1.CreateOptions{})
	must(f.t, err)
	return tr.Status.Token
}

// TestTokensMustCarryTheHubAudience: with the operator's audience set, a
// token for the API server itself, or for another audience, gets 401 from
// the real API server's TokenReview, and a token issued for the hub works
// (issue 9 §5).
func TestTokensMustCarryTheHubAudience(t *testing.T) {
	f := newFixture(t, fixtureOpts{audiences: []string{DefaultAudience}})
	const sa = "online-shop-reader" // bound to the viewer role by newFixture
	for name, tok := range map[string]string{
		"API server audience": f.tokenFor(sa),
		"another audience":    f.tokenFor(sa, "vault"),
	} {
		if r := f.do("GET", f.path("/stock"), tok, nil); r.code != http.StatusUnauthorized {
			t.Errorf("%s: got %d %s, want 401", name, r.code, r.body)
		}
	}
	if r := f.do("GET", f.path("/stock"), f.tokenFor(sa, DefaultAudience), nil); r.code != http.StatusOK {
		t.Fatalf("token for %s: got %d %s, want 200", DefaultAudience, r.code, r.body)
	}
	if r := f.do("GET", f.path("/stock"), f.tokenFor(sa, "vault", DefaultAudience), nil); r.code != http.StatusOK {
		t.Fatalf("token for vault and %s: got %d %s, want 200", DefaultAudience, r.code, r.body)
	}
}

// writeCert writes a fresh self-signed certificate for 127.0.0.1 with the
// given serial to certFile and keyFile, and returns it.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "hub-api-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	// The key first, then the certificate: the watcher must never pair a
	// new certificate with the old key for long.
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return cert
}

// TestServesTLSAndReloadsTheCertificate: with a certificate and key the
// hub API answers only over TLS, and serves a renewed certificate once the
// files change, without a restart (issue 9 §5).
func TestServesTLSAndReloadsTheCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	first := writeCert(t, certFile, keyFile, 1)
	f := newFixture(t, fixtureOpts{tlsCert: certFile, tlsKey: keyFile})

	trusting := func(c *x509.Certificate) *http.Client {
		pool := x509.NewCertPool()
		pool.AddCert(c)
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true,
		}}
	}
	httpsURL := "https" + f.path("/stock")[len("http"):]
	get := func(c *http.Client) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodGet, httpsURL, nil)
		must(t, err)
		req.Header.Set("Authorization", "Bearer "+f.viewer)
		return c.Do(req)
	}
	resp, err := get(trusting(first))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("over TLS: status %d, TLS %v; want 200 over TLS", resp.StatusCode, resp.TLS != nil)
	}
	// Plain HTTP must not be answered: the token would cross in clear.
	if r, err := f.client.Get(f.path("/stock")); err == nil {
		if r.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP got 200 from a TLS-only API")
		}
		r.Body.Close()
	}

	second := writeCert(t, certFile, keyFile, 2)
	// The watcher notices through fsnotify (or its 10 s poll); this waits
	// for that, it does not time it.
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := get(trusting(second))
		if err == nil {
			resp.Body.Close()
			if resp.TLS.PeerCertificates[0].SerialNumber.Int64() != 2 {
				t.Fatal("connected with the old certificate through a pool that trusts only the new one")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the renewed certificate was not served within a minute: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
