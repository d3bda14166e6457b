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
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// haRelease is the PostgreSQL release: two replicas, leader election.
const haRelease = "smaregi-ha"

// leaseName is the operator's leader election Lease (cmd/main.go).
const leaseName = "smaregi-operator.stocksync.io"

// leaseDuration and retryPeriod are controller-runtime's defaults, which
// the operator keeps. A candidate counts a Lease's duration from when it
// saw the last renewal, and looks every retryPeriod stretched by up to
// client-go's jitter factor (1.2): so a crashed leader's Lease is taken at
// most leaseDuration plus two such waits after its last renewal.
const (
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
	// maxRetryWait is retryPeriod with client-go's leaderelection.JitterFactor.
	maxRetryWait = retryPeriod + retryPeriod*12/10
)

// postgresHA installs the chart with inventory.type postgres and two
// replicas (after the bolt release is uninstalled; the stores stay), stops
// the leader's Pod while it pushes, gracefully and by a crash, and checks
// that another process takes over within the lease time and that the
// adjustment is applied once.
func (c *cluster) postgresHA(t *testing.T) {
	ctx := context.Background()
	dsn := haDatabase(t)

	receiverPort := freePort(t, "127.0.0.1")
	c.prepareRelease(t, haRelease, false)
	// The chart's CRD is kept from the bolt release (crds.keep), and
	// helm does not adopt an object of another release: crds.enabled=false,
	// as for a second install of the chart in any cluster.
	values := c.values(fmt.Sprintf("http://127.0.0.1:%d", receiverPort), map[string]any{
		"replicas":  2,
		"inventory": map[string]any{"type": "postgres", "postgres": map[string]any{"dsn": dsn}},
		"crds":      map[string]any{"enabled": false},
	})
	start := time.Now()
	helm(t, "install", haRelease, filepath.Join(env.repo, "charts", "smaregi-operator"), "-n", haRelease,
		"-f", writeValues(t, "ha.json", values), "--wait", "--timeout", "4m")
	t.Logf("two replicas Available after %s", time.Since(start).Round(time.Second))
	c.checkDeployment(t, haRelease, 2, false)

	// The stores of the bolt release are adopted: Ready again, their
	// mirror rebuilt in PostgreSQL.
	c.waitReady(t, legacyStore)

	hub := startPortForward(t, t, haRelease, fullname(haRelease)+"-hub-api", 0, 80)
	hc := newHubClient(hub, c.ca, fullname(haRelease)+"-hub-api."+haRelease+".svc", c.token)
	eventually(t, time.Minute, "the mirror in PostgreSQL", func() error {
		s, err := hc.stock(ctx, shops, legacyStore)
		if err == nil && s.SKUs == 0 {
			err = fmt.Errorf("no rows yet")
		}
		return err
	})

	// Hand-over while a push is in flight: the simulator holds every
	// stock_upd without answering and commits it only after the request
	// has ended (a slow gateway finishing an abandoned call), so the
	// leader stops with an attempt whose outcome it never learnt. The new
	// leader must find it applied in the stock history and not send it
	// again.
	c.legacy.call(t, http.MethodPut, "/_sim/faults", map[string]any{"lateCommitRate": 1, "lateCommitDelay": "2s"}, nil)
	t.Cleanup(func() { _ = c.legacy.try(http.MethodPut, "/_sim/faults", map[string]any{}, nil) })

	for _, step := range []struct {
		id, product string
		stop        string
	}{
		// What a user does: the Pod stops gracefully (preStop, then the
		// leader releases the Lease on its way out).
		{"ha-delete", productHA, "delete"},
		// A crash: the process is killed, the Lease is not released and
		// must expire first.
		{"ha-crash", productHACrash, "kill"},
	} {
		leader := c.leaseRecord(t)
		if leader.identity == "" {
			t.Fatal("no leader")
		}
		c.inFlight(t, hc, step.id, step.product)
		switch step.stop {
		case "delete":
			if _, err := kubectl("-n", haRelease, "delete", "pod", leader.pod(), "--wait=false"); err != nil {
				t.Fatal(err)
			}
		case "kill":
			c.killContainer(t, haRelease, leader.pod())
		}
		gap := c.handover(t, leader)
		t.Logf("%s: leader %s → new leader after %s without one", step.stop, leader.pod(), gap.Round(100*time.Millisecond))
		// The Lease expires leaseDuration after a candidate saw its last
		// renewal (up to one wait late), and is taken at the next try
		// (up to one more); 3 s for the API calls of a loaded machine.
		if limit := leaseDuration + 2*maxRetryWait + 3*time.Second; gap > limit {
			t.Errorf("%s: the Lease was unheld for %s, more than the lease time allows (%s)", step.stop, gap.Round(100*time.Millisecond), limit)
		}
		c.waitApplied(t, hc, legacyStore, step.id)
		c.appliedOnce(t, step.product, -1)
	}
	// What the other release applied was not applied again from here.
	for _, p := range []string{productHub, productRestart, productUpgrade} {
		if rows := c.legacy.pushedRows(t, "1", p); len(rows) != 1 {
			t.Errorf("%s: %d pushed history rows, want 1", p, len(rows))
		}
	}

	hub.close()
	c.uninstall(t, haRelease)
}

