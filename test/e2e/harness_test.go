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

// Package e2e runs the operator as users run it: the real binary built from
// ./cmd in its own process (so it can be killed mid-run), a real
// kube-apiserver and etcd, the Smaregi simulator over HTTP on 127.0.0.1, and
// the hub API called with real ServiceAccount tokens under real RBAC. The
// operator itself runs with a ServiceAccount token bound to exactly the
// roles the Helm chart gives it (chartrbac_test.go), never as admin.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

var (
	// restConfig, kube and clientset are the API server's admin: the
	// tests' own setup and checks (namespaces, stores, Secrets, RBAC).
	restConfig *rest.Config
	kube       client.Client
	clientset  *kubernetes.Clientset
	// adminKubeconfig is restConfig as a file, for the kubectl a test runs
	// as a user would; never the operator's (see chartInstall).
	adminKubeconfig string
	operatorBin     string
	repoRoot        string
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	var err error
	// Checked first: without helm no operator can be given the chart's
	// permissions, and starting the control plane would only delay that.
	if helmBin, err = findHelm(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	cfg, stop, err := testenv.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer stop()
	restConfig = cfg
	if kube, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if repoRoot, err = testenv.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	dir, err := os.MkdirTemp("", "smaregi-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if adminKubeconfig, err = writeKubeconfig(cfg, filepath.Join(dir, "kubeconfig")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	operatorBin = filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", operatorBin, "./cmd")
	build.Dir, build.Stdout, build.Stderr = repoRoot, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the operator:", err)
		return 1
	}
	if err := installHubRoles(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// writeKubeconfig turns envtest's admin rest.Config into a kubeconfig file,
// for the kubectl commands tests run as a user (cluster admin) would.
func writeKubeconfig(cfg *rest.Config, path string) (string, error) {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["e2e"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["e2e"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken}
	kc.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: "e2e"}
	kc.CurrentContext = "e2e"
	return path, clientcmd.WriteToFile(*kc, path)
}

// installHubRoles creates the hub ClusterRoles exactly as shipped in
// config/rbac, so the tests exercise the roles users install.
func installHubRoles() error {
	return testenv.InstallHubRoles(context.Background(), kube, repoRoot)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ln.Close() }()
	return ln.Addr().String()
}

// operator is one run of the operator binary.
type operator struct {
	t                                  testing.TB
	cmd                                *exec.Cmd
	exited                             chan struct{}
	receiverAddr, apiAddr, metricsAddr string
	inventory                          string
	logPath                            string
}

type operatorConfig struct {
	receiverAddr, apiAddr, metricsAddr string
	inventory                          string   // bolt:// or postgres:// URL; kept across restarts
	extraArgs                          []string // appended to the command line
	// install is the chart's RBAC the operator runs with: its kubeconfig
	// (a ServiceAccount token), namespace and the flags the Roles expect.
	install chartInstall
	env     []string // added to the operator's environment
	// cgroupProcs, if set, is a cgroup's cgroup.procs file the operator
	// runs in from its first instruction (a shell writes its own PID there,
	// copies the binary, then execs the copy, so that even the binary's
	// pages are charged to the cgroup, as in a container): the scale
	// benchmark's memory limit.
	cgroupProcs string
}

// newOperatorConfig is a configuration with the test's install of the
// chart (one per test: every replica of the test shares it).
func newOperatorConfig(t testing.TB) operatorConfig {
	t.Helper()
	return newOperatorConfigFor(t, testInstall(t))
}

// newOperatorConfigFor is a configuration that runs as the given install.
func newOperatorConfigFor(t testing.TB, in chartInstall) operatorConfig {
	return operatorConfig{
		receiverAddr: freeAddr(t), apiAddr: freeAddr(t), metricsAddr: freeAddr(t),
		inventory: "bolt://" + filepath.Join(t.TempDir(), "inventory.db"),
		install:   in,
	}
}

// rbacRefusal is how the API server's 403 begins in the operator's log
// (`… is forbidden: User "system:serviceaccount:…" cannot …`, the quotes
// escaped in the JSON log); the operator's own messages never say it.
const rbacRefusal = `is forbidden: User `

// startOperator runs the binary with the flags the issue names for other
// tools, plus the hub API and plain-HTTP metrics for the assertions.
func startOperator(t testing.TB, c operatorConfig) *operator {
	t.Helper()
	if c.install.kubeconfig == "" {
		t.Fatal("operatorConfig without a chart install: make it with newOperatorConfig, so that the operator runs with the chart's RBAC")
	}
	logPath := filepath.Join(t.TempDir(), "operator.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(operatorBin,
		"--receiver-bind-address", c.receiverAddr, "--receiver-base-url", "http://"+c.receiverAddr,
		"--api-bind-address", c.apiAddr,
		"--metrics-bind-address", c.metricsAddr, "--metrics-secure=false",
		"--health-probe-bind-address", "0",
		"--inventory", c.inventory,
		// The simulators listen on loopback ports.
		"--allowed-endpoints", "http://127.0.0.1",
		// In a Pod the operator's namespace is the Pod's; here it is the
		// release's, where the chart's leader-election Role is.
		"--leader-election-namespace", c.install.namespace)
	cmd.Args = append(append(cmd.Args, c.install.args...), c.extraArgs...)
	if c.cgroupProcs != "" {
		bin := filepath.Join(t.TempDir(), "manager")
		cmd = exec.Command("/bin/sh", append([]string{"-c", `echo $$ > "$0" && cp "$1" "$2" && shift && exec "$@"`,
			c.cgroupProcs, operatorBin, bin}, cmd.Args[1:]...)...)
	}
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+c.install.kubeconfig), c.env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the operator: %v", err)
	}
	op := &operator{t: t, cmd: cmd, exited: make(chan struct{}), receiverAddr: c.receiverAddr,
		apiAddr: c.apiAddr, metricsAddr: c.metricsAddr, inventory: c.inventory, logPath: logPath}
	go func() {
		_ = cmd.Wait()
		_ = logFile.Close()
		close(op.exited)
	}()
	t.Cleanup(func() {
		op.stop()
		// A permission the chart lacks may only show in the log (an event
		// not recorded, a retried call): it fails the test all the same.
		if refusals := grepLines(readFileAll(logPath), rbacRefusal, 5); len(refusals) > 0 {
			t.Errorf("the API server refused the operator (running with the chart's RBAC, ServiceAccount %s/%s):\n%s",
				c.install.namespace, c.install.serviceAccount, strings.Join(refusals, "\n"))
		}
		if t.Failed() {
			if data, err := os.ReadFile(logPath); err == nil {
				t.Logf("operator log (last 4 KiB):\n%s", tail(string(data), 4096))
			}
		}
	})
	waitFor(t, 60*time.Second, "the operator to listen", func() bool {
		conn, err := net.DialTimeout("tcp", c.receiverAddr, time.Second)
		if err == nil {
			_ = conn.Close()
			return true
		}
		select {
		case <-op.exited:
			t.Fatalf("the operator exited at start-up; log:\n%s", readFile(logPath))
		default:
		}
		return false
	})
	return op
}

