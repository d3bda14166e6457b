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
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// haRelease is the PostgreSQL release: two replicas, leader election.
const haRelease = "smaregi-ha"

// leaseName is the operator's leader election Lease (cmd/main.go).
const leaseName = "smaregi-operator.stocksync.io"

// leaseDuration and retryPeriod are controller-runtime's defaults, which
// the operator keeps: a crashed leader's Lease expires after leaseDuration
// and the other replica tries every retryPeriod.
const (
	leaseDuration = 15 * time.Second
	retryPeriod   = 2 * time.Second
)

// postgresHA installs the chart with inventory.type postgres and two
// replicas (after the bolt release is uninstalled; the stores stay), kills
// the leader's Pod and checks that the other replica takes over within the
// lease time and that a pending adjustment is applied once.
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

	leader := c.leader(t)
	t.Logf("leader: %s", leader)
	c.suspend(t, legacyStore, true)
	c.pending(t, hc, "ha-1", productHA)

	// A crash, not a graceful stop: the Lease is not released, so the
	// other replica must wait for it to expire.
	killed := time.Now()
	if _, err := kubectl("-n", haRelease, "delete", "pod", leader, "--grace-period=1", "--wait=false"); err != nil {
		t.Fatal(err)
	}
	var next string
	eventually(t, leaseDuration+retryPeriod+time.Minute, "a new leader", func() error {
		next = c.leaseHolder(t)
		if next == "" || next == leader {
			return fmt.Errorf("holder %q", next)
		}
		return nil
	})
	handover := time.Since(killed)
	t.Logf("leader %s → %s in %s", leader, next, handover.Round(100*time.Millisecond))
	// The old leader had up to a second to stop, then its Lease (renewed
	// at most retryPeriod before) had to expire; polling adds a second.
	if limit := time.Second + leaseDuration + retryPeriod + 2*time.Second; handover > limit {
		t.Errorf("hand-over took %s, more than the lease time allows (%s)", handover.Round(100*time.Millisecond), limit)
	}

	c.stillPending(t, hc, "ha-1")
	c.suspend(t, legacyStore, false)
	c.waitApplied(t, hc, legacyStore, "ha-1")
	c.appliedOnce(t, productHA, -1)
	// What the other release applied was not applied again from here.
	for _, p := range []string{productHub, productRestart, productUpgrade} {
		if rows := c.legacy.pushedRows(t, "1", p); len(rows) > 1 {
			t.Errorf("%s pushed %d times", p, len(rows))
		}
	}

	hub.close()
	c.uninstall(t, haRelease)
}

// leader returns the name of the Pod holding the Lease.
func (c *cluster) leader(t *testing.T) string {
	t.Helper()
	var holder string
	eventually(t, time.Minute, "a leader", func() error {
		holder = c.leaseHolder(t)
		if holder == "" {
			return fmt.Errorf("no holder")
		}
		return nil
	})
	return holder
}

// leaseHolder returns the Pod named by the Lease's holder identity
// ("<pod>_<uuid>"), or "".
func (c *cluster) leaseHolder(t *testing.T) string {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := c.kube.Get(context.Background(), types.NamespacedName{Namespace: haRelease, Name: leaseName}, l); err != nil {
		return ""
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	pod, _, _ := strings.Cut(*l.Spec.HolderIdentity, "_")
	return pod
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
