//go:build bench

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

// The scale benchmark (`make bench-scale`): issue 13's "10,000
// SmaregiStores × 1,000 SKUs in one operator, on bolt and on PostgreSQL".
// The operator binary against a real kube-apiserver and etcd (envtest) and
// one simulator per contract over HTTP on 127.0.0.1 (in this test process,
// so their memory is not the operator's). Sizes come from the environment,
// because 10,000 stores (10,000,000 rows) do not fit every machine's time:
//
//	SMAREGI_SCALE_STORES     SmaregiStores in all (default 1000)
//	SMAREGI_SCALE_CONTRACTS  contracts they are spread over (default one per 100 stores)
//	SMAREGI_SCALE_PRODUCTS   SKUs per store (default 1000)
//	SMAREGI_SCALE_IDLE       how long idle CPU and calls are measured (default 1m)
//	SMAREGI_SCALE_SETTLE     how long to wait after the import before that
//	                         (default 0: right after it, while the poll's
//	                         stretch is still building up; 15m lets it reach
//	                         its cap of 8 × the 1m poll)
//	SMAREGI_SCALE_BACKENDS   inventories to run, in order (default bolt,postgres)
//	SMAREGI_SCALE_OPERATOR_ARGS  extra operator flags, space-separated (to compare
//	                         settings, e.g. --smaregistore-concurrent-reconciles=1)
//	SMAREGI_SCALE_MEMORY_LIMIT   if set (a Kubernetes quantity, e.g. 1Gi), the
//	                         operator runs in a memory cgroup of its own with
//	                         that limit and GOMEMLIMIT set to it, as in a Pod
//	                         with resources.limits.memory (needs root or a
//	                         delegated cgroup; memlimit_test.go)
//	SMAREGI_SCALE_HEAP_PROFILE   if set, the operator's heap profile after the
//	                         import is written to this path plus -BACKEND.pb.gz
//	                         (go tool pprof -sample_index=inuse_space FILE)

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// BenchmarkScale reports, per inventory backend:
//   - stores, contracts: the sizes run;
//   - ready-s: from the first SmaregiStore created until every one is
//     Ready; imported-s: until every one's status shows all its SKUs
//     imported by a full sync;
//   - limiter-floor-s: the least import time the per-contract rate limiter
//     (--smaregi-rate-limit 10 calls a second, --smaregi-rate-burst 10)
//     allows for the Smaregi calls the import made (import-calls/store):
//     (calls / contracts - 10) / 10;
//     import-limiter-wait-ms: the mean wait per call for it;
//   - rss-MB and peak-rss-MB: the operator process's resident set after the
//     import, and its peak (VmHWM), bbolt's mapped pages included;
//     rss-anon-MB and rss-file-MB split it (anonymous memory; file-backed
//     pages: bbolt's mapped file, the binary); heap-inuse-MB is the Go heap;
//   - heap-live-KB/store: the Go heap live after a forced GC once
//     everything is imported, less the same before the first store, per
//     store (what each store costs the operator in memory, bbolt's file
//     aside);
//   - scrape-alloc-KB/store: what one scrape of /metrics allocates in
//     the operator, per store (garbage, but the heap grows to hold it);
//   - goroutines and goroutines/store: the operator's go_goroutines after
//     the import, and its growth over the count before any store existed,
//     per store;
//   - idle-cpu-%: the operator's CPU (user+system, % of one core) over
//     SMAREGI_SCALE_IDLE once everything is imported; idle-calls/store/h:
//     the Smaregi calls it made meanwhile, per store and hour (the poll's
//     stretch builds up over the first minutes, so a short window
//     overstates the steady rate; BenchmarkIdleCalls in internal/mirror has
//     that);
//   - bolt-file-MB: the size of bbolt's file after the idle window;
//   - with SMAREGI_SCALE_MEMORY_LIMIT: limit-MB, cgroup-peak-MB (the
//     cgroup's peak charge: anonymous memory and page cache, bbolt's file
//     among it), oom-kills, and major-faults (pages the operator had to read
//     back from disk: what the limit cost it).
func BenchmarkScale(b *testing.B) {
	stores := envInt(b, "SMAREGI_SCALE_STORES", 1000)
	contracts := envInt(b, "SMAREGI_SCALE_CONTRACTS", max(1, stores/100))
	products := envInt(b, "SMAREGI_SCALE_PRODUCTS", 1000)
	idle := envDuration(b, "SMAREGI_SCALE_IDLE", time.Minute)
	settle := envDuration(b, "SMAREGI_SCALE_SETTLE", 0)
	if contracts > stores {
		b.Fatalf("%d contracts for %d stores", contracts, stores)
	}
	var memLimit int64
	if v := os.Getenv("SMAREGI_SCALE_MEMORY_LIMIT"); v != "" {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Value() <= 0 {
			b.Fatalf("SMAREGI_SCALE_MEMORY_LIMIT: %q is not a positive quantity such as 1Gi", v)
		}
		memLimit = q.Value()
	}
	backends := strings.Split(cmp.Or(os.Getenv("SMAREGI_SCALE_BACKENDS"), "bolt,postgres"), ",")
	for i, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			for range b.N {
				scale(b, backend, stores, contracts, products, settle, idle, memLimit, i < len(backends)-1)
			}
		})
	}
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s: %q is not a duration such as 15m", name, v)
	}
	return d
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// scaleContract is one contract: its simulator, its namespace, and the
// store IDs of its SmaregiStores.
type scaleContract struct {
	shop *shop
	ns   string
	ids  []string
}

