package pusher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

func faulty(t testing.TB, h *harness) {
	t.Helper()
	if err := h.sim.SetFaults(smaregisim.Faults{ErrorRate: 0.2, HTMLErrorRate: 0.05, LostResponseRate: 0.1, LatencyMs: 3}); err != nil {
		t.Fatal(err)
	}
}

func generate(h *harness, n int, seed uint64) []inventory.Adjustment {
	rng := rand.New(rand.NewPCG(seed, 1))
	adjs := make([]inventory.Adjustment, n)
	for i := range adjs {
		adjs[i] = randomAdjustment(rng, h.keys[i%len(h.keys)], fmt.Sprintf("order-%d", i))
	}
	return adjs
}

func testThousandUnderFaults(t *testing.T, disableMemo bool, memo string) {
	h := newHarnessWith(t, 3, func(o *smaregisim.Options) { o.Behaviour.Memo = memo })
	faulty(t, h)
	var pulls atomic.Int64
	before := outcomeTotal(t, OutcomeResolvedApplied) +
		outcomeTotal(t, OutcomeResolvedNotApplied)
	h.start(t, func(o *Options) {
		o.DisableMemo = disableMemo
		o.OnApplied = func(inventory.StoreKey) { pulls.Add(1) }
	})
	adjs := generate(h, 1000, 1)
	submitAll(t, h.inv, adjs)
	waitSettled(t, h.inv, adjs, 50*time.Second)
	verifyExactlyOnce(t, h, adjs, !disableMemo && memo == smaregisim.MemoKept)
	if pulls.Load() == 0 {
		t.Error("OnApplied was never called")
	}
	resolved := outcomeTotal(t, OutcomeResolvedApplied) +
		outcomeTotal(t, OutcomeResolvedNotApplied) - before
	if resolved == 0 {
		t.Error("no attempt was resolved from history: the faults did not exercise resolution")
	}
	for _, k := range h.keys {
		if d, _ := h.inv.PendingDeltas(context.Background(), k); len(d) == 0 {
			t.Errorf("%s: applied adjustments not yet pulled must still count in PendingDeltas", k)
		}
	}
	t.Logf("resolved %v adjustments from history; %d OnApplied calls", resolved, pulls.Load())
}

// 1,000 adjustments over 3 stores with 20% errors, 5% HTML 502 pages, 10%
// responses lost after applying and latency: every one applied exactly once.
func TestThousandAdjustmentsUnderFaults(t *testing.T) {
	testThousandUnderFaults(t, false, smaregisim.MemoKept)
}

// The same without memos: resolution relies on (product, amount) order
// alone, with many identical rows.
func TestThousandAdjustmentsUnderFaultsWithoutMemo(t *testing.T) {
	testThousandUnderFaults(t, true, smaregisim.MemoKept)
}

// A Smaregi that rejects memo (error 41, unknown field), with the memo
// disabled (--smaregi-send-memo=false): nothing is rejected and every
// adjustment is applied exactly once.
func TestThousandAdjustmentsUnderFaultsMemoRejected(t *testing.T) {
	testThousandUnderFaults(t, true, smaregisim.MemoRejected)
}

// A Smaregi that accepts memos but does not keep them in StockHistory:
// resolution falls back to (product, amount) order.
func TestThousandAdjustmentsUnderFaultsMemoNotKept(t *testing.T) {
	testThousandUnderFaults(t, false, smaregisim.MemoIgnored)
}

// A server that applies a call and then answers a coded 5xx: the pusher
// must resolve from the history instead of resending, so that every
// adjustment is still applied exactly once.
func TestAppliedThenCodedErrorIsResolved(t *testing.T) {
	h := newHarness(t, 2)
	if err := h.sim.SetFaults(smaregisim.Faults{AppliedErrorRate: 0.3, ErrorRate: 0.1}); err != nil {
		t.Fatal(err)
	}
	before := outcomeTotal(t, OutcomeResolvedApplied)
	h.start(t, nil)
	adjs := generate(h, 200, 4)
	submitAll(t, h.inv, adjs)
	waitSettled(t, h.inv, adjs, 50*time.Second)
	verifyExactlyOnce(t, h, adjs, true)
	if outcomeTotal(t, OutcomeResolvedApplied) == before {
		t.Error("no attempt was resolved applied: the fault was not exercised")
	}
}

