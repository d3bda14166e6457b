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

// Command smaregi-demo is `make demo`: on a machine with nothing but Go it
// builds what is missing, starts a local control plane (real kube-apiserver
// and etcd), the Smaregi simulator and the operator, applies a sample shop,
// rings up a few sales, prints what `kubectl get smaregistores` and the setup
// helper say, and stops everything on Ctrl-C.
//
// The simulator and the operator run as separate processes started with the
// same command lines a user would type, so the demo exercises the real
// binaries rather than an in-process shortcut.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

type options struct {
	stateDir     string
	simAddr      string
	platSimAddr  string
	receiverAddr string
	apiAddr      string
	products     int
	timeout      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.stateDir, "state-dir", ".demo", "directory for the kubeconfig, logs, binaries and the inventory file")
	flag.StringVar(&o.simAddr, "sim-address", "127.0.0.1:9080", "where the Smaregi simulator listens")
	flag.StringVar(&o.platSimAddr, "platform-sim-address", "127.0.0.1:9081", "where the simulator of the Platform API shop listens")
	flag.StringVar(&o.receiverAddr, "receiver-address", "127.0.0.1:8082", "where the operator's receiver listens")
	flag.StringVar(&o.apiAddr, "api-address", "127.0.0.1:8083", "where the operator's hub API listens")
	flag.IntVar(&o.products, "products", 1000, "products in the simulated shop")
	flag.DurationVar(&o.timeout, "ready-timeout", 2*time.Minute, "how long to wait for the sample store to become Ready")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// demoStores are the sample SmaregiStores, store IDs 1, 2, … in order.
