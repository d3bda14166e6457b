package pusher

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

const (
	testContract = "C0001"
	testToken    = "tok-very-secret-1234"
	initialStock = 1000
	numProducts  = 20
)

// harness is the simulator over real HTTP on 127.0.0.1 and a bbolt file.
type harness struct {
	sim      *smaregisim.Server
	endpoint string
	path     string // bbolt file
	inv      inventory.Store
	keys     []inventory.StoreKey
	storeIDs map[inventory.StoreKey]string
}

func newHarness(t testing.TB, stores int) *harness {
	t.Helper()
	return newHarnessWith(t, stores, nil)
}

// newHarnessWith is newHarness with the simulator's options changed by mod.
func newHarnessWith(t testing.TB, stores int, mod func(*smaregisim.Options)) *harness {
	t.Helper()
	h := &harness{storeIDs: map[inventory.StoreKey]string{}}
	var ids []string
	for i := 1; i <= stores; i++ {
		id := fmt.Sprint(i)
		ids = append(ids, id)
		k := inventory.StoreKey{Namespace: "shops", Name: "s" + id}
		h.keys = append(h.keys, k)
		h.storeIDs[k] = id
	}
	so := smaregisim.Options{Contract: testContract, Token: testToken, Stores: ids,
		Products: numProducts, InitialStock: initialStock, Seed: 11}
	if mod != nil {
		mod(&so)
	}
	sim, err := smaregisim.New(so)
	if err != nil {
		t.Fatalf("smaregisim.New: %v", err)
	}
	h.sim = sim
	hs := httptest.NewServer(sim.Handler())
	h.endpoint = hs.URL + "/access/"
	h.path = filepath.Join(t.TempDir(), "inventory.db")
	h.reopen(t)
	t.Cleanup(func() {
		hs.Close()
		_ = sim.Close()
		_ = h.inv.Close()
	})
	return h
}

// reopen closes the store file (if open) and opens it again: what a
// restarted operator sees.
func (h *harness) reopen(t testing.TB) {
	t.Helper()
	if h.inv != nil {
		if err := h.inv.Close(); err != nil {
			t.Fatalf("closing the store: %v", err)
		}
	}
	inv, err := boltstore.Open(h.path)
	if err != nil {
		t.Fatalf("boltstore.Open: %v", err)
	}
	h.inv = inv
}

func (h *harness) Target(_ context.Context, key inventory.StoreKey) (storeaccess.Target, error) {
	id, ok := h.storeIDs[key]
	if !ok {
		return storeaccess.Target{}, fmt.Errorf("unknown store %s", key)
	}
	return storeaccess.Target{Endpoint: h.endpoint, ContractID: testContract, StoreID: id, Credentials: storeaccess.Credentials{AccessToken: testToken}}, nil
}