// kill ends the process at once (SIGKILL), as a crash or an OOM kill would.
func (o *operator) kill() {
	_ = o.cmd.Process.Kill()
	<-o.exited
}

func (o *operator) stop() {
	select {
	case <-o.exited:
		return
	default:
	}
	_ = o.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-o.exited:
	case <-time.After(20 * time.Second):
		o.kill()
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func readFile(p string) string {
	return tail(readFileAll(p), 4096)
}

func readFileAll(p string) string {
	data, _ := os.ReadFile(p)
	return string(data)
}

// grepLines returns up to limit lines of s that contain sub, each cut to
// 500 bytes (a JSON log line may carry a stack trace).
func grepLines(s, sub string, limit int) []string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			if len(out) == limit {
				return append(out, "…")
			}
			line = strings.TrimRight(line, "\n")
			if len(line) > 500 {
				line = line[:500] + "…"
			}
			out = append(out, line)
		}
	}
	return out
}

// waitFor polls cond until it holds; the timeout only bounds a broken run.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// shop is a simulated Smaregi contract served over real HTTP.
type shop struct {
	sim      *smaregisim.Server
	url      string // the /access/ endpoint
	contract string
	token    string
	// base is the Platform API's (and identity) base on the same listener;
	// clientID and clientSecret the app's credentials there.
	base, clientID, clientSecret string
	// lag shifts the simulator's clock back (nanoseconds), to stamp changes
	// with old updDateTimes as a change committed late in Smaregi would be.
	lag atomic.Int64
}

func newShop(t testing.TB, contract string, stores []string, products int) *shop {
	return newShopAged(t, contract, stores, products, 0)
}