var demoStores = []string{"shibuya", "harajuku"}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func run(ctx context.Context, o options) error {
	if _, err := os.Stat("go.mod"); err != nil {
		return errors.New("run from the repository root (make demo)")
	}
	state, err := filepath.Abs(o.stateDir)
	if err != nil {
		return err
	}
	// Every run starts a fresh control plane and simulator, so the mirror
	// of the last run would describe objects that no longer exist.
	if err := os.Remove(filepath.Join(state, "inventory.db")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	bin := filepath.Join(state, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return err
	}

	step("test control plane (kube-apiserver, etcd, kubectl); the first build takes 10-15 minutes")
	assets, err := controlPlane(ctx)
	if err != nil {
		return err
	}
	fmt.Println("    binaries in", assets)

	step("building the operator, the simulator and the kubectl plugin")
	for name, pkg := range map[string]string{"manager": "./cmd", "smaregi-sim": "./cmd/smaregi-sim", "kubectl-smaregi": "./cmd/kubectl-smaregi"} {
		if err := runCmd(ctx, os.Stdout, "go", "build", "-o", filepath.Join(bin, name), pkg); err != nil {
			return fmt.Errorf("build %s: %w", name, err)
		}
	}

	step("starting kube-apiserver and etcd")
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
	}
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("start control plane: %w", err)
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Println("    stopping kube-apiserver and etcd:", err)
			return
		}
		fmt.Println("    kube-apiserver and etcd stopped; everything is stopped")
	}()
	admin, err := env.AddUser(envtest.User{Name: "demo-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return fmt.Errorf("add demo user: %w", err)
	}
	kubeconfigBytes, err := admin.KubeConfig()
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	kubeconfig := filepath.Join(state, "kubeconfig")
	if err := os.WriteFile(kubeconfig, kubeconfigBytes, 0o600); err != nil {
		return err
	}
	fmt.Println("    kubeconfig:", kubeconfig)

	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	_ = smaregiv1alpha1.AddToScheme(scheme)
	kube, err := client.New(admin.Config(), client.Options{Scheme: scheme})
	if err != nil {
		return err
	}

	step("starting the Smaregi simulator on %s (contract skdemo, stores 1 and 2)", o.simAddr)
	sim, err := startProcess(ctx, filepath.Join(state, "smaregi-sim.log"), nil, filepath.Join(bin, "smaregi-sim"),
		"--listen", o.simAddr, "--contract", "skdemo", "--token", "demo-token",
		"--stores", "1,2", "--products", fmt.Sprint(o.products), "--initial-stock", "10", "--seed", "1")
	if err != nil {
		return err
	}
	defer sim.stop()
	if err := waitListening(ctx, o.simAddr); err != nil {
		return fmt.Errorf("simulator: %w (log: %s)", err, sim.log)
	}

	step("starting a second shop on the Platform API on %s (contract skplatform, store 1, app %s)", o.platSimAddr, platClientID)
	platSim, err := startProcess(ctx, filepath.Join(state, "smaregi-sim-platform.log"),
		[]string{"SMAREGI_SIM_CLIENT_SECRET=" + platClientSecret}, filepath.Join(bin, "smaregi-sim"),
		"--listen", o.platSimAddr, "--contract", "skplatform", "--token", "unused-legacy-token",
		"--stores", "1", "--products", fmt.Sprint(o.products), "--initial-stock", "10", "--seed", "2",
		"--client-id", platClientID)
	if err != nil {
		return err
	}
	defer platSim.stop()
	if err := waitListening(ctx, o.platSimAddr); err != nil {
		return fmt.Errorf("Platform simulator: %w (log: %s)", err, platSim.log)
	}

	step("starting the operator (receiver on %s)", o.receiverAddr)
	op, err := startProcess(ctx, filepath.Join(state, "operator.log"), []string{"KUBECONFIG=" + kubeconfig},
		filepath.Join(bin, "manager"),
		"--receiver-bind-address", o.receiverAddr, "--receiver-base-url", "http://"+o.receiverAddr,
		"--api-bind-address", o.apiAddr,
		"--metrics-bind-address", "0", "--health-probe-bind-address", "0",
		"--inventory", "bolt://"+filepath.Join(state, "inventory.db"),
		// The simulators are the demo's Smaregi.
		"--allowed-endpoints", "http://"+o.simAddr+"/,http://"+o.platSimAddr+"/")
	if err != nil {
		return err
	}
	defer op.stop()
	fmt.Println("    log:", op.log)

	step("applying the sample Secret and SmaregiStores (shibuya = store 1, harajuku = store 2; ginza on the Platform API)")
	if err := applySamples(ctx, kube, o.simAddr); err != nil {
		return err
	}
	if err := applyPlatformSample(ctx, kube, o.platSimAddr); err != nil {
		return err
	}

	step("waiting for the stores to become Ready")
	var store *smaregiv1alpha1.SmaregiStore
	for _, name := range demoStores {
		s, err := waitReady(ctx, kube, types.NamespacedName{Namespace: "default", Name: name}, o.timeout)
		if err != nil {
			return fmt.Errorf("%w (operator log: %s)", err, op.log)
		}
		if store == nil {
			store = s
		}
	}
	ginza, err := waitReady(ctx, kube, types.NamespacedName{Namespace: "default", Name: platformStore}, o.timeout)
	if err != nil {
		return fmt.Errorf("%w (operator log: %s)", err, op.log)
	}

	step("pointing the Platform app's webhook at the operator (what the developer console holds)")
	if err := connectWebhooks(ctx, kube, ginza, o.platSimAddr); err != nil {
		return err
	}

	step("pointing the simulator's API送信 at the receiver and ringing up sales")
	if err := connectSends(ctx, kube, store, o.simAddr); err != nil {
		return err
	}
	for i, line := range []struct {
		store, product string
		qty            int
	}{{"1", "8000001", 2}, {"1", "8000002", 1}, {"2", "8000001", 3}, {"1", "8000001", -1}} {
		var out map[string]string
		if err := simCall(ctx, o.simAddr, http.MethodPost, "/_sim/sales",
			map[string]any{"storeId": line.store, "lines": []map[string]any{{"productId": line.product, "quantity": line.qty}}}, &out); err != nil {
			return fmt.Errorf("sale %d: %w", i+1, err)
		}
		fmt.Printf("    store %s: %+d × %s (transaction %s)\n", line.store, -line.qty, line.product, out["transactionHeadId"])
	}
	var out map[string]string
	if err := simCall(ctx, o.platSimAddr, http.MethodPost, "/_sim/sales",
		map[string]any{"storeId": "1", "lines": []map[string]any{{"productId": "8000001", "quantity": 2}}}, &out); err != nil {
		return fmt.Errorf("Platform shop sale: %w", err)
	}
	fmt.Printf("    ginza (Platform): -2 × 8000001 (transaction %s)\n", out["transactionHeadId"])
	time.Sleep(3 * time.Second) // long enough for the sends, webhooks and the pulls they trigger

	step("a token for the hub API (ServiceAccount demo-channel, ClusterRole %s)", hubapi.AdjusterRole)
	token, err := hubToken(ctx, admin.Config(), kube)
	if err != nil {
		return err
	}
	tokenFile := filepath.Join(state, "hub-token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		return err
	}
	fmt.Println("    written to", tokenFile)

	kubectl := filepath.Join(assets, "kubectl")
	step("kubectl get smaregistores")
	_ = runCmd(ctx, os.Stdout, kubectl, "--kubeconfig", kubeconfig, "get", "smaregistores", "-o", "wide")

	step("kubectl smaregi setup shibuya (what the shop enters in Smaregi)")
	_ = runCmdEnv(ctx, os.Stdout, []string{"KUBECONFIG=" + kubeconfig}, filepath.Join(bin, "kubectl-smaregi"), "setup", "shibuya")
	step("kubectl smaregi setup ginza (the Platform app's settings)")
	_ = runCmdEnv(ctx, os.Stdout, []string{"KUBECONFIG=" + kubeconfig}, filepath.Join(bin, "kubectl-smaregi"), "setup", platformStore)

	fmt.Printf(`
==> running. In another terminal:
    export KUBECONFIG=%s
    export PATH=%s:%s:$PATH
    kubectl get smaregistores
    kubectl smaregi setup shibuya
    curl -s -XPOST %s/_sim/sales -d '{"storeId":"1","lines":[{"productId":"8000003","quantity":1}]}'
    curl -s '%s/_sim/stock?storeId=1' | head -c 300
  the Platform shop (ginza) has its own simulator:
    curl -s -XPOST http://%s/_sim/sales -d '{"storeId":"1","lines":[{"productId":"8000003","quantity":1}]}'
  the hub API (docs/hub-api.md):
    API=http://%s/api/v1/namespaces/default/smaregistores/shibuya; TOKEN=$(cat %s)
    curl -s -H "Authorization: Bearer $TOKEN" "$API/stock?productId=8000001"
    curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -XPOST "$API/adjustments" \
      -d '{"id":"order-1","reason":"online order","lines":[{"productId":"8000001","quantity":-2}]}'
    curl -s -H "Authorization: Bearer $TOKEN" "$API/adjustments/order-1"
    logs: %s, %s
Press Ctrl-C to stop everything.
`, kubeconfig, assets, bin, "http://"+o.simAddr, "http://"+o.simAddr, o.platSimAddr, o.apiAddr, tokenFile, op.log, sim.log)

	select {
	case <-ctx.Done():
	case err := <-op.exited:
		return fmt.Errorf("operator exited: %v (log: %s)", err, op.log)
	case err := <-sim.exited:
		return fmt.Errorf("simulator exited: %v (log: %s)", err, sim.log)
	case err := <-platSim.exited:
		return fmt.Errorf("Platform simulator exited: %v (log: %s)", err, platSim.log)
	}
	step("stopping")
	return nil
}

