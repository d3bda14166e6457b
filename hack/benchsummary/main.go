// Command benchsummary reads `go test -bench` output (files named on the
// command line, or standard input) and prints one table of the design's
// and issue 13's targets: the measured value of each, and pass or miss.
// `make bench` runs it last. What each benchmark measures, and on what
// machine, is in docs/benchmarks.md; a target whose benchmark did not run
// (skipped, or not built with the bench tag) says so rather than passing.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// target is one row of the table: a metric (b.ReportMetric unit) of one
// benchmark (its name without the -GOMAXPROCS suffix), and its bound. A
// zero op is a figure reported without a target.
type target struct {
	what, bench, unit string
	op                string // "<", "<=", ">=" or ""
	bound             float64
}

var targets = []target{
	{"sale → visible in the hub API, p50 (ms)", "BenchmarkEndToEnd", "sale-visible-p50-ms", "", 0},
	{"sale → visible in the hub API, p99 (ms)", "BenchmarkEndToEnd", "sale-visible-p99-ms", "<", 30},
	{"adjustment → applied, p50 (ms)", "BenchmarkEndToEnd", "adjustment-applied-p50-ms", "", 0},
	{"adjustment → applied, p99 (ms)", "BenchmarkEndToEnd", "adjustment-applied-p99-ms", "<", 50},
	{"400-sale burst: Smaregi calls per sale", "BenchmarkEndToEnd", "burst-calls/sale", "<", 0.05},
	{"400-sale burst: convergence (ms)", "BenchmarkEndToEnd", "burst-converge-ms", "", 0},
	{"sale → watch event (live feed), p50 (ms)", "BenchmarkEndToEnd", "sale-watch-p50-ms", "", 0},
	{"sale → watch event (live feed), p99 (ms)", "BenchmarkEndToEnd", "sale-watch-p99-ms", "", 0},
	// The same workload on the Platform API (webhooks, one-product adds,
	// echoes): the same targets apply.
	{"Platform: sale → visible in the hub API, p50 (ms)", "BenchmarkEndToEndPlatform", "sale-visible-p50-ms", "", 0},
	{"Platform: sale → visible in the hub API, p99 (ms)", "BenchmarkEndToEndPlatform", "sale-visible-p99-ms", "<", 30},
	{"Platform: adjustment → applied, p50 (ms)", "BenchmarkEndToEndPlatform", "adjustment-applied-p50-ms", "", 0},
	{"Platform: adjustment → applied, p99 (ms)", "BenchmarkEndToEndPlatform", "adjustment-applied-p99-ms", "<", 50},
	{"Platform: 400-sale burst: Smaregi calls per sale", "BenchmarkEndToEndPlatform", "burst-calls/sale", "<", 0.05},
	{"Platform: sale → watch event (live feed), p99 (ms)", "BenchmarkEndToEndPlatform", "sale-watch-p99-ms", "", 0},
	{"receiver, informer cache, bolt (durable sends/s)", "BenchmarkReceiverDurableCache/bolt", "sends/s", ">=", 5000},
	{"receiver, informer cache, PostgreSQL (durable sends/s)", "BenchmarkReceiverDurableCache/postgres", "sends/s", ">=", 5000},
	// Issue 20 §1: POSTs without the right key, in process (B/op with the
	// default options) and through the binary (make bench's run 4).
	{"receiver: 4 MiB wrong-key request, bytes allocated (B)", "BenchmarkReceiverUnauthenticated/wrong-key-first", "B/op", "<", 256 << 10},
	{"receiver: 4 MiB keyless request, bytes allocated (B; the body once)", "BenchmarkReceiverUnauthenticated/keyless-one-field", "B/op", "<", 4<<20 + 256<<10},
	{"keyless flood, issue's body: RSS growth per request in flight (MB)", "BenchmarkReceiverKeylessFlood", "issue-body-growth-MB/in-flight", "<", 10},
	{"keyless flood, one 4 MiB field: RSS growth per request in flight (MB)", "BenchmarkReceiverKeylessFlood", "keyless-one-field-growth-MB/in-flight", "<", 10},
	{"keyless flood, one 4 MiB field: peak RSS (MB; limit 512)", "BenchmarkReceiverKeylessFlood", "keyless-one-field-peak-rss-MB", "<", 512},
	{"send → mirror in process, p99 (ms)", "BenchmarkSendToMirrorLag", "lag-p99-ms", "<", 1000},
	{"adjustment → applied in process, p99 (ms)", "BenchmarkAdjustmentToApplied", "p99_ms", "<", 1000},
	{"full reconcile of 100,000 products (s)", "BenchmarkFullReconcile100k", "s/reconcile", "<", 10},
	// The simulator runs as a separate process: the heap is the
	// operator's alone (docs/benchmarks.md). The import is a full
	// reconcile too, into an empty mirror.
	{"full reconcile of 1,000,000 products on bolt (s)", "BenchmarkFullReconcile1M", "s/reconcile", "<", 15},
	{"import of 1,000,000 products on bolt (s)", "BenchmarkFullReconcile1M", "import-s", "<", 15},
	{"1,000,000 products: operator's peak heap, reconcile (MB)", "BenchmarkFullReconcile1M", "reconcile-peak-heap-MB", "<", 300},
	{"1,000,000 products: operator's peak heap, import included (MB)", "BenchmarkFullReconcile1M", "peak-heap-MB", "<", 300},
	{"idle store, default schedule: stock_ref calls per hour", "BenchmarkIdleCalls/stretch", "idle-calls/store/h", "", 0},
	{"idle store, poll not stretched: stock_ref calls per hour", "BenchmarkIdleCalls/fixed", "idle-calls/store/h", "", 0},
	// 1 GiB over 10,000 stores; the engine's share only (docs/benchmarks.md).
	{"10,000 stores (20 products each): engine heap per store (B)", "BenchmarkManyStores/10000", "heap-B/store", "<", 107374},
	{"10,000 stores: goroutines per store", "BenchmarkManyStores/10000", "goroutines/store", "<", 0.5},
	{"10,000 stores: time until all imported (s, no rate limit)", "BenchmarkManyStores/10000", "import-s", "", 0},
	{"10,000 stores: CPU while idle (% of one core)", "BenchmarkManyStores/10000", "idle-cpu-%", "", 0},
	// make bench-scale: the operator binary, envtest, 1,000 SKUs a store;
	// the number of stores run is its own row (SMAREGI_SCALE_STORES).
	{"scale, bolt: SmaregiStores run", "BenchmarkScale/bolt", "stores", "", 0},
	{"scale, bolt: peak RSS, page cache mapped (MB; bound at 10,000)", "BenchmarkScale/bolt", "peak-rss-MB", "<", 1024},
	{"scale, bolt: anonymous RSS, no mapped file (MB)", "BenchmarkScale/bolt", "rss-anon-MB", "", 0},
	// With SMAREGI_SCALE_MEMORY_LIMIT=1Gi: the operator in a 1 GiB memory
	// cgroup with GOMEMLIMIT, as in a Pod with that limit; it must not be
	// OOM-killed (the run fails if it is).
	{"scale, bolt: memory limit of the run (MB; not run: none)", "BenchmarkScale/bolt", "limit-MB", "", 0},
	{"scale, bolt: in the limit: cgroup's peak, page cache too (MB)", "BenchmarkScale/bolt", "cgroup-peak-MB", "<=", 1024},
	{"scale, bolt: in the limit: OOM kills", "BenchmarkScale/bolt", "oom-kills", "<", 1},
	{"scale, bolt: in the limit: pages read back (major faults)", "BenchmarkScale/bolt", "major-faults", "", 0},
	{"scale, bolt: live Go heap per store (KB)", "BenchmarkScale/bolt", "heap-live-KB/store", "", 0},
	{"scale, bolt: goroutines per store", "BenchmarkScale/bolt", "goroutines/store", "<", 0.5},
	{"scale, bolt: time until all Ready (s)", "BenchmarkScale/bolt", "ready-s", "", 0},
	{"scale, bolt: time until all imported (s)", "BenchmarkScale/bolt", "imported-s", "", 0},
	{"scale, bolt: per-contract limiter's floor on import (s)", "BenchmarkScale/bolt", "limiter-floor-s", "", 0},
	{"scale, bolt: CPU while idle (% of one core)", "BenchmarkScale/bolt", "idle-cpu-%", "", 0},
	{"scale, PostgreSQL: SmaregiStores run", "BenchmarkScale/postgres", "stores", "", 0},
	{"scale, PostgreSQL: peak RSS, page cache mapped (MB; bound at 10,000)", "BenchmarkScale/postgres", "peak-rss-MB", "<", 1024},
	{"scale, PostgreSQL: anonymous RSS, no mapped file (MB)", "BenchmarkScale/postgres", "rss-anon-MB", "", 0},
	// With SMAREGI_SCALE_MEMORY_LIMIT=1Gi: the operator in a 1 GiB memory
	// cgroup with GOMEMLIMIT, as in a Pod with that limit; it must not be
	// OOM-killed (the run fails if it is).
	{"scale, PostgreSQL: memory limit of the run (MB; not run: none)", "BenchmarkScale/postgres", "limit-MB", "", 0},
	{"scale, PostgreSQL: in the limit: cgroup's peak, page cache too (MB)", "BenchmarkScale/postgres", "cgroup-peak-MB", "<=", 1024},
	{"scale, PostgreSQL: in the limit: OOM kills", "BenchmarkScale/postgres", "oom-kills", "<", 1},
	{"scale, PostgreSQL: in the limit: pages read back (major faults)", "BenchmarkScale/postgres", "major-faults", "", 0},
	{"scale, PostgreSQL: live Go heap per store (KB)", "BenchmarkScale/postgres", "heap-live-KB/store", "", 0},
	{"scale, PostgreSQL: goroutines per store", "BenchmarkScale/postgres", "goroutines/store", "<", 0.5},
	{"scale, PostgreSQL: time until all Ready (s)", "BenchmarkScale/postgres", "ready-s", "", 0},
	{"scale, PostgreSQL: time until all imported (s)", "BenchmarkScale/postgres", "imported-s", "", 0},
	{"scale, PostgreSQL: per-contract limiter's floor on import (s)", "BenchmarkScale/postgres", "limiter-floor-s", "", 0},
	{"scale, PostgreSQL: CPU while idle (% of one core)", "BenchmarkScale/postgres", "idle-cpu-%", "", 0},
}