// newShopAged is newShop with the initial stock rows stamped age ago, as a
// real shop's rows are older than the operator that starts reading them.
func newShopAged(t testing.TB, contract string, stores []string, products int, age time.Duration) *shop {
	t.Helper()
	token := "tok-" + contract
	sh := &shop{contract: contract, token: token, clientID: "app-" + contract, clientSecret: "secret-" + contract}
	sh.lag.Store(int64(age))
	sim, err := smaregisim.New(smaregisim.Options{Contract: contract, Token: token, Stores: stores,
		Products: products, InitialStock: 100, Seed: 42,
		Clock: func() time.Time { return time.Now().Add(-time.Duration(sh.lag.Load())) },
		// Both APIs over one shop, with Smaregi's production rate limits.
		Platform: smaregisim.PlatformOptions{ClientID: sh.clientID, ClientSecret: sh.clientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	sh.lag.Store(0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: sim.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		_ = sim.Close()
	})
	sh.sim, sh.url = sim, "http://"+ln.Addr().String()+"/access/"
	sh.base = "http://" + ln.Addr().String() + "/"
	return sh
}

func newNamespace(t testing.TB, prefix string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}
	if err := kube.Create(context.Background(), ns); err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// declareStores creates the credentials Secret and one SmaregiStore per
// Smaregi store ID, named store-<id>.
func declareStores(t testing.TB, ns string, s *shop, poll time.Duration, ids ...string) {
	t.Helper()
	ctx := context.Background()
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "smaregi-credentials", Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		StringData: map[string]string{"accessToken": s.token}}
	if err := kube.Create(ctx, secret); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		st := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "store-" + id}}
		st.Spec.ContractID = s.contract
		st.Spec.StoreID = id
		st.Spec.Endpoint = s.url
		st.Spec.CredentialsRef.Name = secret.Name
		st.Spec.Sync.PollInterval = &metav1.Duration{Duration: poll}
		if err := kube.Create(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
}

func getStore(t testing.TB, ns, name string) *smaregiv1alpha1.SmaregiStore {
	t.Helper()
	st := &smaregiv1alpha1.SmaregiStore{}
	if err := kube.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, st); err != nil {
		t.Fatal(err)
	}
	return st
}

func waitReady(t testing.TB, ns, name string) *smaregiv1alpha1.SmaregiStore {
	t.Helper()
	var st *smaregiv1alpha1.SmaregiStore
	waitFor(t, 60*time.Second, name+" to become Ready", func() bool {
		st = getStore(t, ns, name)
		return apimeta.IsStatusConditionTrue(st.Status.Conditions, smaregiv1alpha1.ReadyCondition) &&
			st.Status.Receiver != nil && st.Status.Receiver.URL != ""
	})
	return st
}

// connectSends does what the shop does in API送信設定: the receiver URL and
// the key parameter of the given store.
func connectSends(t testing.TB, s *shop, st *smaregiv1alpha1.SmaregiStore) {
	t.Helper()
	ref := st.Status.Receiver.KeySecretRef
	secret := &corev1.Secret{}
	if err := kube.Get(context.Background(), types.NamespacedName{Namespace: st.Namespace, Name: ref.Name}, secret); err != nil {
		t.Fatal(err)
	}
	err := s.sim.SetSendConfig(smaregisim.SendConfig{URL: st.Status.Receiver.URL,
		Params:    map[string]string{st.Status.Receiver.ParameterName: string(secret.Data[ref.Key])},
		Functions: []string{"transaction_send", "stock_send"}})
	if err != nil {
		t.Fatal(err)
	}
}

// bearerToken returns a real ServiceAccount token bound by a RoleBinding in
// ns to the given ClusterRole ("" binds nothing).
func bearerToken(t testing.TB, ns, sa, clusterRole string) string {
	t.Helper()
	ctx := context.Background()
	if err := kube.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa}}); err != nil {
		t.Fatal(err)
	}
	if clusterRole != "" {
		// A binding to a ClusterRole that does not exist is accepted and
		// grants nothing: every call would be a puzzling 403.
		if _, err := clientset.RbacV1().ClusterRoles().Get(ctx, clusterRole, metav1.GetOptions{}); err != nil {
			t.Fatalf("ClusterRole %s: %v", clusterRole, err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: sa},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: clusterRole},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}}
		if err := kube.Create(ctx, rb); err != nil {
			t.Fatal(err)
		}
	}
	// The hub API refuses tokens not issued for its audience (--hub-api-audiences).
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{hubapi.DefaultAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s: %v", sa, err)
	}
	return tr.Status.Token
}

// stockListing is the hub API's stock answer.
type stockListing struct {
	SKUs  int64 `json:"skus"`
	Items []struct {
		ProductID          string `json:"productId"`
		StockAmount        int64  `json:"stockAmount"`
		LayawayStockAmount int64  `json:"layawayStockAmount"`
		Available          int64  `json:"available"`
	} `json:"items"`
}