// controlPlane builds (or finds in the cache) the control-plane binaries,
// letting the build's progress through to the terminal.
func controlPlane(ctx context.Context) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "hack/build-controlplane.sh")
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("hack/build-controlplane.sh: %w", err)
	}
	return strings.TrimSpace(out.String()), nil
}

func runCmd(ctx context.Context, out io.Writer, name string, args ...string) error {
	return runCmdEnv(ctx, out, nil, name, args...)
}

func runCmdEnv(ctx context.Context, out io.Writer, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	cmd.Env = append(os.Environ(), env...)
	return cmd.Run()
}

type process struct {
	cmd    *exec.Cmd
	log    string
	exited chan error    // the exit status, for whoever watches for a crash
	done   chan struct{} // closed once the process has exited
}

func startProcess(ctx context.Context, logPath string, env []string, name string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("start %s: %w", filepath.Base(name), err)
	}
	p := &process{cmd: cmd, log: logPath, exited: make(chan error, 1), done: make(chan struct{})}
	go func() {
		p.exited <- cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// stop asks the process to shut down gracefully, kills it if it lingers,
// and says which way it ended, so that Ctrl-C confirms nothing is left.
func (p *process) stop() {
	name := filepath.Base(p.cmd.Path)
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		fmt.Printf("    %s stopped\n", name)
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		fmt.Printf("    %s did not stop within 10s: killed\n", name)
	}
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

func applySamples(ctx context.Context, kube client.Client, simAddr string) error {
	secret := &corev1.Secret{}
	secret.Namespace, secret.Name = "default", "skdemo-smaregi"
	secret.Labels = map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}
	secret.StringData = map[string]string{smaregiv1alpha1.DefaultCredentialsKey: "demo-token"}
	if err := kube.Create(ctx, secret); err != nil {
		return fmt.Errorf("create Secret: %w", err)
	}
	for i, name := range demoStores {
		storeID := fmt.Sprint(i + 1)
		s := &smaregiv1alpha1.SmaregiStore{}
		s.Namespace, s.Name = "default", name
		s.Spec.ContractID = "skdemo"
		s.Spec.StoreID = storeID
		s.Spec.Endpoint = "http://" + simAddr + "/access/"
		s.Spec.CredentialsRef.Name = secret.Name
		s.Spec.SafetyStock = 1
		if err := kube.Create(ctx, s); err != nil {
			return fmt.Errorf("create SmaregiStore %s: %w", name, err)
		}
	}
	return nil
}