// inFlight submits an adjustment of -1 and waits until its push has been
// sent and not answered (awaitingConfirmation): the simulator holds it.
func (c *cluster) inFlight(t *testing.T, hc *hubClient, id, product string) {
	t.Helper()
	if _, err := hc.adjust(context.Background(), shops, legacyStore, id, product, -1); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, id+" in flight", func() error {
		a, err := hc.adjustment(context.Background(), shops, legacyStore, id)
		if err != nil {
			return err
		}
		if a.State != "pending" || !a.AwaitingConfirmation {
			return fmt.Errorf("state %q, awaitingConfirmation %v", a.State, a.AwaitingConfirmation)
		}
		return nil
	})
	if n := len(c.legacy.pushedRows(t, "1", product)); n != 0 {
		t.Fatalf("%s: %d history rows while the push is held", id, n)
	}
}

// killContainer kills the operator container of a Pod with SIGKILL, as a
// crash or the OOM killer would: nothing of the process runs on.
func (c *cluster) killContainer(t *testing.T, ns, pod string) {
	t.Helper()
	p := &corev1.Pod{}
	must(t, c.kube.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: pod}, p))
	id, ok := strings.CutPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://")
	if !ok {
		t.Fatalf("Pod %s: container ID %q", pod, p.Status.ContainerStatuses[0].ContainerID)
	}
	if out, err := exec.Command("ctr", "-a", env.ctrdSock, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", id).CombinedOutput(); err != nil {
		t.Fatalf("kill the container of %s: %v: %s", pod, err, out)
	}
}

// leaseRecord is who holds the operator's Lease and when it last renewed.
type leaseRecord struct {
	identity string // "<pod>_<uuid>"
	renewed  time.Time
	acquired time.Time
}

func (l leaseRecord) pod() string {
	pod, _, _ := strings.Cut(l.identity, "_")
	return pod
}

func (c *cluster) leaseRecord(t *testing.T) leaseRecord {
	t.Helper()
	var r leaseRecord
	eventually(t, time.Minute, "the Lease", func() error {
		l := &coordinationv1.Lease{}
		if err := c.kube.Get(context.Background(), types.NamespacedName{Namespace: haRelease, Name: leaseName}, l); err != nil {
			return err
		}
		r = leaseRecord{}
		if l.Spec.HolderIdentity != nil {
			r.identity = *l.Spec.HolderIdentity
		}
		if l.Spec.RenewTime != nil {
			r.renewed = l.Spec.RenewTime.Time
		}
		if l.Spec.AcquireTime != nil {
			r.acquired = l.Spec.AcquireTime.Time
		}
		return nil
	})
	return r
}

// handover follows the Lease until another identity (another Pod, or the
// killed one's restarted process) holds it, and returns how long no one
// did: from the old holder's last renewal seen to the new one's
// acquisition.
func (c *cluster) handover(t *testing.T, old leaseRecord) time.Duration {
	t.Helper()
	last := old.renewed
	var next leaseRecord
	deadline := time.Now().Add(3 * time.Minute)
	for {
		next = c.leaseRecord(t)
		if next.identity == old.identity && next.renewed.After(last) {
			last = next.renewed
		}
		if next.identity != "" && next.identity != old.identity {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new leader after 3m: Lease holder %q", next.identity)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return next.acquired.Sub(last)
}

// haDatabase returns the DSN the operator's Pods use: a fresh database in
// the PostgreSQL of hack/postgres.sh, which listens on 127.0.0.1 only; a
// forwarder on the bridge address carries the Pods' connections to it, so
// it stays local and its loopback-only trust rules stay as they are.
func haDatabase(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	base := os.Getenv("SMAREGI_TEST_POSTGRES_URL")
	if base == "" {
		out, err := runOut(exec.Command(filepath.Join(env.repo, "hack", "postgres.sh"), "start"))
		if err != nil {
			t.Fatalf("hack/postgres.sh start: %v", err)
		}
		base = strings.TrimSpace(out)
	}
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connect to PostgreSQL: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	db := fmt.Sprintf("smaregi_node_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), base)
		if err != nil {
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)")
	})

	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	fwd := forward(t, u.Host)
	u.Host = fwd
	u.Path = "/" + db
	return u.String()
}

// forward relays TCP connections from the bridge address to target until
// the test ends, and returns the address it listens on.
func forward(t *testing.T, target string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(bridgeIP, "0"))
	if err != nil {
		t.Fatalf("listen on the bridge: %v", err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			in, err := l.Accept()
			if err != nil {
				return
			}
			out, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { defer wg.Done(); _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// manifestObject is one object of a release's manifest.
type manifestObject struct {
	obj *unstructured.Unstructured
}

// parseManifest splits `helm get manifest` into its objects.
func parseManifest(t *testing.T, manifest string) []manifestObject {
	t.Helper()
	var objs []manifestObject
	for _, doc := range strings.Split(manifest, "\n---") {
		if strings.TrimSpace(strings.ReplaceAll(doc, "---", "")) == "" {
			continue
		}
		m := map[string]any{}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("release manifest: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, manifestObject{obj: &unstructured.Unstructured{Object: m}})
	}
	return objs
}
