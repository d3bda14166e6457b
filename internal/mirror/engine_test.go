package mirror

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

func synced(e *Engine, key inventory.StoreKey) func() bool {
	return func() bool {
		s, ok := e.Snapshot(key)
		return ok && s.Condition.Status == metav1.ConditionTrue && !s.LastFullSync.IsZero()
	}
}

func sendFor(id string, keys ...inventory.StoreKey) webhookserver.Send {
	s := webhookserver.Send{ID: id, Namespace: "shop", ContractID: testContract, ProcName: webhookserver.ProcTransactionSend,
		StoreIDs: []string{"1"}, Rows: 2, ReceivedAt: time.Now()}
	for _, k := range keys {
		s.Targets = append(s.Targets, types.NamespacedName{Namespace: k.Namespace, Name: k.Name})
	}
	return s
}

func TestSendThroughSinkUpdatesMirror(t *testing.T) {
	h := newHarness(t, nil)
	var lags []time.Duration
	var lagMu sync.Mutex
	e, status := newEngine(t, h, func(o *Options) {
		o.OnSendSynced = func(_ inventory.StoreKey, d time.Duration) {
			lagMu.Lock()
			lags = append(lags, d)
			lagMu.Unlock()
		}
	})
	q := withDrain(t, e)
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))
	if s, _ := e.Snapshot(testKey); s.SKUs != 50 || s.Drift != 0 {
		t.Fatalf("after import: SKUs %d drift %d, want 50 and 0 (an import is not drift)", s.SKUs, s.Drift)
	}
	calls := h.refCalls.Load()

	sale(t, h, "1", "8000005", 4)
	sink := webhookserver.NewDurableSink(h.inv, e.NoteSend)
	if err := sink.Accept(context.Background(), sendFor("send-1", testKey)); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	waitFor(t, 5*time.Second, "the sale in the mirror", func() bool { return mirrorDiff(t, h, testKey, "1") == "" })
	waitFor(t, 5*time.Second, "the lag to be reported", func() bool {
		lagMu.Lock()
		defer lagMu.Unlock()
		return len(lags) == 1
	})
	if lags[0] <= 0 || lags[0] > 5*time.Second {
		t.Errorf("send→mirror lag %s", lags[0])
	}
	waitFor(t, 5*time.Second, "the dirty mark to be cleared", func() bool {
		m, err := h.inv.Dirty(context.Background())
		return err == nil && len(m) == 0
	})
	if s, _ := e.Snapshot(testKey); s.LastSend.IsZero() {
		t.Error("lastSendTime not recorded")
	}
	waitFor(t, 5*time.Second, "status with the send time", func() bool {
		u, ok := status.last()
		return ok && !u.LastSendTime.IsZero() && u.SKUs == 50 && !u.LastPullTime.IsZero()
	})

	// The same send again (a manual resend in Smaregi) is a duplicate: no
	// store is marked, so no pull follows.
	pulls := h.refCalls.Load()
	if pulls != calls+1 {
		t.Errorf("one send caused %d stock_ref calls, want 1", pulls-calls)
	}
	noted, _ := e.Snapshot(testKey)
	if err := sink.Accept(context.Background(), sendFor("send-1", testKey)); err != nil {
		t.Fatalf("duplicate Accept: %v", err)
	}
	// A send wakes a pull only through the dirty mark its recording makes,
	// and reaches the engine otherwise only through NoteSend: a duplicate
	// must do neither. (Had it marked the store and the mark been pulled
	// and cleared already, the pull's call is counted below.)
	if m, err := h.inv.Dirty(context.Background()); err != nil || len(m) != 0 {
		t.Errorf("after a duplicate send: dirty marks %v (%v), want none", m, err)
	}
	if s, _ := e.Snapshot(testKey); !s.LastSend.Equal(noted.LastSend) {
		t.Errorf("a duplicate send was noted: lastSendTime %s, was %s", s.LastSend, noted.LastSend)
	}
	e.scheduleDue() // a trigger left pending would be queued by the next tick
	drain(t, e, q)
	if got := h.refCalls.Load(); got != pulls {
		t.Errorf("a duplicate send caused %d pulls", got-pulls)
	}
}