func waitReady(ctx context.Context, kube client.Client, key types.NamespacedName, timeout time.Duration) (*smaregiv1alpha1.SmaregiStore, error) {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		s := &smaregiv1alpha1.SmaregiStore{}
		if err := kube.Get(ctx, key, s); err != nil {
			return nil, err
		}
		if c := apimeta.FindStatusCondition(s.Status.Conditions, smaregiv1alpha1.ReadyCondition); c != nil {
			if c.Status == "True" && s.Status.Receiver != nil && s.Status.Receiver.URL != "" {
				fmt.Printf("    %s: Ready, receiver %s\n", key.Name, s.Status.Receiver.URL)
				return s, nil
			}
			if msg := c.Reason + ": " + c.Message; msg != last {
				fmt.Printf("    %s: %s\n", key.Name, msg)
				last = msg
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("store %s not Ready after %s", key, timeout)
}

// connectSends does what the shop does in API送信設定: it enters the
// receiver URL and the key parameter in the simulator's send settings.
func connectSends(ctx context.Context, kube client.Client, s *smaregiv1alpha1.SmaregiStore, simAddr string) error {
	ref := s.Status.Receiver.KeySecretRef
	if ref == nil {
		return errors.New("status.receiver.keySecretRef is empty")
	}
	secret := &corev1.Secret{}
	if err := kube.Get(ctx, types.NamespacedName{Namespace: s.Namespace, Name: ref.Name}, secret); err != nil {
		return fmt.Errorf("read key Secret: %w", err)
	}
	key := string(secret.Data[ref.Key])
	if key == "" {
		return fmt.Errorf("key Secret %s has no %q", ref.Name, ref.Key)
	}
	return simCall(ctx, simAddr, http.MethodPut, "/_sim/send-config", map[string]any{
		"url":       s.Status.Receiver.URL,
		"params":    map[string]string{s.Status.Receiver.ParameterName: key},
		"functions": []string{"transaction_send", "stock_send"},
	}, nil)
}

func simCall(ctx context.Context, simAddr, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+simAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(data)))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// hubToken installs the hub ClusterRoles shipped in config/rbac under their
// installed names, binds the adjuster role to a ServiceAccount in default
// and returns a token for it, as a platform team would for an online shop.
// The ServiceAccount is demo-channel, so that docs/hub-api.md's commands
// (which create online-shop) run in the demo as written.
func hubToken(ctx context.Context, cfg *rest.Config, kube client.Client) (string, error) {
	if err := testenv.InstallHubRoles(ctx, kube, "."); err != nil {
		return "", err
	}
	sa := &corev1.ServiceAccount{}
	sa.Namespace, sa.Name = "default", "demo-channel"
	if err := kube.Create(ctx, sa); err != nil {
		return "", fmt.Errorf("create ServiceAccount: %w", err)
	}
	rb := &rbacv1.RoleBinding{
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: hubapi.AdjusterRole},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.Name, Namespace: sa.Namespace}},
	}
	rb.Namespace, rb.Name = "default", "demo-channel-hub"
	if err := kube.Create(ctx, rb); err != nil {
		return "", fmt.Errorf("create RoleBinding: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts(sa.Namespace).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{hubapi.DefaultAudience}}}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("request a token: %w", err)
	}
	return tr.Status.Token, nil
}