func hubStock(t testing.TB, op *operator, token, ns, name string) (stockListing, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet,
		fmt.Sprintf("http://%s/api/v1/namespaces/%s/smaregistores/%s/stock", op.apiAddr, ns, name), nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return stockListing{}, 0 // the operator may be restarting
	}
	defer func() { _ = resp.Body.Close() }()
	var out stockListing
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("decoding the stock listing: %v", err)
		}
	}
	return out, resp.StatusCode
}

// mirrorDiff compares the operator's mirror, read through the hub API, with
// the simulator's stock; "" means equal.
func mirrorDiff(t testing.TB, op *operator, token string, s *shop, ns, name, storeID string) string {
	t.Helper()
	got, code := hubStock(t, op, token, ns, name)
	if code != http.StatusOK {
		return fmt.Sprintf("hub API answered %d", code)
	}
	want, err := s.sim.Stock(storeID)
	if err != nil {
		t.Fatal(err)
	}
	mirror := make(map[string]int64, len(got.Items))
	for _, it := range got.Items {
		mirror[it.ProductID] = it.StockAmount
	}
	var diffs []string
	for _, w := range want {
		if m, ok := mirror[w.ProductID]; !ok || m != w.StockAmount {
			diffs = append(diffs, fmt.Sprintf("%s: mirror %d (present %v), Smaregi %d", w.ProductID, m, ok, w.StockAmount))
		}
		delete(mirror, w.ProductID)
	}
	for p := range mirror {
		diffs = append(diffs, p+": in the mirror only")
	}
	if len(diffs) > 5 {
		diffs = append(diffs[:5], fmt.Sprintf("… %d more", len(diffs)-5))
	}
	return strings.Join(diffs, "; ")
}

// metric reads one sample (name plus exact label set) from the operator's
// metrics endpoint; ok is false when it is absent.
func metric(t testing.TB, op *operator, series string) (float64, bool) {
	t.Helper()
	resp, err := http.Get("http://" + op.metricsAddr + "/metrics")
	if err != nil {
		return 0, false
	}
	// Read to the end, so that the operator has finished serving the page
	// (at scale, megabytes) when this returns, and does not hold it in a
	// heap measured next.
	defer func() {
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// histogramQuantile estimates a quantile from a Prometheus histogram's
// cumulative buckets, as PromQL's histogram_quantile does (upper bounds).
func histogramQuantile(t *testing.T, op *operator, name string, q float64) (float64, float64) {
	t.Helper()
	resp, err := http.Get("http://" + op.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	type bucket struct{ le, n float64 }
	var buckets []bucket
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name+`_bucket{le="`)
		if !ok {
			continue
		}
		leStr, nStr, _ := strings.Cut(rest, `"} `)
		n, _ := strconv.ParseFloat(nStr, 64)
		le, err := strconv.ParseFloat(leStr, 64)
		if leStr == "+Inf" {
			le, err = 1e9, nil
		}
		if err == nil {
			buckets = append(buckets, bucket{le, n})
		}
	}
	if len(buckets) == 0 {
		return 0, 0
	}
	total := buckets[len(buckets)-1].n
	for _, b := range buckets {
		if b.n >= q*total {
			return b.le, total
		}
	}
	return buckets[len(buckets)-1].le, total
}

// ringUp rings up n sales and returns spread over the given stores and the
// first `products` products, deterministically.
func ringUp(t testing.TB, s *shop, n int, stores []string, products int, seed uint64) {
	t.Helper()
	x := seed
	next := func(m int) int { // xorshift: deterministic, no shared state
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return int(x % uint64(m))
	}
	for i := 0; i < n; i++ {
		var lines []smaregisim.SaleLine
		for j := 0; j <= next(3); j++ {
			q := int64(next(4) + 1)
			if next(5) == 0 {
				q = -q // a return
			}
			lines = append(lines, smaregisim.SaleLine{ProductID: strconv.Itoa(smaregisim.FirstProductID + next(products)), Quantity: q})
		}
		if _, err := s.sim.Sale(stores[next(len(stores))], lines); err != nil {
			t.Fatalf("sale %d: %v", i, err)
		}
	}
}

var sendsMu sync.Mutex

// sendStates counts the simulator's send history by state.
func sendStates(s *shop) map[string]int {
	sendsMu.Lock()
	defer sendsMu.Unlock()
	out := map[string]int{}
	for _, r := range s.sim.Sends() {
		out[r.State]++
		for _, a := range r.Attempts {
			if a.Duplicate {
				out["duplicate"]++
			}
		}
	}
	return out
}