func scale(b *testing.B, backend string, stores, contracts, products int, settle, idle time.Duration, memLimit int64, more bool) {
	if backend != "bolt" && backend != "postgres" {
		b.Fatalf("SMAREGI_SCALE_BACKENDS: %q is neither bolt nor postgres", backend)
	}
	cfg := newOperatorConfig(b)
	if backend == "postgres" {
		cfg.inventory = e2eDatabase(b)
	}
	pprofAddr := freeAddr(b)
	cfg.extraArgs = append([]string{"--pprof-bind-address", pprofAddr}, strings.Fields(os.Getenv("SMAREGI_SCALE_OPERATOR_ARGS"))...)
	// Stores spread evenly: contract c gets every contracts-th store.
	cs := make([]*scaleContract, contracts)
	for c := range cs {
		n := stores / contracts
		if c < stores%contracts {
			n++
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = strconv.Itoa(i + 1)
		}
		cs[c] = &scaleContract{ids: ids}
	}
	var wg sync.WaitGroup
	for c, sc := range cs {
		wg.Go(func() { // building the rows takes a while at 1,000,000 a contract
			sc.shop = newShopAged(b, fmt.Sprintf("skscale%d", c), sc.ids, products, time.Hour)
		})
	}
	wg.Wait()
	for _, sc := range cs {
		sc.ns = newNamespace(b, "scale")
	}

	var cg *memCgroup
	if memLimit > 0 {
		cg = newMemCgroup(b, memLimit)
		// As config/manager/manager.yaml sets it from the container's limit.
		cfg.env = append(cfg.env, "GOMEMLIMIT="+strconv.FormatInt(memLimit, 10))
		cfg.cgroupProcs = cg.procs()
	}
	op := startOperator(b, cfg)
	pid := op.cmd.Process.Pid
	waitFor(b, time.Minute, "the operator's metrics", func() bool {
		_, ok := metric(b, op, "go_goroutines")
		return ok
	})
	goroutinesBefore, _ := metric(b, op, "go_goroutines")
	liveBefore := liveHeap(b, op, pprofAddr, "")
	callsBefore := smaregiCalls(b, op)
	waitBefore := limiterWait(b, op)

	start := time.Now()
	createScaleStores(b, cs)
	b.ReportMetric(time.Since(start).Seconds(), "create-s")

	var readyAt, importedAt time.Duration
	deadline := start.Add(3 * time.Hour)
	for readyAt == 0 || importedAt == 0 {
		if time.Now().After(deadline) {
			b.Fatalf("not all %d stores ready and imported after 3 h", stores)
		}
		time.Sleep(2 * time.Second)
		select {
		case <-op.exited:
			oom := "unknown"
			if cg != nil {
				oom = strconv.FormatFloat(cg.oomKills(), 'f', 0, 64)
			}
			b.Fatalf("the operator exited during the import (OOM kills in its cgroup: %s); log: %s", oom, op.logPath)
		default:
		}
		ready, imported := countScaleStores(b, cs, int64(products))
		if ready == stores && readyAt == 0 {
			readyAt = time.Since(start)
		}
		if imported == stores && importedAt == 0 {
			importedAt = time.Since(start)
		}
		// Progress on stderr as it happens (b.Logf is held until the end),
		// so that a run stopped early still shows how far it got.
		fmt.Fprintf(os.Stderr, "scale %s: %d/%d ready, %d/%d imported after %s; operator RSS %.0f MB (anonymous %.0f, file-backed %.0f)\n",
			backend, ready, stores, imported, stores, time.Since(start).Round(time.Second),
			procField(pid, "VmRSS:"), procField(pid, "RssAnon:"), procField(pid, "RssFile:"))
	}
	calls := smaregiCalls(b, op) - callsBefore
	b.ReportMetric(float64(stores), "stores")
	b.ReportMetric(float64(contracts), "contracts")
	b.ReportMetric(readyAt.Seconds(), "ready-s")
	b.ReportMetric(importedAt.Seconds(), "imported-s")
	// The operator's defaults: 10 calls a second per contract, burst 10.
	b.ReportMetric(max(0, calls/float64(contracts)-10)/10, "limiter-floor-s")
	b.ReportMetric(calls/float64(stores), "import-calls/store")
	b.ReportMetric(limiterWait(b, op).sub(waitBefore), "import-limiter-wait-ms")
	goroutines, _ := metric(b, op, "go_goroutines")
	b.ReportMetric(goroutines, "goroutines")
	b.ReportMetric((goroutines-goroutinesBefore)/float64(stores), "goroutines/store")
	b.ReportMetric(procField(pid, "VmRSS:"), "rss-MB")
	// RSS splits into anonymous memory (the Go heap, stacks, runtime) and
	// file-backed pages (bbolt's memory-mapped file, the binary).
	b.ReportMetric(procField(pid, "RssAnon:"), "rss-anon-MB")
	b.ReportMetric(procField(pid, "RssFile:"), "rss-file-MB")
	heap, _ := metric(b, op, "go_memstats_heap_inuse_bytes")
	b.ReportMetric(heap/(1<<20), "heap-inuse-MB")
	var profile string
	if p := os.Getenv("SMAREGI_SCALE_HEAP_PROFILE"); p != "" {
		profile = p + "-" + backend + ".pb.gz"
	}
	b.ReportMetric((liveHeap(b, op, pprofAddr, profile)-liveBefore)/1024/float64(stores), "heap-live-KB/store")
	// What one /metrics scrape allocates (per store: the store gauges are
	// most of the page), the operator's other work in between included.
	alloc0, _ := metric(b, op, "go_memstats_alloc_bytes_total")
	alloc1, _ := metric(b, op, "go_memstats_alloc_bytes_total")
	b.ReportMetric((alloc1-alloc0)/1024/float64(stores), "scrape-alloc-KB/store")

	if settle > 0 {
		fmt.Fprintf(os.Stderr, "scale %s: imported; settling for %s before the idle window\n", backend, settle)
		time.Sleep(settle)
	}
	cpu0, calls0 := procCPU(b, pid), smaregiCalls(b, op)
	time.Sleep(idle)
	cpu, idleCalls := procCPU(b, pid)-cpu0, smaregiCalls(b, op)-calls0
	b.ReportMetric(100*cpu.Seconds()/idle.Seconds(), "idle-cpu-%")
	b.ReportMetric(idleCalls/float64(stores)/idle.Hours(), "idle-calls/store/h")
	b.ReportMetric(procField(pid, "VmRSS:"), "idle-rss-MB")
	b.ReportMetric(procField(pid, "VmHWM:"), "peak-rss-MB")
	if path, ok := strings.CutPrefix(cfg.inventory, "bolt://"); ok {
		if fi, err := os.Stat(path); err == nil {
			b.ReportMetric(float64(fi.Size())/(1<<20), "bolt-file-MB")
		}
	}
	if cg != nil {
		b.ReportMetric(float64(memLimit)/(1<<20), "limit-MB")
		// A figure the kernel does not give is left out (the summary then
		// says "not measured"), never reported as a passing -1.
		if v := cg.peakMB(); v >= 0 {
			b.ReportMetric(v, "cgroup-peak-MB")
		}
		if v := cg.oomKills(); v >= 0 {
			b.ReportMetric(v, "oom-kills")
		}
		b.ReportMetric(procMajorFaults(b, pid), "major-faults")
	}

	if !more {
		return
	}
	// The next backend's operator watches every namespace: delete this
	// run's stores while this operator still runs to finalize them.
	ctx := context.Background()
	for _, sc := range cs {
		if err := kube.DeleteAllOf(ctx, &smaregiv1alpha1.SmaregiStore{}, client.InNamespace(sc.ns)); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, 30*time.Minute, "this run's SmaregiStores to be deleted", func() bool {
		return len(scaleStores(b, cs)) == 0
	})
}