func TestStartupPullsStoresMarkedWhileNoLeaderRan(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	if _, err := newPuller(h, DefaultOverlap).full(ctx, testKey, "1", h.reader(t)); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(time.Minute)
	sale(t, h, "1", "8000009", 2)
	// Recorded by a receiver replica while no engine ran.
	if err := webhookserver.NewDurableSink(h.inv, nil).Accept(ctx, sendFor("early", testKey)); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(getMetrics().pulls.WithLabelValues("send", OutcomeSuccess))
	e, _ := newEngine(t, h, nil)
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the dirty store to be pulled", func() bool { return mirrorDiff(t, h, testKey, "1") == "" })
	waitFor(t, 5*time.Second, "the dirty mark to be cleared", func() bool {
		m, _ := h.inv.Dirty(ctx)
		return len(m) == 0
	})
	if got := testutil.ToFloat64(getMetrics().pulls.WithLabelValues("send", OutcomeSuccess)) - before; got != 1 {
		t.Errorf("pulls{trigger=send,outcome=success} grew by %v, want 1 (an incremental pull, not a re-import)", got)
	}
}

func TestTriggersDuringAPullCoalesceIntoOneFollowUp(t *testing.T) {
	h := newHarness(t, nil)
	e, _ := newEngine(t, h, func(o *Options) { o.Workers = 4 })
	q := withDrain(t, e)
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))

	// Hold the next stock_ref until released, so the pull stays in flight.
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	releaseAll := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseAll) // a failing test must not leave a pull stuck
	hold := func() {
		entered <- struct{}{}
		<-release
	}
	h.onRef.Store(&hold)
	start := h.refCalls.Load()
	e.RequestPull(testKey, TriggerSend)
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the first pull never reached the simulator")
	}
	for range 100 {
		e.RequestPull(testKey, TriggerSend)
		e.RequestPull(testKey, TriggerPoll)
	}
	// Each of the other workers must take a probe queued behind the
	// triggers: had the queue handed the store out again meanwhile, one of
	// them would have pulled it and be held in hold, short of its probe.
	r := q.queueProbes(e.opts.Workers - 1)
	select {
	case <-r.all:
	case <-entered:
		close(r.abort)
		t.Fatalf("a second pull of the store reached Smaregi while one was in flight (%d stock_ref calls)", h.refCalls.Load()-start)
	case <-time.After(10 * time.Second):
		close(r.abort)
		t.Fatal("timed out waiting for the other workers to take their probes")
	}
	if got := h.refCalls.Load() - start; got != 1 {
		t.Fatalf("%d stock_ref calls in flight for one store, want 1", got)
	}
	h.onRef.Store(nil)
	releaseAll()
	waitFor(t, 5*time.Second, "the follow-up pull", func() bool { return h.refCalls.Load()-start == 2 })
	e.scheduleDue() // a trigger left pending would be queued by the next tick
	drain(t, e, q)  // the follow-up and anything it queued again are done
	if got := h.refCalls.Load() - start; got != 2 {
		t.Fatalf("200 triggers during one pull caused %d pulls in all, want 2 (one follow-up)", got)
	}
}

