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

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
)

const (
	shops       = "shops"            // namespace of the SmaregiStores
	legacyStore = "legacy-shop"      // legacy API, store 1 of contract sklegacy
	platStore   = "platform-shop"    // Platform API, store 1 of contract skplatform
	release     = "smaregi-operator" // release name = namespace = fullname
	platClient  = "node-test-app"
	// Every adjustment of the tests takes a product of its own, so that
	// "applied exactly once" is one history row of that product.
	productSend    = "8000001"
	productHub     = "8000011"
	productRestart = "8000012"
	productUpgrade = "8000013"
	productHA      = "8000014"
	productHACrash = "8000015"
)

// cluster is what the tests of one run share: the simulators, the CA, the
// clients, the stores' channel token.
type cluster struct {
	kube     client.Client
	cs       kubernetes.Interface
	ca       *testCA
	legacy   *simulator
	platform *simulator
	token    string // the sales channel's hub API token
}

// TestChart installs the chart with its defaults plus what this node needs
// (receiver URL, the simulators' endpoints and CA) and walks through what a
// user meets, one subtest per step; a step that fails stops the walk, since
// every later step stands on it.
func TestChart(t *testing.T) {
	requireNode(t)
	top := t
	c := newCluster(t)
	// On a failure, what the operator said: its log has the cause (an RBAC
	// refusal, an endpoint not allowed) and never a token or key.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, ns := range []string{release, haRelease} {
			if out, err := kubectl("-n", ns, "logs", "-l", "app.kubernetes.io/name=smaregi-operator",
				"--prefix", "--tail", "15", "--all-containers"); err == nil && !strings.HasPrefix(out, "No resources found") {
				t.Logf("operator log in %s (last lines):\n%s", ns, out)
			}
		}
	})

	receiverPort := freePort(t, "127.0.0.1")
	publicURL := fmt.Sprintf("http://127.0.0.1:%d", receiverPort)
	var receiver, hub *portForward
	var hc *hubClient

	steps := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"InstallBecomesAvailable", func(t *testing.T) {
			c.prepareRelease(t, release, true)
			values := c.values(publicURL, nil)
			start := time.Now()
			helm(t, "install", release, filepath.Join(env.repo, "charts", "smaregi-operator"), "-n", release,
				"-f", writeValues(t, "bolt.json", values), "--wait", "--timeout", "4m")
			t.Logf("helm install --wait: Available after %s", time.Since(start).Round(time.Second))
			c.checkDeployment(t, release, 1, false)
		}},
		{"StoresBecomeReady", func(t *testing.T) {
			c.declareStores(t)
			for _, name := range []string{legacyStore, platStore} {
				c.waitReady(t, name)
			}
		}},
		{"SendReachesTheMirror", func(t *testing.T) {
			receiver = startPortForward(t, top, release, release+"-receiver", receiverPort, 80)
			hub = startPortForward(t, top, release, release+"-hub-api", 0, 80)
			c.token = c.channelToken(t)
			hc = newHubClient(hub, c.ca, release+"-hub-api."+release+".svc", c.token)
			c.sendReachesMirror(t, hc)
		}},
		{"HubAPIAdjustsExactlyOnce", func(t *testing.T) {
			ctx := context.Background()
			if _, err := hc.adjust(ctx, shops, legacyStore, "hub-1", productHub, -3); err != nil {
				t.Fatal(err)
			}
			c.waitApplied(t, hc, legacyStore, "hub-1")
			// The same id again: the retry of a client that lost the answer.
			if a, err := hc.adjust(ctx, shops, legacyStore, "hub-1", productHub, -3); err != nil || a.State != "applied" {
				t.Fatalf("resubmitting hub-1: %+v, %v", a, err)
			}
			c.appliedOnce(t, productHub, -3)
		}},
		{"MetricsAnswerOnlyAReader", func(t *testing.T) {
			c.metrics(t, release)
		}},
		{"DeletePodLosesNothing", func(t *testing.T) {
			ctx := context.Background()
			c.suspend(t, legacyStore, true)
			c.pending(t, hc, "restart-1", productRestart)
			before, err := hc.stock(ctx, shops, legacyStore)
			if err != nil {
				t.Fatal(err)
			}
			if before.SKUs == 0 {
				t.Fatal("the mirror is empty before the restart")
			}
			old := c.operatorPods(t, release)
			if _, err := kubectl("-n", release, "delete", "pod", "--wait=false", old[0]); err != nil {
				t.Fatal(err)
			}
			// The replacement starts while the old Pod drains and waits for
			// the bbolt file (startupProbe; boltstore.DefaultLockTimeout):
			// no restart.
			c.waitReplaced(t, release, old, 1, false)
			c.stillPending(t, hc, "restart-1")
			// Suspended: nothing was pulled since, so this is the mirror the
			// new Pod found on the volume.
			after, err := hc.stock(ctx, shops, legacyStore)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(after.Items) != fmt.Sprint(before.Items) {
				t.Errorf("mirror after the restart differs:\nbefore %v\nafter  %v", before.Items, after.Items)
			}
			c.suspend(t, legacyStore, false)
			c.waitApplied(t, hc, legacyStore, "restart-1")
			c.appliedOnce(t, productRestart, -1)
		}},
		{"UpgradeKeepsMirrorAndPending", func(t *testing.T) {
			ctx := context.Background()
			c.suspend(t, legacyStore, true)
			c.pending(t, hc, "upgrade-1", productUpgrade)
			before, err := hc.stock(ctx, shops, legacyStore)
			if err != nil {
				t.Fatal(err)
			}
			if before.SKUs == 0 {
				t.Fatal("the mirror is empty before the upgrade")
			}
			old := c.operatorPods(t, release)
			helm(t, "upgrade", release, filepath.Join(env.repo, "charts", "smaregi-operator"), "-n", release,
				"--reuse-values", "--set", "image.tag="+upgradeTag, "--wait", "--timeout", "4m")
			c.waitReplaced(t, release, old, 1, false)
			dep := &appsv1.Deployment{}
			if err := c.kube.Get(ctx, types.NamespacedName{Namespace: release, Name: release}, dep); err != nil {
				t.Fatal(err)
			}
			// The bbolt file is opened by one process: the old Pod must be
			// gone before the new one starts.
			if dep.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("strategy %q, want Recreate on bolt", dep.Spec.Strategy.Type)
			}
			if img := dep.Spec.Template.Spec.Containers[0].Image; img != imageRepo+":"+upgradeTag {
				t.Errorf("image after the upgrade %q", img)
			}
			// The store is still suspended, so nothing was pulled since: what
			// the hub API lists now is the mirror the new Pod found on the
			// volume.
			var after hubStock
			eventually(t, time.Minute, "stock listing after the upgrade", func() error {
				after, err = hc.stock(ctx, shops, legacyStore)
				return err
			})
			if fmt.Sprint(after.Items) != fmt.Sprint(before.Items) {
				t.Errorf("mirror after the upgrade differs:\nbefore %v\nafter  %v", before.Items, after.Items)
			}
			c.stillPending(t, hc, "upgrade-1")
			c.suspend(t, legacyStore, false)
			c.waitApplied(t, hc, legacyStore, "upgrade-1")
			c.appliedOnce(t, productUpgrade, -1)
		}},
		{"UninstallLeavesWhatTheREADMESays", func(t *testing.T) {
			receiver.close()
			hub.close()
			c.uninstall(t, release)
		}},
		{"PostgresHAHandsOver", c.postgresHA},
	}
	for _, s := range steps {
		if !t.Run(s.name, s.run) {
			t.Fatalf("%s failed: the later steps stand on it", s.name)
		}
	}
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	kube, cs := kubeClients(t)
	c := &cluster{kube: kube, cs: cs, ca: newCA(t)}
	c.legacy = startSimulator(t, c.ca, []string{"SMAREGI_SIM_TOKEN=node-legacy-token"},
		"--contract", "sklegacy", "--stores", "1", "--products", "50", "--initial-stock", "10", "--seed", "1")
	c.platform = startSimulator(t, c.ca, []string{"SMAREGI_SIM_TOKEN=unused-legacy-token", "SMAREGI_SIM_CLIENT_SECRET=node-app-secret"},
		"--contract", "skplatform", "--stores", "1", "--products", "50", "--initial-stock", "10", "--seed", "2",
		"--client-id", platClient)
	return c
}

