/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package node

// What the tests drive: the operator image in containerd, helm, kubectl
// (port-forwards), the simulators behind a TLS front on the bridge, and a
// certificate authority of the test's own.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

// bridgeIP is the node's CNI bridge address (hack/node.sh): what Pods reach
// the host at, so the simulators and PostgreSQL listen there.
const bridgeIP = "10.88.0.1"

// imageRepo is the chart's default image repository: the image is tagged
// with it so that the chart's defaults find it.
const imageRepo = "ghcr.io/stocksync/smaregi-operator"

// upgradeTag is a second tag of the same image, for `helm upgrade`.
const upgradeTag = "node-test-upgrade"

var art struct {
	appVersion string // the chart's appVersion: the image tag the defaults use
	simBin     string
}

// prepareArtefacts builds the simulator and the operator image and loads
// the image into the node's containerd under the chart's default name.
func prepareArtefacts() error {
	chart, err := os.ReadFile(filepath.Join(env.repo, "charts", "smaregi-operator", "Chart.yaml"))
	if err != nil {
		return err
	}
	m := regexp.MustCompile(`(?m)^appVersion:\s*"?([^"\s]+)"?`).FindSubmatch(chart)
	if m == nil {
		return errors.New("Chart.yaml has no appVersion")
	}
	art.appVersion = string(m[1])

	art.simBin = filepath.Join(env.work, "smaregi-sim")
	build := exec.Command("go", "build", "-o", art.simBin, "./cmd/smaregi-sim")
	build.Dir = env.repo
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/smaregi-sim: %w\n%s", err, out)
	}

	archive, err := operatorImage()
	if err != nil {
		return err
	}
	start := time.Now()
	out, err := exec.Command("ctr", "-a", env.ctrdSock, "-n", "k8s.io", "images", "import", archive).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s: %w\n%s", archive, err, out)
	}
	// "unpacking <ref> (sha256:…)...done": the reference the archive carries.
	um := regexp.MustCompile(`unpacking (\S+) \(`).FindSubmatch(out)
	if um == nil {
		return fmt.Errorf("ctr images import %s named no image:\n%s", archive, out)
	}
	for _, tag := range []string{art.appVersion, upgradeTag} {
		if out, err := exec.Command("ctr", "-a", env.ctrdSock, "-n", "k8s.io", "images", "tag", "--force",
			string(um[1]), imageRepo+":"+tag).CombinedOutput(); err != nil {
			return fmt.Errorf("ctr images tag %s: %w\n%s", tag, err, out)
		}
	}
	fmt.Fprintf(os.Stderr, "test/node: image %s loaded as %s:%s and :%s in %s\n", um[1], imageRepo, art.appVersion,
		upgradeTag, time.Since(start).Round(time.Millisecond))
	return nil
}

// operatorImage returns the path of the operator's image archive: the one
// `make image` wrote (SMAREGI_OPERATOR_IMAGE_ARCHIVE, set by `make test`),
// or, for `go test ./test/node` alone, the one `make image` writes when run
// here (one recipe for the image, the Makefile's).
func operatorImage() (string, error) {
	if a := os.Getenv("SMAREGI_OPERATOR_IMAGE_ARCHIVE"); a != "" {
		if _, err := os.Stat(a); err != nil {
			return "", fmt.Errorf("SMAREGI_OPERATOR_IMAGE_ARCHIVE: %w", err)
		}
		return a, nil
	}
	start := time.Now()
	archive := filepath.Join(env.work, "operator-image.tar")
	build := exec.Command("make", "-C", env.repo, "image", "IMAGE_ARCHIVE="+archive, "IMG="+imageRepo+":"+art.appVersion)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("make image: %w\n%s", err, out)
	}
	fmt.Fprintf(os.Stderr, "test/node: operator image built in %s\n", time.Since(start).Round(time.Second))
	return archive, nil
}

// --- Kubernetes ----------------------------------------------------------------

func restConfig(t *testing.T) *rest.Config {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", env.kubeconfig)
	if err != nil {
		t.Fatalf("kubeconfig %s: %v", env.kubeconfig, err)
	}
	return cfg
}

func kubeClients(t *testing.T) (client.Client, kubernetes.Interface) {
	t.Helper()
	cfg := restConfig(t)
	c, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	return c, cs
}

// kubectl runs kubectl against the node and returns its combined output.
func kubectl(args ...string) (string, error) {
	cmd := dieWithUs(exec.Command(filepath.Join(env.binDir, "kubectl"), append([]string{"--kubeconfig", env.kubeconfig}, args...)...))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// helm runs the helm CLI against the node.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	start := time.Now()
	cmd := dieWithUs(exec.Command(env.helm, append([]string{"--kubeconfig", env.kubeconfig}, args...)...))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("helm %s: %s", args[0], time.Since(start).Round(100*time.Millisecond))
	return string(out)
}

