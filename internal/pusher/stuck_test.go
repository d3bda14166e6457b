package pusher

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

const (
	ageMetric     = "smaregi_pusher_unresolved_attempt_age_seconds"
	blockedMetric = "smaregi_pusher_blocked_stores"
)

// waitMetrics polls the registry the manager serves until the two metrics
// read as want (exposition format, without HELP and TYPE lines).
func waitMetrics(t *testing.T, want string) {
	t.Helper()
	expected := fmt.Sprintf("# HELP %s %s\n# TYPE %s gauge\n", blockedMetric, blockedStoresHelp, blockedMetric)
	var age, blocked []string
	for _, l := range strings.Split(strings.TrimSpace(want), "\n") {
		if strings.HasPrefix(l, ageMetric) {
			age = append(age, l)
		} else {
			blocked = append(blocked, l)
		}
	}
	if len(age) > 0 {
		expected = fmt.Sprintf("# HELP %s %s\n# TYPE %s gauge\n%s\n", ageMetric, unresolvedAgeHelp, ageMetric, strings.Join(age, "\n")) + expected
	}
	expected += strings.Join(blocked, "\n") + "\n"
	waitUntil(t, 20*time.Second, "the metrics to become\n"+want+"\n", func() error {
		return testutil.GatherAndCompare(metrics.Registry, strings.NewReader(expected), ageMetric, blockedMetric)
	})
}

// A store whose open attempt cannot be resolved is visible in the metrics,
// with the attempt's age, until the resolution succeeds; meanwhile nothing
// else is sent for it.
func TestStuckStoreIsVisible(t *testing.T) {
	for _, tc := range []struct {
		name         string
		break_, heal func(*smaregisim.Server) error
	}{
		{"history read refused", func(s *smaregisim.Server) error {
			// stock_ref also serves StockHistory; stock_upd stays on, so a
			// send would go through if the pusher made one.
			return s.SetAccount(smaregisim.Account{DisabledFunctions: []string{"stock_ref"}})
		}, func(s *smaregisim.Server) error { return s.SetAccount(smaregisim.Account{}) }},
		{"Smaregi failing", func(s *smaregisim.Server) error {
			return s.SetFaults(smaregisim.Faults{ErrorRate: 1})
		}, func(s *smaregisim.Server) error { return s.SetFaults(smaregisim.Faults{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, 1)
			ctx := context.Background()
			stuckKey := h.keys[0]
			// An attempt recorded and never sent (the operator died), and a
			// later adjustment queued behind it.
			first := inventory.Adjustment{Key: stuckKey, ID: "crash", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}}
			later := inventory.Adjustment{Key: stuckKey, ID: "later", Lines: []inventory.AdjustmentLine{{ProductID: product(1), Quantity: -2}}}
			submitAll(t, h.inv, []inventory.Adjustment{first})
			started := time.Now().Add(-time.Minute).UTC().Truncate(time.Microsecond)
			at := inventory.Attempt{Key: stuckKey, ID: "att-crash", AdjustmentIDs: []string{"crash"},
				Rows: inventory.MergeAttemptRows([]inventory.Adjustment{first}), StartedAt: started}
			if err := h.inv.BeginAttempt(ctx, at); err != nil {
				t.Fatal(err)
			}
			submitAll(t, h.inv, []inventory.Adjustment{later})
			if err := tc.break_(h.sim); err != nil {
				t.Fatal(err)
			}

			// The pusher's clock stands still but for the steps below: the
			// first window ends 90s after the attempt started.
			opts := h.options()
			clk := testingclock.NewFakeClock(started.Add(90*time.Second - opts.Window))
			h.start(t, func(o *Options) { o.Clock = clk })
			advance(t, clk, opts.Window)
			waitMetrics(t, fmt.Sprintf("%s{name=%q,namespace=%q} 90\n%s 1", ageMetric, stuckKey.Name, stuckKey.Namespace, blockedMetric))
			// The labels name the SmaregiStore object only.
			mfs, err := metrics.Registry.Gather()
			if err != nil {
				t.Fatal(err)
			}
			for _, mf := range mfs {
				if mf.GetName() != ageMetric {
					continue
				}
				for _, m := range mf.GetMetric() {
					for _, l := range m.GetLabel() {
						if v := l.GetValue(); strings.Contains(v, testToken) || v == testContract || v == h.storeIDs[stuckKey] {
							t.Fatalf("label %s=%q names a credential or Smaregi ID", l.GetName(), v)
						}
					}
				}
			}
			// Blocked means blocked: the later adjustment was not sent.
			for _, id := range []string{"crash", "later"} {
				if got, _, _ := h.inv.GetAdjustment(ctx, stuckKey, id); got.State != inventory.AdjustmentPending {
					t.Fatalf("%s = %s while the store is blocked, want pending", id, got.State)
				}
			}
			hist, err := h.sim.History(h.storeIDs[stuckKey])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range hist {
				if r.StockDivision == "15" {
					t.Fatalf("a stock_upd reached Smaregi while the store was blocked: %+v", r)
				}
			}

			if err := tc.heal(h.sim); err != nil {
				t.Fatal(err)
			}
			// The worker waits before resolving again: a back-off, or
			// ConfigBackoff (longer) when Smaregi refused the read as a
			// configuration error.
			advance(t, clk, max(opts.Backoff.Max, opts.ConfigBackoff))
			waitMetrics(t, blockedMetric+" 0")
			both := []inventory.Adjustment{first, later}
			waitSettled(t, h.inv, both, 20*time.Second)
			verifyExactlyOnce(t, h, both, true)
		})
	}
}