// A pusher stopped mid-run, and attempts left open by a crash at each point
// (recorded but never sent; sent and applied but not settled), are finished
// by a fresh pusher on the reopened file without applying anything twice.
func TestKilledPusherResumes(t *testing.T) {
	h := newHarness(t, 3)
	adjs := generate(h, 600, 2)
	ctx := context.Background()

	// Crash states, made by hand on the first store: an attempt recorded,
	// sent and applied but never settled (the operator died before the
	// answer), and later one recorded but never sent.
	key := h.keys[0]
	crash := []inventory.Adjustment{
		{Key: key, ID: "crash-sent", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}},
		{Key: key, ID: "crash-unsent", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}},
	}
	submitAll(t, h.inv, crash[:1])
	sent := inventory.Attempt{Key: key, ID: "att-sent", AdjustmentIDs: []string{"crash-sent"},
		Rows: inventory.MergeAttemptRows(crash[:1]), StartedAt: time.Now()}
	if err := h.inv.BeginAttempt(ctx, sent); err != nil {
		t.Fatal(err)
	}
	c, err := smaregi.New(smaregi.Options{Endpoint: h.endpoint, ContractID: testContract, AccessToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	_ = h.sim.SetFaults(smaregisim.Faults{})
	if _, err := c.UpdateStock(ctx, smaregi.Relative, []smaregi.StockUpdate{{StoreID: "1", ProductID: product(0), Amount: -1, Memo: inventory.AttemptMemo(sent.ID)}}); err != nil {
		t.Fatal(err)
	}
	faults := smaregisim.Faults{ErrorRate: 0.2, LostResponseRate: 0.1, LatencyMs: 20}
	if err := h.sim.SetFaults(faults); err != nil {
		t.Fatal(err)
	}

	stop := h.start(t, nil)
	applied := func() int {
		n := 0
		for _, a := range adjs {
			if got, _, _ := h.inv.GetAdjustment(ctx, a.Key, a.ID); got.State == inventory.AdjustmentApplied {
				n++
			}
		}
		return n
	}
	// Submitted in chunks, and killed as soon as a quarter is applied: the
	// newest chunk still needs a Smaregi round trip then, so the kill lands
	// mid-run even though an idle store's adjustments go at once. The rest
	// is submitted after the kill, for the fresh pusher.
	submitted := 0
	for submitted < len(adjs) && applied() <= len(adjs)/4 {
		next := min(submitted+50, len(adjs))
		submitAll(t, h.inv, adjs[submitted:next])
		submitted = next
	}
	waitUntil(t, 30*time.Second, "the first pusher to apply a quarter", func() error {
		if n := applied(); n <= len(adjs)/4 {
			return fmt.Errorf("%d of %d applied", n, len(adjs))
		}
		return nil
	})
	// One more chunk right before the kill: it needs a Smaregi round trip
	// (20 ms of injected latency at least), so the kill lands with work
	// pending however fast the pusher gathered the earlier chunks.
	if submitted < len(adjs) {
		next := min(submitted+50, len(adjs))
		submitAll(t, h.inv, adjs[submitted:next])
		submitted = next
	}
	stop()
	if got, _, _ := h.inv.GetAdjustment(ctx, key, "crash-sent"); got.State != inventory.AdjustmentApplied {
		t.Fatalf("crash-sent after the first pusher: %s, want applied from history", got.State)
	}
	// The unsent one has the same row as crash-sent and as many random
	// adjustments: only its memo or history order tells them apart.
	submitAll(t, h.inv, crash[1:])
	unsent := inventory.Attempt{Key: key, ID: "att-unsent", AdjustmentIDs: []string{"crash-unsent"},
		Rows: inventory.MergeAttemptRows(crash[1:]), StartedAt: time.Now()}
	// A store has at most one open attempt (the store refuses a second):
	// when the kill left one open here, that one is the crash state.
	opens, _ := h.inv.OpenAttempts(ctx, key)
	interrupted := len(opens) > 0
	if !interrupted {
		if err := h.inv.BeginAttempt(ctx, unsent); err != nil {
			t.Fatal(err)
		}
	}
	open := 0
	for _, k := range h.keys {
		ats, _ := h.inv.OpenAttempts(ctx, k)
		open += len(ats)
	}
	pending := 0
	for _, a := range adjs {
		if got, _, _ := h.inv.GetAdjustment(ctx, a.Key, a.ID); got.State == inventory.AdjustmentPending {
			pending++
		}
	}
	t.Logf("killed with %d open attempts and %d pending adjustments", open, pending)
	for _, k := range h.keys[1:] {
		if ats, _ := h.inv.OpenAttempts(ctx, k); len(ats) > 0 {
			interrupted = true
		}
	}
	if pending == 0 && !interrupted {
		t.Fatal("everything was applied and settled before the kill; the test proves nothing")
	}
	submitAll(t, h.inv, adjs[submitted:])

	h.reopen(t)
	h.start(t, nil)
	all := append(adjs, crash...)
	waitSettled(t, h.inv, all, 50*time.Second)
	verifyExactlyOnce(t, h, all, true)
}

// A product Smaregi does not know fails only the adjustment that names it,
// even when it shares a call with others.
func TestBadProductFailsOnlyItsAdjustment(t *testing.T) {
	h := newHarness(t, 1)
	key := h.keys[0]
	var adjs []inventory.Adjustment
	for i := 0; i < 9; i++ {
		adjs = append(adjs, inventory.Adjustment{Key: key, ID: fmt.Sprintf("good-%d", i),
			Lines: []inventory.AdjustmentLine{{ProductID: product(i), Quantity: -1}}})
	}
	bad := inventory.Adjustment{Key: key, ID: "bad", Lines: []inventory.AdjustmentLine{
		{ProductID: product(1), Quantity: -2}, {ProductID: "9999999", Quantity: -1}}}
	all := append(append([]inventory.Adjustment{}, adjs[:4]...), bad)
	all = append(all, adjs[4:]...)
	// All submitted before the pusher starts, so they share one call.
	submitAll(t, h.inv, all)
	h.start(t, nil)
	waitSettled(t, h.inv, all, 20*time.Second)
	got, _, _ := h.inv.GetAdjustment(context.Background(), key, "bad")
	if got.State != inventory.AdjustmentFailed || !strings.Contains(got.FailureReason, "error_code 41") {
		t.Fatalf("bad = %s %q, want failed with Smaregi's error 41", got.State, got.FailureReason)
	}
	if strings.Contains(got.FailureReason, testToken) {
		t.Fatal("the failure reason leaks the token")
	}
	verifyExactlyOnce(t, h, adjs, true)
}

// A configuration error leaves adjustments pending; after the shop fixes
// it they are applied once ConfigBackoff has passed.
func TestConfigErrorKeepsPending(t *testing.T) {
	h := newHarness(t, 1)
	if err := h.sim.SetAccount(smaregisim.Account{DisabledFunctions: []string{"stock_upd"}}); err != nil {
		t.Fatal(err)
	}
	adjs := generate(h, 5, 3)
	submitAll(t, h.inv, adjs)
	before := testutil.ToFloat64(getMetrics().calls.WithLabelValues(CallConfig))
	clk := testingclock.NewFakeClock(time.Now())
	const configBackoff = 5 * time.Minute
	var window time.Duration
	h.start(t, func(o *Options) { o.Clock, o.ConfigBackoff, window = clk, configBackoff, o.Window })
	advance(t, clk, window)
	waitUntil(t, 10*time.Second, "a configuration error", func() error {
		if testutil.ToFloat64(getMetrics().calls.WithLabelValues(CallConfig)) == before {
			return errors.New("none seen")
		}
		return nil
	})
	for _, a := range adjs {
		if got, _, _ := h.inv.GetAdjustment(context.Background(), a.Key, a.ID); got.State != inventory.AdjustmentPending {
			t.Fatalf("%s = %s during a configuration error, want pending", a.ID, got.State)
		}
	}
	if err := h.sim.SetAccount(smaregisim.Account{}); err != nil {
		t.Fatal(err)
	}
	// The worker waits out ConfigBackoff (its only wait after the error)
	// and sends again.
	advance(t, clk, configBackoff)
	waitSettled(t, h.inv, adjs, 20*time.Second)
	verifyExactlyOnce(t, h, adjs, true)
}