// prepareRelease creates the release namespace with what the values refer
// to: the simulators' CA (a ConfigMap) and the hub API's serving
// certificate (a kubernetes.io/tls Secret, as cert-manager would make),
// and, on bolt, a hostPath PersistentVolume for the chart's claim (the node
// has no provisioner).
func (c *cluster) prepareRelease(t *testing.T, ns string, bolt bool) {
	t.Helper()
	ctx := context.Background()
	must(t, c.kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	must(t, c.kube.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "smaregi-ca"},
		Data: map[string]string{"ca.crt": string(c.ca.pem)}}))
	svc := fullname(ns) + "-hub-api"
	crt, key := c.ca.issue(t, svc+"."+ns+".svc", svc+"."+ns+".svc.cluster.local", svc)
	must(t, c.kube.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hub-api-tls"},
		Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": crt, "tls.key": key}}))
	if !bolt {
		return
	}
	dir := filepath.Join(env.nodeDir, "pv", ns)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The operator runs as 65532; a hostPath volume is not chowned to
	// the Pod's fsGroup.
	if err := os.Chown(dir, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	must(t, c.kube.Create(ctx, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-inventory"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir}},
		},
	}))
}

// values are the chart's defaults plus what this node needs: the
// receiver's URL, the simulators as allowed endpoints, their CA trusted
// (mounted, SSL_CERT_FILE), and the hub API over TLS.
func (c *cluster) values(publicURL string, extra map[string]any) map[string]any {
	v := map[string]any{
		"receiver":          map[string]any{"publicURL": publicURL},
		"allowedEndpoints":  []string{c.legacy.public, c.platform.public},
		"hubApi":            map[string]any{"tls": map[string]any{"secretName": "hub-api-tls"}},
		"extraVolumes":      []any{map[string]any{"name": "smaregi-ca", "configMap": map[string]any{"name": "smaregi-ca"}}},
		"extraVolumeMounts": []any{map[string]any{"name": "smaregi-ca", "mountPath": "/etc/smaregi-ca", "readOnly": true}},
		"extraEnv":          []any{map[string]any{"name": "SSL_CERT_FILE", "value": "/etc/smaregi-ca/ca.crt"}},
	}
	for k, x := range extra {
		v[k] = x
	}
	return v
}