func TestFunctionDisabledIsAConfigErrorWithoutHammering(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.sim.SetAccount(smaregisim.Account{DisabledFunctions: []string{"stock_ref"}}); err != nil {
		t.Fatal(err)
	}
	before := testutil.ToFloat64(getMetrics().pulls.WithLabelValues("startup", OutcomeConfigError))
	clk := clocktesting.NewFakeClock(time.Now())
	e, status := newEngine(t, h, func(o *Options) { o.ConfigBackoff, o.Clock = time.Hour, clk })
	q := withDrain(t, e)
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "InventorySynced=False", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.Condition.Status == metav1.ConditionFalse
	})
	s, _ := e.Snapshot(testKey)
	if s.Condition.Reason != v1alpha1.ReasonFunctionDisabled {
		t.Fatalf("reason %q, want %s (message %q)", s.Condition.Reason, v1alpha1.ReasonFunctionDisabled, s.Condition.Message)
	}
	if !strings.Contains(s.Condition.Message, "在庫情報参照") || strings.Contains(s.Condition.Message, testToken) {
		t.Errorf("message must name 在庫情報参照 and never the token: %q", s.Condition.Message)
	}
	if got := testutil.ToFloat64(getMetrics().pulls.WithLabelValues("startup", OutcomeConfigError)) - before; got != 1 {
		t.Errorf("pulls{startup,config_error} grew by %v, want 1", got)
	}
	// A busy shop keeps sending through most of the hour of back-off; the
	// engine must not call Smaregi for each.
	for range 50 {
		clk.Step(time.Minute)
		e.RequestPull(testKey, TriggerSend)
		e.scheduleDue()
	}
	drain(t, e, q)
	if got := h.refCalls.Load(); got != 1 {
		t.Fatalf("%d stock_ref calls while the function is off, want 1", got)
	}
	waitFor(t, 5*time.Second, "the condition in status", func() bool {
		u, ok := status.last()
		return ok && u.Condition.Reason == v1alpha1.ReasonFunctionDisabled
	})

	// The shop switches the function on and the platform team touches the
	// object (new generation): the back-off is lifted at once.
	if err := h.sim.SetAccount(smaregisim.Account{}); err != nil {
		t.Fatal(err)
	}
	cfg := h.config()
	cfg.Generation = 2
	e.UpsertStore(cfg)
	waitFor(t, 5*time.Second, "recovery", synced(e, testKey))
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatal(d)
	}
}