// writeValues writes a values file for helm -f.
func writeValues(t *testing.T, name string, values map[string]any) string {
	t.Helper()
	data, err := json.Marshal(values) // JSON is YAML
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(env.work, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// eventually polls cond every half second until it returns nil or timeout
// passes; then the test fails with cond's last error.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// --- port-forwards ----------------------------------------------------------------

// portForward keeps `kubectl port-forward` to a Service running on a fixed
// local port: kubectl picks one Pod behind the Service and exits when that
// Pod goes, so it is started again (as a user would) until stopped.
type portForward struct {
	local int
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	cmd   *exec.Cmd
	log   bytes.Buffer
}

// startPortForward forwards 127.0.0.1:local (0: any free port) to the
// Service's port remote, until owner (t or a parent of it) ends.
func startPortForward(t, owner *testing.T, namespace, service string, local, remote int) *portForward {
	t.Helper()
	if local == 0 {
		local = freePort(t, "127.0.0.1")
	}
	pf := &portForward{local: local, stop: make(chan struct{}), done: make(chan struct{})}
	go pf.loop(namespace, service, remote)
	owner.Cleanup(pf.close)
	eventually(t, time.Minute, "port-forward to svc/"+service, func() error {
		c, err := net.DialTimeout("tcp", pf.addr(), time.Second)
		if err != nil {
			return fmt.Errorf("%w (kubectl: %s)", err, pf.output())
		}
		return c.Close()
	})
	return pf
}

func (pf *portForward) addr() string { return fmt.Sprintf("127.0.0.1:%d", pf.local) }

func (pf *portForward) output() string {
	pf.mu.Lock()
	defer pf.mu.Unlock()
	s := pf.log.String()
	if len(s) > 600 {
		s = "…" + s[len(s)-600:]
	}
	return strings.TrimSpace(s)
}

func (pf *portForward) loop(namespace, service string, remote int) {
	defer close(pf.done)
	for {
		cmd := dieWithUs(exec.Command(filepath.Join(env.binDir, "kubectl"), "--kubeconfig", env.kubeconfig, "-n", namespace,
			"port-forward", "--address", "127.0.0.1", "svc/"+service, fmt.Sprintf("%d:%d", pf.local, remote)))
		w := &lockedWriter{mu: &pf.mu, w: &pf.log}
		cmd.Stdout, cmd.Stderr = w, w
		pf.mu.Lock()
		err := cmd.Start()
		pf.cmd = cmd
		pf.mu.Unlock()
		if err == nil {
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			select {
			case <-pf.stop:
				_ = cmd.Process.Kill()
				<-exited
				return
			case <-exited:
			}
		}
		select {
		case <-pf.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (pf *portForward) close() {
	select {
	case <-pf.stop:
	default:
		close(pf.stop)
	}
	<-pf.done
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// freePort returns a port nothing listens on at host now.
func freePort(t *testing.T, host string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("free port on %s: %v", host, err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// --- a certificate authority of the test -----------------------------------------

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	pool *x509.CertPool
}

func newCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smaregi-node-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns a serving certificate and key (PEM) for the names, which
// are IP addresses or DNS names.
func (ca *testCA) issue(t *testing.T, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// --- the simulators ------------------------------------------------------------------

// simulator is one smaregi-sim process on loopback, with an HTTPS front on
// the bridge address: Pods reach it there, and the CRD accepts plain http
// only for loopback hosts (a Pod's loopback is not the host's), so the
// operator talks to it over TLS, trusting the test's CA as it would a
// private CA.
type simulator struct {
	control string // http://127.0.0.1:port, the control API (/_sim/)
	public  string // https://10.88.0.1:port/, what SmaregiStores name
}

func startSimulator(t *testing.T, ca *testCA, extraEnv []string, args ...string) *simulator {
	t.Helper()
	port := freePort(t, "127.0.0.1")
	logf, err := os.Create(filepath.Join(env.work, fmt.Sprintf("smaregi-sim-%d.log", port)))
	if err != nil {
		t.Fatal(err)
	}
	cmd := dieWithUs(exec.Command(art.simBin, append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--quiet"}, args...)...))
	cmd.Env = append(os.Environ(), extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start smaregi-sim: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logf.Close()
	})
	s := &simulator{control: fmt.Sprintf("http://127.0.0.1:%d", port)}
	eventually(t, 30*time.Second, "smaregi-sim listening", func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})

	target, _ := url.Parse(s.control)
	certPEM, keyPEM := ca.issue(t, bridgeIP)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(bridgeIP, "0"))
	if err != nil {
		t.Fatalf("listen on the bridge %s: %v", bridgeIP, err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	// A request the operator abandons (a killed Pod) is logged by the
	// proxy; into the simulator's log, not the test's output.
	proxy.ErrorLog = log.New(logf, "tls-front: ", log.LstdFlags)
	srv := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second, ErrorLog: proxy.ErrorLog,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	go func() { _ = srv.ServeTLS(l, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	s.public = fmt.Sprintf("https://%s/", l.Addr().String())
	return s
}

// call sends a control API request and decodes the answer into out.
func (s *simulator) call(t *testing.T, method, path string, in, out any) {
	t.Helper()
	if err := s.try(method, path, in, out); err != nil {
		t.Fatal(err)
	}
}

func (s *simulator) try(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, s.control+path, body)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("simulator %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("simulator %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// pushedRows returns the stock history rows of a product that the operator
// wrote (its memo marks every push).
func (s *simulator) pushedRows(t *testing.T, storeID, productID string) []smaregisim.HistoryRow {
	t.Helper()
	var rows []smaregisim.HistoryRow
	s.call(t, http.MethodGet, "/_sim/history?storeId="+storeID, nil, &rows)
	var mine []smaregisim.HistoryRow
	for _, r := range rows {
		if r.ProductID == productID && strings.HasPrefix(r.Memo, "smaregi-operator") {
			mine = append(mine, r)
		}
	}
	return mine
}

// stockOf returns the simulator's stock of one product.
func (s *simulator) stockOf(t *testing.T, storeID, productID string) int64 {
	t.Helper()
	var rows []map[string]any
	s.call(t, http.MethodGet, "/_sim/stock?storeId="+storeID, nil, &rows)
	for _, r := range rows {
		if fmt.Sprint(r["productId"]) == productID {
			var n int64
			if _, err := fmt.Sscan(fmt.Sprint(r["stockAmount"]), &n); err != nil {
				t.Fatalf("stockAmount %v: %v", r["stockAmount"], err)
			}
			return n
		}
	}
	t.Fatalf("simulator store %s has no stock row for %s", storeID, productID)
	return 0
}

// --- the hub API -----------------------------------------------------------------------

// hubClient calls the hub API through a port-forward to its Service, over
// TLS verified against the test's CA for the Service's DNS name.
type hubClient struct {
	base  string
	token string
	http  *http.Client
}

func newHubClient(pf *portForward, ca *testCA, serverName, token string) *hubClient {
	return &hubClient{
		base:  "https://" + pf.addr(),
		token: token,
		http: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.pool, ServerName: serverName, MinVersion: tls.VersionTLS12}}},
	}
}

// do sends a request and returns the status and body; the token never
// appears in an error.
func (h *hubClient) do(ctx context.Context, method, path string, in any) (int, []byte, error) {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return 0, nil, err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, body)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.http.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("hub API %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

type hubItem struct {
	ProductID         string `json:"productId"`
	StockAmount       int64  `json:"stockAmount"`
	PendingAdjustment int64  `json:"pendingAdjustment"`
}

type hubStock struct {
	SKUs  int       `json:"skus"`
	Items []hubItem `json:"items"`
}

type hubAdjustment struct {
	ID                   string `json:"id"`
	State                string `json:"state"`
	AwaitingConfirmation bool   `json:"awaitingConfirmation"`
}

func (h *hubClient) stock(ctx context.Context, ns, store string) (hubStock, error) {
	var s hubStock
	code, body, err := h.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/namespaces/%s/smaregistores/%s/stock", ns, store), nil)
	if err != nil {
		return s, err
	}
	if code != http.StatusOK {
		return s, fmt.Errorf("GET stock: %d: %s", code, bytes.TrimSpace(body))
	}
	return s, json.Unmarshal(body, &s)
}

func (h *hubClient) adjust(ctx context.Context, ns, store, id, product string, qty int) (hubAdjustment, error) {
	var a hubAdjustment
	code, body, err := h.do(ctx, http.MethodPost, fmt.Sprintf("/api/v1/namespaces/%s/smaregistores/%s/adjustments", ns, store),
		map[string]any{"id": id, "reason": "node test", "lines": []map[string]any{{"productId": product, "quantity": qty}}})
	if err != nil {
		return a, err
	}
	if code != http.StatusAccepted && code != http.StatusOK {
		return a, fmt.Errorf("POST adjustment %s: %d: %s", id, code, bytes.TrimSpace(body))
	}
	return a, json.Unmarshal(body, &a)
}

func (h *hubClient) adjustment(ctx context.Context, ns, store, id string) (hubAdjustment, error) {
	var a hubAdjustment
	code, body, err := h.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/namespaces/%s/smaregistores/%s/adjustments/%s", ns, store, id), nil)
	if err != nil {
		return a, err
	}
	if code != http.StatusOK {
		return a, fmt.Errorf("GET adjustment %s: %d: %s", id, code, bytes.TrimSpace(body))
	}
	return a, json.Unmarshal(body, &a)
}

// scanLines returns the lines of s.
func scanLines(s string) []string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}