func main() {
	var in []io.Reader
	for _, name := range os.Args[1:] {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchsummary:", err)
			os.Exit(2)
		}
		defer func() { _ = f.Close() }()
		in = append(in, f)
	}
	if len(in) == 0 {
		in = append(in, os.Stdin)
	}
	got, err := parse(io.MultiReader(in...))
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchsummary:", err)
		os.Exit(2)
	}
	fmt.Print(table(got))
}

// parse collects every value of every metric, keyed by benchmark and unit:
// a benchmark run several times gives several values.
func parse(r io.Reader) (map[[2]string][]float64, error) {
	got := map[[2]string][]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line (a log line naming a benchmark)
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			k := [2]string{name, f[i+1]}
			got[k] = append(got[k], v)
		}
	}
	return got, sc.Err()
}

func table(got map[[2]string][]float64) string {
	var b strings.Builder
	row := func(what, measured, bound, result string) {
		fmt.Fprintf(&b, "%s %-22s %-10s %s\n", pad(what, 62), measured, bound, result)
	}
	b.WriteString("\n")
	row("target", "measured", "bound", "result")
	for _, t := range targets {
		vs := got[[2]string{t.bench, t.unit}]
		bound := "—"
		if t.op != "" {
			bound = t.op + " " + num(t.bound)
		}
		if len(vs) == 0 {
			row(t.what, "not run", bound, "not measured")
			continue
		}
		lo, hi := vs[0], vs[0]
		for _, v := range vs {
			lo, hi = min(lo, v), max(hi, v)
		}
		measured := num(lo)
		if hi != lo {
			measured = num(lo) + "–" + num(hi)
		}
		result := "—"
		switch t.op {
		case "<": // every run must hold: the worst is the highest
			result = verdict(hi < t.bound)
		case "<=":
			result = verdict(hi <= t.bound)
		case ">=":
			result = verdict(lo >= t.bound)
		}
		row(t.what, measured, bound, result)
	}
	b.WriteString("(shared 2-core VM: figures are noisy; see docs/benchmarks.md)\n")
	return b.String()
}

// pad pads s with spaces to n characters (not bytes: the arrows are
// multi-byte).
func pad(s string, n int) string {
	return s + strings.Repeat(" ", max(0, n-utf8.RuneCountInString(s)))
}

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "MISS"
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}