func TestFullReconcileReportsDriftInStatusEventAndMetrics(t *testing.T) {
	h := newHarness(t, nil)
	rec := events.NewFakeRecorder(10)
	e, status := newEngine(t, h, func(o *Options) { o.Recorder = rec })
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))
	if ev := <-rec.Events; !strings.Contains(ev, "InitialImport") || !strings.Contains(ev, "50") {
		t.Errorf("import event %q", ev)
	}

	h.clk.Advance(-time.Hour)
	for _, p := range []string{"8000011", "8000012"} {
		if _, err := h.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: p, Amount: 5, StockDivision: "05"}); err != nil {
			t.Fatal(err)
		}
	}
	h.clk.Advance(time.Hour)
	e.RequestPull(testKey, TriggerFull)
	waitFor(t, 5*time.Second, "drift to be recorded", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.Drift == 2
	})
	select {
	case ev := <-rec.Events:
		for _, want := range []string{"DriftCorrected", "8000011 10→15", "8000012 10→15"} {
			if !strings.Contains(ev, want) {
				t.Errorf("drift event %q lacks %q", ev, want)
			}
		}
		if strings.Contains(ev, testToken) {
			t.Error("the event carries the token")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no drift event")
	}
	waitFor(t, 5*time.Second, "drift in status", func() bool {
		u, ok := status.last()
		return ok && u.Drift == 2 && !u.LastFullSyncTime.IsZero()
	})

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(e.Collector())
	want := `
# HELP smaregi_mirror_drift_rows Rows the last full reconcile of a SmaregiStore had to correct.
# TYPE smaregi_mirror_drift_rows gauge
smaregi_mirror_drift_rows{name="store-1",namespace="shop"} 2
# HELP smaregi_mirror_rows Stock rows in the mirror of a SmaregiStore.
# TYPE smaregi_mirror_rows gauge
smaregi_mirror_rows{name="store-1",namespace="shop"} 50
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "smaregi_mirror_rows", "smaregi_mirror_drift_rows"); err != nil {
		t.Error(err)
	}

	// Deleting the store drops its rows and its series.
	if err := e.RemoveStore(context.Background(), testKey); err != nil {
		t.Fatal(err)
	}
	if n := len(mirrorRows(t, h.inv, testKey)); n != 0 {
		t.Errorf("%d mirror rows left after RemoveStore", n)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("%d series left after RemoveStore (%v)", n, err)
	}
}

// countingStatus counts writes; the rate limit test drives the engine with
// a fake clock and no running loops.
type countingStatus struct{ n atomic.Int64 }

func (c *countingStatus) WriteStatus(context.Context, StatusUpdate) error {
	c.n.Add(1)
	return nil
}

// An adjustment applied in Smaregi is subtracted from availability as pending
// until a pull that started after it was applied has brought it into the
// mirror; counting it in both places would understate stock, dropping it
// earlier would overstate it.
func TestPullMarksAppliedAdjustmentsReflected(t *testing.T) {
	h := newHarness(t, nil)
	clk := clocktesting.NewFakeClock(time.Now())
	e, _ := newEngine(t, h, func(o *Options) { o.Clock = clk })
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))

	ctx := context.Background()
	adj := inventory.Adjustment{Key: testKey, ID: "order-1", Lines: []inventory.AdjustmentLine{{ProductID: "8000003", Quantity: -2}}}
	adj.Fingerprint = inventory.CanonicalFingerprint(adj.Reason, adj.Lines)
	if _, _, err := h.inv.SubmitAdjustment(ctx, adj); err != nil {
		t.Fatalf("SubmitAdjustment: %v", err)
	}
	at := inventory.Attempt{Key: testKey, ID: "attempt-1", AdjustmentIDs: []string{"order-1"},
		Rows: []inventory.AttemptRow{{ProductID: "8000003", Amount: -2}}, StartedAt: clk.Now()}
	if err := h.inv.BeginAttempt(ctx, at); err != nil {
		t.Fatalf("BeginAttempt: %v", err)
	}
	if err := h.inv.FinishAttempt(ctx, testKey, at.ID, inventory.AttemptResult{Applied: true, At: clk.Now()}); err != nil {
		t.Fatalf("FinishAttempt: %v", err)
	}
	pending := func() int64 {
		d, err := h.inv.PendingDeltas(ctx, testKey)
		if err != nil {
			t.Fatalf("PendingDeltas: %v", err)
		}
		return d["8000003"]
	}
	if got := pending(); got != -2 {
		t.Fatalf("before a pull, pending delta of 8000003 = %d, want -2 (applied, not yet in the mirror)", got)
	}
	clk.Step(time.Millisecond) // the next pull must start after AppliedAt
	e.RequestPull(testKey, TriggerAdjustment)
	waitFor(t, 5*time.Second, "the pull to mark the adjustment reflected", func() bool { return pending() == 0 })
}

// The resync-requested-at annotation runs a full reconcile once per value:
// the handled value goes to status, and the same value seen again (a re-list,
// a restarted leader reading status) asks for nothing.
func TestResyncRequestRunsOneFullReconcilePerValue(t *testing.T) {
	h := newHarness(t, nil)
	rec := events.NewFakeRecorder(10)
	e, status := newEngine(t, h, func(o *Options) { o.Recorder = rec })
	run(t, e)
	cfg := h.config()
	e.UpsertStore(cfg)
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))

	// A back-dated movement that no incremental pull would see.
	h.clk.Advance(-time.Hour)
	if _, err := h.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: "8000021", Amount: -3, StockDivision: "14"}); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(time.Hour)

	cfg.ResyncRequest = "2026-11-26T10:00:00Z"
	e.UpsertStore(cfg)
	waitFor(t, 5*time.Second, "the requested full reconcile to count the drift", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.Drift == 1
	})
	waitFor(t, 5*time.Second, "status to report the request handled", func() bool {
		u, ok := status.last()
		return ok && u.LastHandledResync == cfg.ResyncRequest && u.Drift == 1
	})
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatalf("mirror differs after the requested reconcile: %s", d)
	}
	waitFor(t, 5*time.Second, "a ResyncFinished event naming the request", func() bool {
		select {
		case ev := <-rec.Events:
			return strings.Contains(ev, "ResyncFinished") && strings.Contains(ev, cfg.ResyncRequest)
		default:
			return false
		}
	})
	first, _ := e.Snapshot(testKey)

	// The same value again, as a re-list or a restarted leader (which reads
	// the handled value from status) would present it.
	cfg.HandledResync = cfg.ResyncRequest
	e.UpsertStore(cfg)
	e.RequestPull(testKey, TriggerPoll) // a pull happens, but an incremental one
	waitFor(t, 5*time.Second, "the follow-up pull", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.LastPull.After(first.LastPull)
	})
	if s, _ := e.Snapshot(testKey); !s.LastFullSync.Equal(first.LastFullSync) {
		t.Errorf("the same resync request ran a second full reconcile (last full %s, was %s)", s.LastFullSync, first.LastFullSync)
	}
}

// A submitted adjustment wakes a status write that reports it pending, with
// its age; the outbox itself lives in the inventory store.
func TestStatusReportsPendingAdjustments(t *testing.T) {
	h := newHarness(t, nil)
	e, status := newEngine(t, h, nil)
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))
	if u, ok := status.last(); ok && u.PendingAdjustments != 0 {
		t.Fatalf("pending before any adjustment: %d", u.PendingAdjustments)
	}
	adj := inventory.Adjustment{Key: testKey, ID: "order-9", Lines: []inventory.AdjustmentLine{{ProductID: "8000004", Quantity: -1}}}
	adj.Fingerprint = inventory.CanonicalFingerprint(adj.Reason, adj.Lines)
	stored, _, err := h.inv.SubmitAdjustment(context.Background(), adj)
	if err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(10 * time.Second) // past the status rate limit
	waitFor(t, 5*time.Second, "status to report the pending adjustment", func() bool {
		u, ok := status.last()
		return ok && u.PendingAdjustments == 1 && u.OldestPending.Equal(stored.CreatedAt)
	})
}

// A replica's receiver records sends while its engine follows (not started).
// When that replica later leads, those sends were synced long ago by the old
// leader and must not be reported as send→mirror lag.
func TestSendsSeenWhileFollowingReportNoLagOnTakeover(t *testing.T) {
	h := newHarness(t, nil)
	var lags []time.Duration
	var lagMu sync.Mutex
	clk := clocktesting.NewFakeClock(time.Now())
	e, _ := newEngine(t, h, func(o *Options) {
		o.Clock = clk
		o.OnSendSynced = func(_ inventory.StoreKey, d time.Duration) {
			lagMu.Lock()
			lags = append(lags, d)
			lagMu.Unlock()
		}
	})
	// Following: the sink records, the engine is not running.
	send := sendFor("while-following", testKey)
	send.ReceivedAt = clk.Now()
	if err := webhookserver.NewDurableSink(h.inv, e.NoteSend).Accept(context.Background(), send); err != nil {
		t.Fatal(err)
	}
	clk.Step(20 * time.Millisecond) // this replica starts leading later
	// The old leader synced it and cleared the mark before this one leads.
	if marks, err := h.inv.Dirty(context.Background()); err != nil || len(marks) != 1 {
		t.Fatalf("dirty marks %v, %v", marks, err)
	} else if _, err := h.inv.ClearDirty(context.Background(), testKey, marks[0].Seq); err != nil {
		t.Fatal(err)
	}

	run(t, e) // takes over
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the first pull as leader", synced(e, testKey))
	lagMu.Lock()
	defer lagMu.Unlock()
	if len(lags) != 0 {
		t.Fatalf("a send synced by the previous leader was reported as lag %v", lags)
	}
}

// summaryFailing is an inventory whose Summary fails once armed: after
// passes more calls have succeeded. Unarmed (passes < 0) it never fails.
type summaryFailing struct {
	inventory.Store
	passes atomic.Int64
}

func (s *summaryFailing) Summary(ctx context.Context, key inventory.StoreKey) (inventory.Summary, error) {
	for {
		n := s.passes.Load()
		if n < 0 {
			break
		}
		if n == 0 {
			return inventory.Summary{}, errors.New("summary unavailable")
		}
		if s.passes.CompareAndSwap(n, n-1) {
			break
		}
	}
	return s.Store.Summary(ctx, key)
}

// An incremental pull that changed rows reads the SKU count back; when that
// read fails, the previous count stays rather than dropping to zero.
func TestFailedSummaryAfterAPullKeepsTheSKUCount(t *testing.T) {
	h := newHarness(t, nil)
	inv := &summaryFailing{Store: h.inv}
	inv.passes.Store(-1)
	e, status := newEngine(t, h, func(o *Options) { o.Inventory = inv })
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))
	before, _ := e.Snapshot(testKey)
	if before.SKUs != 50 {
		t.Fatalf("after import: SKUs %d, want 50", before.SKUs)
	}

	// The incremental pull reads the watermark with Summary; the read of
	// the count after it fails.
	inv.passes.Store(1)
	h.clk.Advance(time.Minute)
	sale(t, h, "1", "8000005", 1)
	e.RequestPull(testKey, TriggerSend)
	waitFor(t, 5*time.Second, "the incremental pull", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.LastPull.After(before.LastPull)
	})
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatalf("the pull did not bring the sale in: %s", d)
	}
	if s, _ := e.Snapshot(testKey); s.SKUs != 50 {
		t.Fatalf("SKUs %d after a pull whose summary read failed, want the previous 50", s.SKUs)
	}
	waitFor(t, 5*time.Second, "status after the pull", func() bool {
		u, ok := status.last()
		return ok && u.LastPullTime.After(before.LastPull)
	})
	for _, u := range status.all() {
		if u.SKUs != 50 {
			t.Fatalf("status published SKUs %d, want 50", u.SKUs)
		}
	}
}

// switchTokens is a TokenSource whose Secret is missing until present is set.
type switchTokens struct {
	present atomic.Bool
	forgets atomic.Int64
}

func (s *switchTokens) Credentials(context.Context, storeaccess.CredentialsRef) (storeaccess.Credentials, error) {
	if !s.present.Load() {
		return storeaccess.Credentials{}, &storeaccess.ConfigError{Reason: v1alpha1.ReasonSecretNotFound, Message: "Secret smaregi-credentials does not exist"}
	}
	return storeaccess.Credentials{AccessToken: testToken}, nil
}
func (s *switchTokens) Forget(storeaccess.CredentialsRef) { s.forgets.Add(1) }

// The store is applied before its Secret (GitOps): the first pull fails with
// a configuration error and backs off long. Once the Secret exists the
// controller's check turns CredentialsValid True, and that lifts the back-off
// at once, with the generation unchanged. A CredentialsValid that stays True
// (the controller's periodic re-checks) lifts nothing.
func TestCredentialsValidTurningTrueLiftsTheConfigBackoff(t *testing.T) {
	h := newHarness(t, nil)
	tokens := &switchTokens{}
	e, _ := newEngine(t, h, func(o *Options) {
		o.Tokens = tokens
		o.ConfigBackoff, o.ConfigBackoffMax = time.Hour, time.Hour
	})
	run(t, e)
	cfg := h.config()
	cfg.CredentialsValid, cfg.CredentialsValidSince = metav1.ConditionFalse, time.Now().Truncate(time.Second)
	e.UpsertStore(cfg)
	waitFor(t, 5*time.Second, "InventorySynced=False/SecretNotFound", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.Condition.Status == metav1.ConditionFalse && s.Condition.Reason == v1alpha1.ReasonSecretNotFound
	})
	blocked, _ := e.Snapshot(testKey)
	if blocked.BlockedUntil.IsZero() {
		t.Fatal("no back-off after a configuration error")
	}
	e.UpsertStore(cfg) // a re-list, nothing new
	if s, _ := e.Snapshot(testKey); !s.BlockedUntil.Equal(blocked.BlockedUntil) {
		t.Fatalf("an unchanged object moved the back-off from %s to %s", blocked.BlockedUntil, s.BlockedUntil)
	}

	tokens.present.Store(true)
	forgets := tokens.forgets.Load()
	cfg.CredentialsValid, cfg.CredentialsValidSince = metav1.ConditionTrue, cfg.CredentialsValidSince.Add(time.Second)
	e.UpsertStore(cfg)
	if tokens.forgets.Load() == forgets {
		t.Error("CredentialsValid turning True kept the cached token")
	}
	waitFor(t, 5*time.Second, "the initial import once the credentials are valid", synced(e, testKey))
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatal(d)
	}

	// Back into a configuration back-off (the shop switches stock_ref off).
	if err := h.sim.SetAccount(smaregisim.Account{DisabledFunctions: []string{"stock_ref"}}); err != nil {
		t.Fatal(err)
	}
	e.RequestPull(testKey, TriggerSend)
	waitFor(t, 5*time.Second, "InventorySynced=False/FunctionDisabled", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.Condition.Reason == v1alpha1.ReasonFunctionDisabled
	})
	blocked, _ = e.Snapshot(testKey)
	e.UpsertStore(cfg) // CredentialsValid still True, same transition
	if s, _ := e.Snapshot(testKey); !s.BlockedUntil.Equal(blocked.BlockedUntil) {
		t.Fatalf("a CredentialsValid that stayed True moved the back-off from %s to %s", blocked.BlockedUntil, s.BlockedUntil)
	}
	// It went False and True again between two looks of the watch: the new
	// transition time says so.
	if err := h.sim.SetAccount(smaregisim.Account{}); err != nil {
		t.Fatal(err)
	}
	cfg.CredentialsValidSince = cfg.CredentialsValidSince.Add(time.Minute)
	e.UpsertStore(cfg)
	waitFor(t, 5*time.Second, "recovery", func() bool {
		s, _ := e.Snapshot(testKey)
		return s.Condition.Status == metav1.ConditionTrue
	})
}

// Polls that keep finding changes no send announced say that Smaregi's send
// settings are probably off: in InventorySynced and once as an event.
func TestPollsFindingUnannouncedChangesSaySendsAreOff(t *testing.T) {
	h := newHarness(t, nil)
	rec := events.NewFakeRecorder(20)
	e, status := newEngine(t, h, func(o *Options) { o.Recorder = rec })
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))

	for i := range UnannouncedPolls {
		if _, err := h.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: "8000001", Amount: -1, StockDivision: "14"}); err != nil {
			t.Fatal(err)
		}
		before, _ := e.Snapshot(testKey)
		e.RequestPull(testKey, TriggerPoll)
		waitFor(t, 5*time.Second, "poll "+strconv.Itoa(i+1), func() bool {
			s, _ := e.Snapshot(testKey)
			return s.LastPull.After(before.LastPull)
		})
	}
	waitFor(t, 5*time.Second, "a SendsMissing event", func() bool {
		select {
		case ev := <-rec.Events:
			return strings.Contains(ev, "SendsMissing") && strings.Contains(ev, "API送信設定")
		default:
			return false
		}
	})
	h.clk.Advance(10 * time.Second) // past the status rate limit
	waitFor(t, 5*time.Second, "InventorySynced to say the sends are probably off", func() bool {
		u, ok := status.last()
		return ok && strings.Contains(u.Condition.Message, "send settings") && u.Condition.Status == metav1.ConditionTrue
	})
}

// Sends alone pull an idle store at once, up to SendPullBurst pulls; then
// at most SendPullRate a second, each pull covering every send before it.
// Other triggers are not paced.
func TestSendPullsArePacedPerStoreOnceTheBurstIsUsed(t *testing.T) {
	h := newHarness(t, nil)
	clk := clocktesting.NewFakeClock(time.Now())
	e, _ := newEngine(t, h, func(o *Options) { o.Clock, o.SendPullRate, o.SendPullBurst = clk, 2, 3 })
	q := withDrain(t, e)
	run(t, e)
	e.UpsertStore(h.config())
	waitFor(t, 5*time.Second, "the initial import", synced(e, testKey))
	drain(t, e, q)
	start := h.refCalls.Load()
	pulls := func() int64 { return h.refCalls.Load() - start }

	for i := range 3 {
		e.RequestPull(testKey, TriggerSend)
		waitFor(t, 5*time.Second, fmt.Sprintf("send pull %d of the burst", i+1), func() bool { return pulls() == int64(i+1) })
	}
	for range 10 {
		e.RequestPull(testKey, TriggerSend)
	}
	drain(t, e, q)
	if got := pulls(); got != 3 {
		t.Fatalf("%d pulls after the burst of 3 was used and 10 more sends, want 3 (the rest wait for a token)", got)
	}
	e.RequestPull(testKey, TriggerAdjustment)
	waitFor(t, 5*time.Second, "the adjustment's pull, not paced", func() bool { return pulls() == 4 })
	// The adjustment's pull covered the sends before it; a new send waits
	// for the bucket's next token (1/2 s), then all pending sends share one
	// pull.
	e.RequestPull(testKey, TriggerSend)
	e.RequestPull(testKey, TriggerSend)
	drain(t, e, q)
	if got := pulls(); got != 4 {
		t.Fatalf("%d pulls before the bucket refilled, want 4", got)
	}
	clk.Step(500 * time.Millisecond)
	waitFor(t, 5*time.Second, "the paced send pull", func() bool { return pulls() == 5 })
	drain(t, e, q)
	if got := pulls(); got != 5 {
		t.Fatalf("%d pulls after one token came, want 5 (one pull for both sends)", got)
	}
}