// checkDeployment checks what the chart promises of the running Pods: the
// Deployment is Available (its readiness probe passed), the Pods run under
// the chart's ServiceAccount with the restricted security context.
//
// restarts says whether a container restart is expected. None is today: a
// Pod deleted on bolt is replaced at once (a ReplicaSet does not wait for
// it, unlike a Recreate rollout), and the new one cannot open the bbolt file
// until the old one has stopped (preStop, drain), but it waits for it under
// the chart's startupProbe instead of exiting (it used to exit after 5 s and
// be restarted twice).
func (c *cluster) checkDeployment(t *testing.T, ns string, replicas int32, restarts bool) {
	t.Helper()
	ctx := context.Background()
	dep := &appsv1.Deployment{}
	if err := c.kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: fullname(ns)}, dep); err != nil {
		t.Fatal(err)
	}
	if !deploymentAvailable(dep) || dep.Status.ReadyReplicas != replicas {
		t.Fatalf("Deployment %s: %d of %d ready, conditions %+v", dep.Name, dep.Status.ReadyReplicas, replicas, dep.Status.Conditions)
	}
	pods := &corev1.PodList{}
	must(t, c.kube.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(dep.Spec.Selector.MatchLabels)))
	ready := 0
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || !podReady(&p) {
			continue
		}
		ready++
		if p.Spec.ServiceAccountName != fullname(ns) {
			t.Errorf("Pod %s runs as ServiceAccount %q, want the chart's %q", p.Name, p.Spec.ServiceAccountName, fullname(ns))
		}
		sc := p.Spec.Containers[0].SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("Pod %s: container securityContext %+v", p.Name, sc)
		}
		if p.Spec.SecurityContext == nil || p.Spec.SecurityContext.RunAsNonRoot == nil || !*p.Spec.SecurityContext.RunAsNonRoot {
			t.Errorf("Pod %s: Pod securityContext %+v", p.Name, p.Spec.SecurityContext)
		}
		if n := p.Status.ContainerStatuses[0].RestartCount; n != 0 {
			if !restarts {
				t.Errorf("Pod %s restarted %d times (liveness probe or crash)", p.Name, n)
			} else {
				last, _ := kubectl("-n", ns, "logs", p.Name, "--previous", "--tail", "1")
				t.Logf("Pod %s restarted %d times; the last exit: %s", p.Name, n, strings.TrimSpace(last))
			}
		}
	}
	if ready != int(replicas) {
		t.Errorf("%d ready Pods, want %d", ready, replicas)
	}
}