// liveHeap forces a GC in the operator (its heap profile with gc=1) and
// returns the bytes then allocated (go_memstats_heap_alloc_bytes): the live
// heap, give or take what the scrape allocates. With a path, the profile is
// written there.
func liveHeap(b *testing.B, op *operator, pprofAddr, path string) float64 {
	b.Helper()
	resp, err := http.Get("http://" + pprofAddr + "/debug/pprof/heap?gc=1")
	if err != nil {
		b.Fatalf("operator heap profile: %v", err)
	}
	data, err := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("operator heap profile: %s, %v", resp.Status, err)
	}
	if path != "" {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "scale: heap profile in %s\n", path)
	}
	v, ok := metric(b, op, "go_memstats_heap_alloc_bytes")
	if !ok {
		b.Fatal("no go_memstats_heap_alloc_bytes in the operator's metrics")
	}
	return v
}

// createScaleStores creates each contract's credentials Secret and its
// SmaregiStores (default sync settings), eight at a time.
func createScaleStores(b *testing.B, cs []*scaleContract) {
	ctx := context.Background()
	type item struct {
		sc *scaleContract
		id string
	}
	work := make(chan item)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range 8 {
		wg.Go(func() {
			for it := range work {
				st := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: it.sc.ns, Name: "store-" + it.id}}
				st.Spec.ContractID = it.sc.shop.contract
				st.Spec.StoreID = it.id
				st.Spec.Endpoint = it.sc.shop.url
				st.Spec.CredentialsRef.Name = "smaregi-credentials"
				if err := kube.Create(ctx, st); err != nil {
					mu.Lock()
					firstErr = firstOf(firstErr, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, sc := range cs {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: sc.ns, Name: "smaregi-credentials",
			Labels: map[string]string{smaregiv1alpha1.CredentialsLabel: "true"}},
			StringData: map[string]string{"accessToken": sc.shop.token}}
		if err := kube.Create(ctx, secret); err != nil {
			b.Fatal(err)
		}
	}
	// Round robin over the contracts, as a fleet is rolled out.
	for i := 0; ; i++ {
		more := false
		for _, sc := range cs {
			if i < len(sc.ids) {
				work <- item{sc, sc.ids[i]}
				more = true
			}
		}
		if !more {
			break
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		b.Fatalf("creating SmaregiStores: %v", firstErr)
	}
}

func firstOf(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// countScaleStores counts the SmaregiStores that are Ready and those whose
// status shows every SKU imported by a full sync.
func countScaleStores(b *testing.B, cs []*scaleContract, products int64) (ready, imported int) {
	for _, st := range scaleStores(b, cs) {
		if apimeta.IsStatusConditionTrue(st.Status.Conditions, smaregiv1alpha1.ReadyCondition) {
			ready++
		}
		if inv := st.Status.Inventory; inv != nil && inv.LastFullSyncTime != nil && inv.SKUs == products {
			imported++
		}
	}
	return ready, imported
}

// scaleStores lists the SmaregiStores of this run's namespaces.
func scaleStores(b *testing.B, cs []*scaleContract) []smaregiv1alpha1.SmaregiStore {
	ours := map[string]bool{}
	for _, sc := range cs {
		ours[sc.ns] = true
	}
	var list smaregiv1alpha1.SmaregiStoreList
	if err := kube.List(context.Background(), &list); err != nil {
		b.Fatal(err)
	}
	out := list.Items[:0]
	for _, st := range list.Items {
		if ours[st.Namespace] {
			out = append(out, st)
		}
	}
	return out
}

// procField reads one kB field of /proc/PID/status, in MB.
func procField(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// procStat returns the fields of /proc/PID/stat after the command name
// (which is in parentheses and may hold spaces): field 0 is the state.
func procStat(b *testing.B, pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	return strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
}

// procMajorFaults is the process's major page faults: pages it touched that
// had to be read from disk.
func procMajorFaults(b *testing.B, pid int) float64 {
	n, _ := strconv.ParseFloat(procStat(b, pid)[9], 64)
	return n
}

// procCPU is the process's user and system time (/proc/PID/stat, in
// clock ticks of 1/100 s, the Linux default).
func procCPU(b *testing.B, pid int) time.Duration {
	f := procStat(b, pid)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