func (h *harness) options() Options {
	return Options{
		Store: h.inv, Targets: h, Clients: storeaccess.NewClients(smaregi.NewLimiterRegistry(0, 1), nil),
		RequestTimeout:  2 * time.Second,
		ReadBackoff:     smaregi.Backoff{Initial: 5 * time.Millisecond, Max: 50 * time.Millisecond},
		MaxReadAttempts: 10,
		Window:          10 * time.Millisecond,
		SweepInterval:   200 * time.Millisecond,
		SkewMargin:      2 * time.Second,
		ResolveDelay:    -1,
		// Short: the simulator here never applies a call late unless a
		// test asks for it (and sets its own).
		SettlePeriod:  50 * time.Millisecond,
		Backoff:       smaregi.Backoff{Initial: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		ConfigBackoff: time.Second,
	}
}

// start runs a pusher until the returned stop is called (or the test ends).
func (h *harness) start(t testing.TB, mod func(*Options)) (stop func()) {
	t.Helper()
	o := h.options()
	if mod != nil {
		mod(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var logged atomic.Int64
	ctx = log.IntoContext(ctx, funcr.New(func(prefix, args string) {
		// Bounded: a fault-heavy run logs a lot.
		if logged.Add(1) <= 30 {
			t.Log(prefix, args)
		}
	}, funcr.Options{}))
	done := make(chan error, 1)
	go func() { done <- p.Start(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Start: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func product(i int) string { return fmt.Sprint(8000001 + i) }

// randomAdjustment has 1–3 lines over a few hot products, so many
// adjustments carry identical rows.
func randomAdjustment(rng *rand.Rand, key inventory.StoreKey, id string) inventory.Adjustment {
	n := 1 + rng.IntN(3)
	a := inventory.Adjustment{Key: key, ID: id, Reason: "order"}
	used := map[string]bool{}
	for len(a.Lines) < n {
		p := product(rng.IntN(numProducts))
		if used[p] {
			continue
		}
		used[p] = true
		q := int64(rng.IntN(5) - 3) // -3..1
		if q == 0 {
			q = -1
		}
		a.Lines = append(a.Lines, inventory.AdjustmentLine{ProductID: p, Quantity: q})
	}
	return a
}

// submitAll submits adjustments from several goroutines at once; each
// submission waits for its commit, so they reach the pusher spread over
// many of its windows.
func submitAll(t testing.TB, st inventory.Store, adjs []inventory.Adjustment) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(adjs))
	const workers = 8
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(adjs); i += workers {
				if _, _, err := st.SubmitAdjustment(context.Background(), adjs[i]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("SubmitAdjustment: %v", err)
	}
}

// waitUntil polls cond until it returns nil, and fails the test with what
// and cond's last error after timeout. It is the tests' one poll loop: it
// waits for the effects of real I/O (HTTP to the simulator, commits of the
// inventory store, other goroutines). It makes no pusher time pass in a
// test that gives the pusher a FakeClock: there only the test's steps do
// (advance, stepUntil).
func waitUntil(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitSettled polls until no adjustment of adjs is pending.
func waitSettled(t testing.TB, st inventory.Store, adjs []inventory.Adjustment, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, "the adjustments to settle", func() error { return stillPending(t, st, adjs) })
}

// stillPending says how many adjustments of adjs are pending; nil if none.
func stillPending(t testing.TB, st inventory.Store, adjs []inventory.Adjustment) error {
	t.Helper()
	pending := 0
	for _, a := range adjs {
		got, ok, err := st.GetAdjustment(context.Background(), a.Key, a.ID)
		if err != nil || !ok {
			t.Fatalf("GetAdjustment(%s): %v %v", a.ID, ok, err)
		}
		if got.State == inventory.AdjustmentPending {
			pending++
		}
	}
	if pending > 0 {
		return fmt.Errorf("%d of %d adjustments still pending", pending, len(adjs))
	}
	return nil
}

// workerWaits reports whether a worker of a started pusher waits on clk:
// Start's sweep ticker is always one waiter, a worker's timer (its window,
// back-off, configuration wait or resolve delay) is another.
func workerWaits(clk *testingclock.FakeClock) error {
	if clk.Waiters() < 2 {
		return errors.New("no worker waits on the clock")
	}
	return nil
}

// advance steps clk by d once a worker waits on it: FakeClock.Step fires
// only the timers that exist, so a step taken before the worker waits
// would be lost. With one store, the worker's timer is the only one.
func advance(t testing.TB, clk *testingclock.FakeClock, d time.Duration) {
	t.Helper()
	waitUntil(t, 10*time.Second, "a worker to wait on the clock", func() error { return workerWaits(clk) })
	clk.Step(d)
}

// stepUntil steps clk by d whenever a worker waits on it, until done
// returns nil: for a phase where a worker may wait any number of windows
// (one per wake-up, and wake-ups race with its work).
func stepUntil(t testing.TB, clk *testingclock.FakeClock, d time.Duration, what string, done func() error) {
	t.Helper()
	waitUntil(t, 20*time.Second, what, func() error {
		err := done()
		if err != nil && workerWaits(clk) == nil {
			clk.Step(d)
		}
		return err
	})
}

// verifyExactlyOnce checks Smaregi against the adjustments that should be
// applied: per store and product, the division-15 history rows sum to the
// adjustments' total and the stock is the initial stock plus that total.
// Where memos are kept it also checks that every history row belongs to an
// applied attempt and each applied attempt's rows appear exactly once.
func verifyExactlyOnce(t testing.TB, h *harness, applied []inventory.Adjustment, memos bool) {
	t.Helper()
	want := map[inventory.StoreKey]map[string]int64{}
	for _, a := range applied {
		got, _, _ := h.inv.GetAdjustment(context.Background(), a.Key, a.ID)
		if got.State != inventory.AdjustmentApplied {
			t.Fatalf("adjustment %s is %s (%s), want applied", a.ID, got.State, got.FailureReason)
		}
		if want[a.Key] == nil {
			want[a.Key] = map[string]int64{}
		}
		for _, l := range a.Lines {
			want[a.Key][l.ProductID] += l.Quantity
		}
	}
	for _, key := range h.keys {
		sid := h.storeIDs[key]
		hist, err := h.sim.History(sid)
		if err != nil {
			t.Fatal(err)
		}
		sum := map[string]int64{}
		byMemo := map[string]map[string]int64{}
		for _, r := range hist {
			if r.StockDivision != "15" {
				continue
			}
			sum[r.ProductID] += r.Amount
			if !memos {
				continue
			}
			if byMemo[r.Memo] == nil {
				byMemo[r.Memo] = map[string]int64{}
			}
			if _, dup := byMemo[r.Memo][r.ProductID]; dup {
				t.Fatalf("store %s: memo %q applied twice for product %s", sid, r.Memo, r.ProductID)
			}
			byMemo[r.Memo][r.ProductID] = r.Amount
		}
		for i := 0; i < numProducts; i++ {
			p := product(i)
			if sum[p] != want[key][p] {
				t.Errorf("store %s product %s: division-15 history sums to %d, adjustments to %d", sid, p, sum[p], want[key][p])
			}
			stock, err := h.sim.StockOf(sid, p)
			if err != nil {
				t.Fatal(err)
			}
			if stock != initialStock+want[key][p] {
				t.Errorf("store %s product %s: stock %d, want %d", sid, p, stock, initialStock+want[key][p])
			}
		}
		if !memos {
			continue
		}
		ats, err := h.inv.AppliedAttempts(context.Background(), key, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		seen := 0
		for _, at := range ats {
			if len(at.Rows) == 0 {
				continue
			}
			rows := byMemo[inventory.AttemptMemo(at.ID)]
			if len(rows) != len(at.Rows) {
				t.Errorf("store %s attempt %s: %d history rows carry its memo, want %d", sid, at.ID, len(rows), len(at.Rows))
			}
			for _, r := range at.Rows {
				if rows[r.ProductID] != r.Amount {
					t.Errorf("store %s attempt %s product %s: history %d, attempt %d", sid, at.ID, r.ProductID, rows[r.ProductID], r.Amount)
				}
			}
			seen++
		}
		if seen != len(byMemo) {
			var extra []string
			for m := range byMemo {
				extra = append(extra, m)
			}
			sort.Strings(extra)
			t.Errorf("store %s: %d memos in history, %d applied attempts: %s", sid, len(byMemo), seen, strings.Join(extra, ", "))
		}
	}
}

// outcomeTotal sums smaregi_pusher_adjustments_total{outcome} over every
// store's series.
func outcomeTotal(t *testing.T, outcome string) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 64)
	go func() {
		getMetrics().outcomes.Collect(ch)
		close(ch)
	}()
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "outcome" && l.GetValue() == outcome {
				sum += d.GetCounter().GetValue()
			}
		}
	}
	return sum
}