func fullname(ns string) string {
	if ns == release {
		return release
	}
	return ns + "-smaregi-operator"
}

func deploymentAvailable(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// operatorPods returns the names of the release's live Pods.
func (c *cluster) operatorPods(t *testing.T, ns string) []string {
	t.Helper()
	pods := &corev1.PodList{}
	must(t, c.kube.List(context.Background(), pods, client.InNamespace(ns),
		client.MatchingLabels{"app.kubernetes.io/name": "smaregi-operator"}))
	var names []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			names = append(names, p.Name)
		}
	}
	if len(names) == 0 {
		t.Fatalf("no operator Pod in %s", ns)
	}
	return names
}

// waitReplaced waits until none of the old Pods exists and replicas new
// ones are ready.
func (c *cluster) waitReplaced(t *testing.T, ns string, old []string, replicas int32, restarts bool) {
	t.Helper()
	start := time.Now()
	eventually(t, 3*time.Minute, "the operator Pods replaced", func() error {
		pods := &corev1.PodList{}
		if err := c.kube.List(context.Background(), pods, client.InNamespace(ns),
			client.MatchingLabels{"app.kubernetes.io/name": "smaregi-operator"}); err != nil {
			return err
		}
		ready := 0
		for _, p := range pods.Items {
			for _, o := range old {
				if p.Name == o {
					return fmt.Errorf("old Pod %s still there", o)
				}
			}
			if podReady(&p) {
				ready++
			}
		}
		if ready != int(replicas) {
			return fmt.Errorf("%d of %d new Pods ready", ready, replicas)
		}
		return nil
	})
	t.Logf("Pods replaced and ready in %s", time.Since(start).Round(time.Second))
	c.checkDeployment(t, ns, replicas, restarts)
}

// declareStores creates the two shops' credentials and SmaregiStores, as
// the README shows, with the simulators as endpoints.
func (c *cluster) declareStores(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	must(t, c.kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shops}}))
	must(t, c.kube.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: shops, Name: "legacy-credentials", Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		StringData: map[string]string{smaregiv1alpha1.DefaultCredentialsKey: "node-legacy-token"},
	}))
	must(t, c.kube.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: shops, Name: "platform-app", Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
		StringData: map[string]string{smaregiv1alpha1.PlatformClientIDKey: platClient, smaregiv1alpha1.PlatformClientSecretKey: "node-app-secret"},
	}))
	legacy := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: shops, Name: legacyStore}}
	legacy.Spec.ContractID = "sklegacy"
	legacy.Spec.StoreID = "1"
	legacy.Spec.Endpoint = c.legacy.public + "access/"
	legacy.Spec.CredentialsRef.Name = "legacy-credentials"
	legacy.Spec.Sync = slowPolls()
	must(t, c.kube.Create(ctx, legacy))
	plat := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: shops, Name: platStore}}
	plat.Spec.API = smaregiv1alpha1.APIPlatform
	plat.Spec.ContractID = "skplatform"
	plat.Spec.StoreID = "1"
	plat.Spec.Endpoint = c.platform.public
	plat.Spec.TokenEndpoint = c.platform.public
	plat.Spec.CredentialsRef.Name = "platform-app"
	plat.Spec.Sync = slowPolls()
	must(t, c.kube.Create(ctx, plat))
}

// slowPolls keeps the safety-net polls out of the tests' minutes: what
// reaches a mirror within them came by a send or webhook (or a pull an
// applied adjustment asks for), not by a poll.
func slowPolls() smaregiv1alpha1.SyncSpec {
	return smaregiv1alpha1.SyncSpec{PollInterval: &metav1.Duration{Duration: time.Hour},
		FullResyncInterval: &metav1.Duration{Duration: 2 * time.Hour}}
}

