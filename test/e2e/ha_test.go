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

package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

const (
	postgresEnv = "SMAREGI_TEST_POSTGRES_URL"
	// leaseName is the operator's LeaderElectionID (cmd/main.go).
	leaseName = "smaregi-operator.stocksync.io"
	// leaderSeries is controller-runtime's gauge: 1 on the replica that
	// holds the Lease.
	leaderSeries = `leader_election_master_status{name="` + leaseName + `"}`
)

// TestHighAvailability runs two replicas over one PostgreSQL inventory with
// leader election: both receivers serve, only the leader pulls from Smaregi,
// a send accepted by the follower reaches the leader's engine through
// LISTEN/NOTIFY (the poll interval is an hour, so nothing else explains a
// fresh mirror), and a rolling update — the leader stopped gracefully, then
// a second leader killed outright — fails no send while the survivor takes
// over and the mirror converges again.
func TestHighAvailability(t *testing.T) {
	dsn := e2eDatabase(t)
	const products = 200
	stores := []string{"1", "2"}
	ns := newNamespace(t, "ha")
	s := newShop(t, "e2eha", stores, products)

	newReplica := func(name string) *haReplica {
		cfg := newOperatorConfig(t)
		cfg.inventory = dsn
		cfg.extraArgs = []string{"--leader-elect"}
		return &haReplica{name: name, cfg: cfg}
	}
	a, b := newReplica("A"), newReplica("B")
	a.start(t)
	b.start(t)
	el := &election{ns: a.cfg.install.namespace, identities: map[string]string{}}
	leader := el.waitLeader(t, a, b)
	follower := a
	if leader == a {
		follower = b
	}
	t.Logf("replica %s leads; %s follows", leader.name, follower.name)

	declareStores(t, ns, s, time.Hour, stores...) // only sends can make the mirror fresh
	first := waitReady(t, ns, "store-1")
	waitReady(t, ns, "store-2")
	routeID := first.Status.Receiver.RouteID
	if routeID == "" || !strings.HasSuffix(first.Status.Receiver.URL, "/smaregi/v1/"+routeID) {
		t.Fatalf("status.receiver: url %q, routeID %q", first.Status.Receiver.URL, routeID)
	}
	receiverURL := func(r *haReplica) string { return "http://" + r.cfg.receiverAddr + "/smaregi/v1/" + routeID }
	token := bearerToken(t, ns, "reader", hubapi.StockViewerRole)

	converged := func(t *testing.T, what string, via *haReplica) {
		t.Helper()
		for _, id := range stores {
			name := "store-" + id
			var diff string
			waitFor(t, 60*time.Second, what+": mirror of "+name+" (read via "+via.name+") equal to Smaregi", func() bool {
				diff = mirrorDiff(t, via.op, token, s, ns, name, id)
				return diff == ""
			})
		}
	}
	converged(t, "initial import", follower)

	if !t.Run("sends accepted by the follower reach the leader's engine", func(t *testing.T) {
		haSendTo(t, s, first, receiverURL(follower))
		ringUp(t, s, 100, stores, products, 1)
		if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st := sendStates(s); st[smaregisim.SendSent] == 0 || st[smaregisim.SendFailed] != 0 {
			t.Fatalf("send history: %v (want sends, none failed)", st)
		}
		converged(t, "after 100 sales sent to the follower", follower)
		waitFor(t, 30*time.Second, "the leader to report send→mirror lag", func() bool {
			n, ok := metric(t, leader.op, "smaregi_mirror_send_lag_seconds_count")
			return ok && n > 0
		})
		p50, n := histogramQuantile(t, leader.op, "smaregi_mirror_send_lag_seconds", 0.5)
		p99, _ := histogramQuantile(t, leader.op, "smaregi_mirror_send_lag_seconds", 0.99)
		sendPulls, _ := metric(t, leader.op, `smaregi_mirror_pulls_total{outcome="success",trigger="send"}`)
		t.Logf("leader %s: %.0f send-triggered pulls; send (accepted by %s) → mirror lag over %.0f observations: p50 ≤ %gs, p99 ≤ %gs (bucket bounds)",
			leader.name, sendPulls, follower.name, n, p50, p99)
		if sendPulls == 0 {
			t.Error("the leader counted no send-triggered pull")
		}
		if got := metricSum(t, follower.op, "smaregi_mirror_pulls_total"); got != 0 {
			t.Errorf("follower %s pulled %.0f times; only the leader may sync", follower.name, got)
		}
	}) {
		return
	}

	handover := func(t *testing.T, old, survivor *haReplica, graceful bool, seed int) {
		t.Helper()
		how, stop := "SIGKILL to", old.op.kill
		if graceful {
			how, stop = "SIGTERM to", old.op.stop
		}
		from := len(s.sim.Sends())
		stopped := make(chan struct{})
		go func() { stop(); close(stopped) }()
		// Keep the shop selling, one send at a time, until the survivor
		// leads: every one of these is answered during the hand-over.
		deadline := time.Now().Add(60 * time.Second)
		var during int
		for i := 0; ; i++ {
			if err := haSell(s, seed+i, stores, products); err != nil {
				t.Fatal(err)
			}
			if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
				t.Fatal(err)
			}
			if leads(t, survivor) {
				break
			}
			during++
			if time.Now().After(deadline) {
				t.Fatalf("%s did not take over within 60s of %s %s", survivor.name, how, old.name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		<-stopped
		if graceful && !old.op.cmd.ProcessState.Success() {
			t.Errorf("%s did not exit cleanly on SIGTERM: %s", old.name, old.op.cmd.ProcessState)
		}
		for i := range 10 { // and a few after it
			if err := haSell(s, seed+10000+i, stores, products); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		window := s.sim.Sends()[from:]
		var bad []string
		for _, rec := range window {
			ok := rec.State == smaregisim.SendSent && len(rec.Attempts) > 0
			for _, at := range rec.Attempts {
				ok = ok && at.Error == "" && at.StatusCode/100 == 2
			}
			if !ok {
				bad = append(bad, fmt.Sprintf("send %s: %s %+v", rec.ID, rec.State, rec.Attempts))
			}
		}
		t.Logf("%s %s: %d sends to %s, %d of them answered before %s led; %d not answered 2xx",
			how, old.name, len(window), survivor.name, during, survivor.name, len(bad))
		if len(bad) > 0 {
			if len(bad) > 5 {
				bad = append(bad[:5], fmt.Sprintf("… %d more", len(bad)-5))
			}
			t.Errorf("sends failed during the hand-over: %s", strings.Join(bad, "; "))
		}
		// After SIGKILL the survivor must wait out the Lease (seconds), so
		// sends answered meanwhile are made to exist, and missing them means
		// the hand-over was not exercised. A graceful stop releases the
		// Lease at once and the survivor may lead before the first send is
		// answered: nothing to require there, the window is checked above.
		switch {
		case during == 0 && !graceful:
			t.Errorf("no send was answered while %s was not yet leading; the hand-over was not exercised", survivor.name)
		case during == 0:
			t.Logf("%s led before the first send after the SIGTERM was answered", survivor.name)
		}
		if got := el.waitLeader(t, survivor); got != survivor {
			t.Fatalf("%s leads, want %s", got.name, survivor.name)
		}
		converged(t, "after "+how+" "+old.name, survivor)
		if n := metricSum(t, survivor.op, "smaregi_mirror_pulls_total"); n == 0 {
			t.Errorf("the new leader %s has not pulled", survivor.name)
		}
		// Logged, not asserted: the receiver's DurableSink notes sends while the
		// replica follows (its engine not running), and they are observed
		// when it starts leading, with a lag as long as it followed.
		p50, n := histogramQuantile(t, survivor.op, "smaregi_mirror_send_lag_seconds", 0.5)
		top, _ := histogramQuantile(t, survivor.op, "smaregi_mirror_send_lag_seconds", 1)
		t.Logf("new leader %s: send→mirror lag over %.0f observations: p50 ≤ %gs, max ≤ %gs (bucket bounds)", survivor.name, n, p50, top)
	}

	if !t.Run("rolling update: the leader stopped gracefully", func(t *testing.T) {
		// Sends already go to the follower, the replica that survives.
		handover(t, leader, follower, true, 1000)
	}) {
		return
	}
	leader, follower = follower, leader

	// The old leader comes back (same flags, ports and database), started
	// here so that it outlives the subtest and its log is checked below.
	follower.start(t)
	if !t.Run("the old leader back as a follower; then the leader killed", func(t *testing.T) {
		if got := el.waitLeader(t, leader, follower); got != leader {
			t.Fatalf("%s leads after %s came back, want %s", got.name, follower.name, leader.name)
		}
		haSendTo(t, s, first, receiverURL(follower))
		ringUp(t, s, 30, stores, products, 3)
		if err := s.sim.WaitSendsIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		converged(t, "after 30 sales sent to the restarted follower", follower)
		if got := metricSum(t, follower.op, "smaregi_mirror_pulls_total"); got != 0 {
			t.Errorf("follower %s pulled %.0f times; only the leader may sync", follower.name, got)
		}
		// SIGKILL releases nothing: the survivor waits out the Lease while
		// its receiver keeps taking sends.
		handover(t, leader, follower, false, 2000)
	}) {
		return
	}

	// Secrets never reach any replica's log.
	key := readReceiverKey(t, first)
	for _, r := range []*haReplica{a, b} {
		for _, p := range r.logs {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if log := string(data); strings.Contains(log, key) || strings.Contains(log, url.QueryEscape(key)) ||
				strings.Contains(log, s.token) {
				t.Errorf("a log of replica %s carries a secret", r.name)
			}
		}
	}
}

// haReplica is one replica of the operator; it may be run more than once.
type haReplica struct {
	name string
	cfg  operatorConfig
	op   *operator
	logs []string
}

func (r *haReplica) start(t *testing.T) {
	t.Helper()
	r.op = startOperator(t, r.cfg)
	r.logs = append(r.logs, r.op.logPath)
}

// leads reports whether the replica says it holds the Lease.
func leads(t *testing.T, r *haReplica) bool {
	t.Helper()
	v, ok := metric(t, r.op, leaderSeries)
	return ok && v == 1
}

// election maps the Lease's holderIdentity (hostname_uuid, the same
// hostname for every replica here) to replicas by the leader gauge.
type election struct {
	ns         string
	identities map[string]string // holderIdentity → replica name
}

func (e *election) holder(t *testing.T) string {
	lease, err := clientset.CoordinationV1().Leases(e.ns).Get(context.Background(), leaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return ""
	}
	if err != nil {
		t.Fatalf("reading the Lease: %v", err)
	}
	if lease.Spec.HolderIdentity == nil {
		return ""
	}
	return *lease.Spec.HolderIdentity
}

// waitLeader waits until exactly one of the running replicas leads and the
// Lease names a holder, and checks that the holder is the same replica it
// was the last time that identity held the Lease.
func (e *election) waitLeader(t *testing.T, running ...*haReplica) *haReplica {
	t.Helper()
	var leader *haReplica
	var holder string
	waitFor(t, 60*time.Second, "one replica to hold the Lease", func() bool {
		leader = nil
		for _, r := range running {
			if leads(t, r) {
				if leader != nil {
					t.Fatalf("replicas %s and %s both lead", leader.name, r.name)
				}
				leader = r
			}
		}
		if leader == nil {
			return false
		}
		holder = e.holder(t)
		return holder != ""
	})
	if prev, ok := e.identities[holder]; ok && prev != leader.name {
		t.Fatalf("the Lease holder was %s and is now reported by %s", prev, leader.name)
	}
	e.identities[holder] = leader.name
	return leader
}

// metricSum adds every sample of a metric family (all label sets).
func metricSum(t *testing.T, op *operator, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + op.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer func() { _ = resp.Body.Close() }()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// haSendTo points the shop's sends at the given receiver URL with the
// store's key, as a shop would after a change of 送信URL.
func haSendTo(t *testing.T, s *shop, st *smaregiv1alpha1.SmaregiStore, receiverURL string) {
	t.Helper()
	ref := st.Status.Receiver.KeySecretRef
	secret := getSecret(t, st.Namespace, ref.Name)
	err := s.sim.SetSendConfig(smaregisim.SendConfig{URL: receiverURL,
		Params:    map[string]string{st.Status.Receiver.ParameterName: string(secret.Data[ref.Key])},
		Functions: []string{"transaction_send", "stock_send"}})
	if err != nil {
		t.Fatal(err)
	}
}

// haSell rings up one deterministic sale; safe off the test goroutine.
func haSell(s *shop, i int, stores []string, products int) error {
	line := smaregisim.SaleLine{ProductID: strconv.Itoa(smaregisim.FirstProductID + (i*37)%products), Quantity: int64(i%3 + 1)}
	if _, err := s.sim.Sale(stores[i%len(stores)], []smaregisim.SaleLine{line}); err != nil {
		return fmt.Errorf("sale %d: %w", i, err)
	}
	return nil
}

// e2eDatabase creates a database of its own for one test, so runs never
// collide and LISTEN channels stay separate, and drops it afterwards.
func e2eDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv(postgresEnv)
	if base == "" {
		t.Skip(postgresEnv + " not set; run make test")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		t.Fatalf("%s must be a postgres:// URL", postgresEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("connecting to %s: %v", inventory.RedactURL(base), err)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "e2e_ha_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating database: %v", err)
	}
	t.Cleanup(func() { // runs after the replicas' cleanups stopped them
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("connecting to drop %s: %v", name, err)
			return
		}
		defer func() { _ = admin.Close(context.Background()) }()
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