func (c *cluster) store(t *testing.T, name string) *smaregiv1alpha1.SmaregiStore {
	t.Helper()
	s := &smaregiv1alpha1.SmaregiStore{}
	must(t, c.kube.Get(context.Background(), types.NamespacedName{Namespace: shops, Name: name}, s))
	return s
}

func (c *cluster) waitReady(t *testing.T, name string) {
	t.Helper()
	start := time.Now()
	eventually(t, 2*time.Minute, name+" Ready", func() error {
		s := &smaregiv1alpha1.SmaregiStore{}
		if err := c.kube.Get(context.Background(), types.NamespacedName{Namespace: shops, Name: name}, s); err != nil {
			return err
		}
		cond := apimeta.FindStatusCondition(s.Status.Conditions, smaregiv1alpha1.ReadyCondition)
		if cond == nil || cond.Status != metav1.ConditionTrue || s.Status.Receiver == nil || s.Status.Receiver.URL == "" {
			return fmt.Errorf("conditions %+v", s.Status.Conditions)
		}
		return nil
	})
	t.Logf("%s Ready after %s", name, time.Since(start).Round(time.Second))
}

// sendReachesMirror points both simulators at the receiver's Service (as
// the shop does in Smaregi) and rings up a sale in each: the sends must be
// accepted and the mirror must show the sale.
func (c *cluster) sendReachesMirror(t *testing.T, hc *hubClient) {
	t.Helper()
	ctx := context.Background()
	legacy := c.store(t, legacyStore)
	ref := legacy.Status.Receiver.KeySecretRef
	if ref == nil {
		t.Fatal("status.receiver.keySecretRef is empty")
	}
	key := &corev1.Secret{}
	must(t, c.kube.Get(ctx, types.NamespacedName{Namespace: shops, Name: ref.Name}, key))
	c.legacy.call(t, http.MethodPut, "/_sim/send-config", map[string]any{
		"url": legacy.Status.Receiver.URL, "params": map[string]string{legacy.Status.Receiver.ParameterName: string(key.Data[ref.Key])},
		"functions": []string{"transaction_send", "stock_send"}}, nil)

	plat := c.store(t, platStore)
	wk := plat.Status.Receiver.WebhookKey
	if wk == nil || wk.Header == "" {
		t.Fatalf("status.receiver.webhookKey: %+v", wk)
	}
	hookKey := &corev1.Secret{}
	must(t, c.kube.Get(ctx, types.NamespacedName{Namespace: wk.Namespace, Name: wk.Name}, hookKey))
	c.platform.call(t, http.MethodPut, "/_sim/webhook-config", map[string]any{
		"url": plat.Status.Receiver.URL, "headers": map[string]string{wk.Header: string(hookKey.Data[wk.Key])}}, nil)

	for _, sim := range []*simulator{c.legacy, c.platform} {
		sim.call(t, http.MethodPost, "/_sim/sales", map[string]any{"storeId": "1",
			"lines": []map[string]any{{"productId": productSend, "quantity": 2}}}, nil)
	}
	c.legacy.call(t, http.MethodPost, "/_sim/sends/wait?timeout=30s", nil, nil)
	var sends []struct {
		ProcName string `json:"procName"`
		State    string `json:"state"`
		Attempts []struct {
			StatusCode int    `json:"statusCode"`
			Error      string `json:"error"`
		} `json:"attempts"`
	}
	c.legacy.call(t, http.MethodGet, "/_sim/sends", nil, &sends)
	if len(sends) == 0 {
		t.Fatal("the simulator sent nothing")
	}
	for _, s := range sends {
		if s.State != "sent" {
			t.Errorf("send %s: state %s, attempts %+v", s.ProcName, s.State, s.Attempts)
		}
	}
	for _, name := range []string{legacyStore, platStore} {
		eventually(t, time.Minute, name+": the sale in the mirror", func() error {
			s, err := hc.stock(ctx, shops, name)
			if err != nil {
				return err
			}
			for _, it := range s.Items {
				if it.ProductID == productSend {
					if it.StockAmount != 8 {
						return fmt.Errorf("stock of %s is %d, want 8", productSend, it.StockAmount)
					}
					return nil
				}
			}
			return fmt.Errorf("no %s in the mirror (%d rows)", productSend, s.SKUs)
		})
	}
}

// channelToken is what a platform team gives a sales channel: a
// ServiceAccount allowed to read stock and submit adjustments in the shops'
// namespace, and a token for the hub API's audience.
func (c *cluster) channelToken(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	must(t, c.kube.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: shops, Name: "online-shop"}}))
	must(t, c.kube.Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: shops, Name: "hub-adjuster"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{smaregiv1alpha1.GroupVersion.Group},
			Resources: []string{"smaregistores/stock", "smaregistores/adjustments"}, Verbs: []string{"get", "watch", "create"}}},
	}))
	must(t, c.kube.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: shops, Name: "online-shop-hub"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "hub-adjuster"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: shops, Name: "online-shop"}},
	}))
	tr, err := c.cs.CoreV1().ServiceAccounts(shops).CreateToken(ctx, "online-shop", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{hubapi.DefaultAudience}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for online-shop: %v", err)
	}
	return tr.Status.Token
}

func (c *cluster) suspend(t *testing.T, name string, on bool) {
	t.Helper()
	s := c.store(t, name)
	patch := client.MergeFrom(s.DeepCopy())
	s.Spec.Suspend = on
	must(t, c.kube.Patch(context.Background(), s, patch))
}

// pending submits an adjustment of -1 to the (suspended) legacy store and
// checks that it waits.
func (c *cluster) pending(t *testing.T, hc *hubClient, id, product string) {
	t.Helper()
	a, err := hc.adjust(context.Background(), shops, legacyStore, id, product, -1)
	if err != nil {
		t.Fatal(err)
	}
	if a.State != "pending" {
		t.Fatalf("adjustment %s is %q, want pending while the store is suspended", id, a.State)
	}
	if n := len(c.legacy.pushedRows(t, "1", product)); n != 0 {
		t.Fatalf("%d pushes of %s while the store is suspended", n, product)
	}
}

// stillPending reads the adjustment from the new Pod (through the
// re-established port-forward): it must have survived.
func (c *cluster) stillPending(t *testing.T, hc *hubClient, id string) {
	t.Helper()
	eventually(t, time.Minute, "adjustment "+id+" read back", func() error {
		a, err := hc.adjustment(context.Background(), shops, legacyStore, id)
		if err != nil {
			return err
		}
		if a.State != "pending" {
			return fmt.Errorf("state %q, want pending", a.State)
		}
		return nil
	})
}

func (c *cluster) waitApplied(t *testing.T, hc *hubClient, store, id string) {
	t.Helper()
	start := time.Now()
	eventually(t, 2*time.Minute, "adjustment "+id+" applied", func() error {
		a, err := hc.adjustment(context.Background(), shops, store, id)
		if err != nil {
			return err
		}
		if a.State != "applied" {
			return fmt.Errorf("state %q", a.State)
		}
		return nil
	})
	t.Logf("%s applied after %s", id, time.Since(start).Round(100*time.Millisecond))
}

// appliedOnce checks Smaregi's side: one pushed history row of the product
// with the quantity, and the stock moved by it once. It looks again a
// little later, so that a late second push would be seen.
func (c *cluster) appliedOnce(t *testing.T, product string, qty int64) {
	t.Helper()
	for i := 0; i < 2; i++ {
		rows := c.legacy.pushedRows(t, "1", product)
		if len(rows) != 1 || rows[0].Amount != qty {
			t.Fatalf("pushed history rows of %s: %+v, want one of %d", product, rows, qty)
		}
		if got := c.legacy.stockOf(t, "1", product); got != 10+qty {
			t.Fatalf("simulator stock of %s is %d, want %d", product, got, 10+qty)
		}
		if i == 0 {
			time.Sleep(3 * time.Second)
		}
	}
}

// uninstall runs `helm uninstall` and checks the release's objects against
// the chart README: the CRD (crds.keep) and the inventory claim stay,
// every other object the release made is gone; the SmaregiStores and the
// Secrets the operator created stay.
func (c *cluster) uninstall(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	manifest := helm(t, "get", "manifest", fullnameRelease(ns), "-n", ns)
	objs := parseManifest(t, manifest)
	if len(objs) < 5 {
		t.Fatalf("the release manifest lists %d objects", len(objs))
	}
	helm(t, "uninstall", fullnameRelease(ns), "-n", ns, "--wait", "--timeout", "3m")
	for _, o := range objs {
		u := o.obj.DeepCopy()
		err := c.kube.Get(ctx, client.ObjectKeyFromObject(u), u)
		kept := o.obj.GetAnnotations()["helm.sh/resource-policy"] == "keep"
		switch {
		case kept && err != nil:
			t.Errorf("%s %s: kept by the chart, but: %v", o.obj.GetKind(), o.obj.GetName(), err)
		case !kept && err == nil && u.GetDeletionTimestamp() == nil:
			t.Errorf("%s %s/%s is still there after helm uninstall", o.obj.GetKind(), o.obj.GetNamespace(), o.obj.GetName())
		case !kept && err != nil && !apierrors.IsNotFound(err):
			t.Errorf("%s %s: %v", o.obj.GetKind(), o.obj.GetName(), err)
		}
	}
	// The README: the CRD stays, and so does every SmaregiStore; the
	// operator's own Secrets (receiver keys, the Platform webhook key)
	// are not the release's.
	for _, name := range []string{legacyStore, platStore} {
		if err := c.kube.Get(ctx, types.NamespacedName{Namespace: shops, Name: name}, &smaregiv1alpha1.SmaregiStore{}); err != nil {
			t.Errorf("SmaregiStore %s after uninstall: %v", name, err)
		}
	}
	hookKey := &corev1.Secret{}
	if err := c.kube.Get(ctx, types.NamespacedName{Namespace: ns, Name: fullname(ns) + "-platform-webhook-key"}, hookKey); err != nil {
		t.Errorf("the Platform webhook key Secret after uninstall: %v", err)
	}
	// No Pod of the operator is left running.
	eventually(t, 2*time.Minute, "operator Pods gone", func() error {
		pods := &corev1.PodList{}
		if err := c.kube.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels{"app.kubernetes.io/name": "smaregi-operator"}); err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d Pods left", len(pods.Items))
		}
		return nil
	})
}

func fullnameRelease(ns string) string {
	if ns == release {
		return release
	}
	return ns
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// metrics scrapes the metrics Service as Prometheus would (what the
// chart's ServiceMonitor sets up): refused without a token, and with the
// token of a ServiceAccount bound to the chart's metrics reader role it
// answers the operator's metrics.
func (c *cluster) metrics(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	pf := startPortForward(t, t, ns, fullname(ns)+"-metrics", 0, 8443)
	must(t, c.kube.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "scraper"}}))
	must(t, c.kube.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-scraper"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: fullname(ns) + "-metrics-reader"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: "scraper"}},
	}))
	t.Cleanup(func() {
		_ = c.kube.Delete(context.Background(), &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns + "-scraper"}})
	})
	tr, err := c.cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "scraper", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for scraper: %v", err)
	}
	// The certificate is self-signed by controller-runtime; the chart's
	// ServiceMonitor skips verification the same way.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // as the ServiceMonitor
	get := func(token string) (int, string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+pf.addr()+"/metrics", nil)
		if err != nil {
			return 0, "", err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer func() { _ = resp.Body.Close() }()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	if code, _, err := get(""); err != nil || code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, %v; want 401", code, err)
	}
	// A valid token of a ServiceAccount without the role: authenticated,
	// not authorised.
	other, err := c.cs.CoreV1().ServiceAccounts(shops).CreateToken(ctx, "online-shop", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for online-shop: %v", err)
	}
	if code, _, err := get(other.Status.Token); err != nil || code != http.StatusForbidden {
		t.Errorf("/metrics with the token of a ServiceAccount without the role: %d, %v; want 403", code, err)
	}
	eventually(t, time.Minute, "/metrics for the reader", func() error {
		code, body, err := get(tr.Status.Token)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("status %d", code)
		}
		for _, m := range []string{"smaregi_receiver_requests_total", "smaregi_store_condition", "smaregi_pusher_adjustments_total"} {
			if !strings.Contains(body, m) {
				return fmt.Errorf("no %s in /metrics", m)
			}
		}
		return nil
	})
	pf.close()
}
