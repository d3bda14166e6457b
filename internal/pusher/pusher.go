// Package pusher applies adjustments (changes from other channels) to
// Smaregi exactly once (design principle 3).
//
// Per store, one worker at a time: it gathers the pending adjustments
// (at once when the store is idle; what arrives during a call waits for
// the next and shares it, so a burst shares calls), merges their lines
// into one relative stock_upd row per product (division 15, at most 500
// rows), records the attempt durably, sends it, and settles it:
//
//   - success: the adjustments are applied and the attempt done, in one
//     transaction; the store gets a pull (OnApplied);
//   - ambiguous (timeout, lost connection, any 5xx, an answer that cannot
//     be decoded; smaregi.IsAmbiguous), or an attempt found
//     open at start-up (the operator died mid-push): the attempt is decided
//     from Smaregi's StockHistory (resolve.go explains how and what is
//     guaranteed); until it is decided nothing else is sent for the store,
//     and while it cannot be decided the store is counted in
//     smaregi_pusher_blocked_stores (metrics.go). A server may still apply
//     a call after its request ended (a slow server or gateway finishing an
//     abandoned request), so a history without the attempt's rows means
//     "not applied" only once SettlePeriod has passed since the request
//     ended; until then the history is re-read with back-off, the attempt
//     stays open and its adjustments pending (awaiting confirmation). The
//     request's end is bounded durably by the attempt's RequestDeadline, so
//     a restarted or new leader waits at least as long;
//   - a definite rejection (a Smaregi error code): nothing was applied; a
//     single adjustment is marked failed with Smaregi's reason, a batch of
//     several is split in halves and resent until the culprits are alone;
//   - configuration errors (13/14/21/22/23/24) and transient errors: the
//     attempt is void (nothing was applied), the adjustments stay pending
//     and the store backs off (long for configuration errors);
//   - a target that cannot be looked up (storeaccess.ConfigError: suspended, no
//     credentials) is found before anything is recorded: no attempt, a long
//     back-off, and the store is not counted as blocked.
//
// The Pusher is a controller-runtime Runnable that needs leader election:
// two pushers on one store could each resolve the other's attempt wrongly.
package pusher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
)

// Targets looks up where and as whom a store's adjustments are sent
// (storeregistry.Targets in the operator). An error leaves the store's work
// pending and is retried with back-off: ConfigBackoff when it is a
// *storeaccess.ConfigError, Backoff otherwise.
//
// A configuration error (the SmaregiStore is suspended, or its credentials
// Secret or key is missing: only a person changes that) is found before
// anything is recorded: the pusher records nothing, waits ConfigBackoff,
// logs it at info level and does not count the store in
// smaregi_pusher_blocked_stores (a deliberate suspend must not page anyone).
type Targets interface {
	Target(ctx context.Context, key inventory.StoreKey) (storeaccess.Target, error)
}

// isTargetConfig reports whether a target lookup failed on the store's
// configuration.
func isTargetConfig(err error) bool { return storeaccess.IsConfigError(err) }

// Options configure a Pusher. Store and Targets are required.
type Options struct {
	Store   Store
	Targets Targets
	// Clients builds the Smaregi clients, from the process's shared
	// limiter registry (one limiter per contract); nil builds unthrottled
	// clients.
	Clients *storeaccess.Clients
	// RequestTimeout bounds one call (default smaregi.DefaultRequestTimeout).
	RequestTimeout time.Duration
	// ReadBackoff and MaxReadAttempts tune stock history reads.
	ReadBackoff     smaregi.Backoff
	MaxReadAttempts int

	// Window is how long a woken worker waits for more adjustments before
	// sending. Default 0: an idle store's adjustment is sent at once, and
	// a burst still shares calls, because adjustments arriving while a call
	// is in flight are all taken by the next one (the call is the window).
	Window time.Duration
	// SweepInterval is the safety-net scan for stores with pending work
	// (default 30s).
	SweepInterval time.Duration
	// SkewMargin bounds the difference between this host's clock and
	// Smaregi's, plus Smaregi's whole-second times (default 5s). It widens
	// the history window read to resolve an attempt.
	SkewMargin time.Duration
	// Identity names this pusher in the attempts it records (the leader
	// that made them), e.g. hostname_random (default os.Hostname() plus a
	// random suffix).
	Identity string
	// SettlePeriod is how long after a call's request ended its history
	// must still be re-read before the call is concluded not applied: long
	// enough for any server-side completion of an abandoned request
	// (default 5m; negative means none). The request's end is the moment
	// this pusher saw the call fail, or, for an attempt it did not send
	// (found open after a restart or a change of leader), the attempt's
	// RequestDeadline.
	SettlePeriod time.Duration
	// ResolveDelay is waited before the first history read of a resolution,
	// in case Smaregi's history lags its stock (default 500ms).
	ResolveDelay time.Duration
	// Backoff after a transient failure or an undecidable resolution,
	// doubling from Initial to Max (defaults 250ms, 30s).
	Backoff smaregi.Backoff
	// ConfigBackoff is the wait after a configuration error (default 5m).
	ConfigBackoff time.Duration
	// AttemptRetention keeps settled attempts (their history claims) this
	// long (default 24h).
	AttemptRetention time.Duration
	// AdjustmentRetention keeps settled adjustments this long (default 30
	// days; 0 means the default): an applied one from when it was applied
	// and reflected in the mirror, a failed one from its submission.
	// Pending adjustments, and applied ones no pull has reflected yet, are
	// kept however old. This is the idempotency window of the hub API: once
	// an adjustment is deleted, a request reusing its ID is a new
	// adjustment and is applied again. Deletion is checked whenever a
	// store's worker runs (at its start, then at most every SweepInterval),
	// so an adjustment may outlive the retention by a little, or for long
	// in a store that gets no new adjustments.
	AdjustmentRetention time.Duration
	// DisableMemo leaves the memo off the rows, for a Smaregi that rejects
	// it (the operator's --smaregi-send-memo=false); resolution then relies
	// on (product, amount) order alone.
	DisableMemo bool

	// OnApplied is called (from the store's worker) after adjustments of
	// the store were applied, so the integrator can ask for a pull.
	OnApplied func(key inventory.StoreKey)

	// Clock is read for every time the pusher records or compares (attempt
	// times, retention cut-offs, the stuck-store gauges) and drives its
	// windows, back-offs, resolve delays and sweeps (default the real
	// clock; tests step a fake one). Deadlines of I/O (RequestTimeout, the
	// settling of an outcome) stay in real time.
	Clock clock.WithTicker
}

func (o Options) withDefaults() Options {
	if o.Window < 0 {
		o.Window = 0
	}
	if o.SweepInterval <= 0 {
		o.SweepInterval = 30 * time.Second
	}
	if o.SkewMargin <= 0 {
		o.SkewMargin = 5 * time.Second
	}
	if o.ResolveDelay < 0 {
		o.ResolveDelay = 0
	} else if o.ResolveDelay == 0 {
		o.ResolveDelay = 500 * time.Millisecond
	}
	if o.Identity == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.Identity = host + "_" + hex.EncodeToString(b)
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = smaregi.DefaultRequestTimeout
	}
	if o.SettlePeriod < 0 {
		o.SettlePeriod = 0
	} else if o.SettlePeriod == 0 {
		o.SettlePeriod = 5 * time.Minute
	}
	if o.Backoff.Initial <= 0 {
		o.Backoff.Initial = 250 * time.Millisecond
	}
	if o.Backoff.Max <= 0 {
		o.Backoff.Max = 30 * time.Second
	}
	if o.ConfigBackoff <= 0 {
		o.ConfigBackoff = 5 * time.Minute
	}
	if o.AttemptRetention <= 0 {
		o.AttemptRetention = 24 * time.Hour
	}
	if o.AdjustmentRetention <= 0 {
		o.AdjustmentRetention = 30 * 24 * time.Hour
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	return o
}

// Pusher runs one worker per store with pending adjustments.
type Pusher struct {
	opts    Options
	metrics *pusherMetrics

	mu      sync.Mutex
	workers map[inventory.StoreKey]*worker
	ctx     context.Context // set by Start
	wg      sync.WaitGroup

	// blocked holds, per store whose open attempt could not be resolved,
	// that attempt's StartedAt; read at scrape time (metrics.go).
	blockedMu sync.Mutex
	blocked   map[inventory.StoreKey]time.Time

	// keepsMemos holds the stores whose Smaregi was seen keeping our memos
	// in StockHistory (resolve.go); in memory, rebuilt after a restart
	// from retained applied attempts and the history (probeMemos).
	memoMu     sync.Mutex
	keepsMemos map[inventory.StoreKey]bool

	// ended holds, per attempt this pusher sent whose call failed
	// ambiguously, when the call returned: the request had ended by then.
	// In memory only; without it the attempt's RequestDeadline bounds the
	// end (settleBy).
	endedMu sync.Mutex
	ended   map[string]time.Time
}

// New checks the options and returns a Pusher; Start runs it.
func New(opts Options) (*Pusher, error) {
	if opts.Store == nil || opts.Targets == nil {
		return nil, errors.New("pusher: Store and Targets are required")
	}
	return &Pusher{opts: opts.withDefaults(), metrics: getMetrics(), workers: map[inventory.StoreKey]*worker{},
		blocked: map[inventory.StoreKey]time.Time{}, keepsMemos: map[inventory.StoreKey]bool{},
		ended: map[string]time.Time{}}, nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable: only the
// leader pushes.
func (p *Pusher) NeedLeaderElection() bool { return true }

// Start implements manager.Runnable: it wakes a worker for every store with
// pending work or an open attempt, then for every new adjustment and on
// every sweep, until ctx ends; it returns after the workers stopped. A
// stock_upd in flight when ctx ends is finished first (bounded by
// RequestTimeout) and its outcome recorded, so that the manager releases
// the lease only after it. Open attempts of a worker stopped mid-push stay
// open for the next Start.
func (p *Pusher) Start(ctx context.Context) error {
	logger := log.FromContext(ctx).WithName("pusher")
	ctx = log.IntoContext(ctx, logger)
	p.mu.Lock()
	p.ctx = ctx
	p.mu.Unlock()
	// The gauges show this pusher's stores while it runs; a stopped pusher
	// (a lost leadership) reports nothing.
	stuck.add(p)
	defer stuck.remove(p)
	defer p.wg.Wait()

	sub := p.opts.Store.SubscribeAdjustments(ctx)
	p.sweep(ctx, logger)
	tick := p.opts.Clock.NewTicker(p.opts.SweepInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case key, ok := <-sub:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("pusher: adjustment feed closed (inventory store closed?)")
			}
			p.Kick(key)
		case <-tick.C():
			p.sweep(ctx, logger)
		}
	}
}

func (p *Pusher) sweep(ctx context.Context, logger logr.Logger) {
	keys, err := p.opts.Store.StoresWithPendingAdjustments(ctx)
	if err != nil {
		if ctx.Err() == nil {
			logger.Error(err, "listing stores with pending adjustments")
		}
		return
	}
	for _, k := range keys {
		p.Kick(k)
	}
}

// StoreUpdated implements storeregistry.Subscriber: a change that may end
// a configuration error (an unsuspend, fixed credentials) ends the store's
// configuration wait at once instead of after ConfigBackoff.
func (p *Pusher) StoreUpdated(cfg storeregistry.StoreConfig, retry bool) {
	if retry {
		p.Kick(cfg.Key)
	}
}

// StoreRemoved implements storeregistry.Subscriber. The outbox of a deleted
// store is the sync engine's to delete; its worker stops with nothing to do,
// and its series of smaregi_pusher_adjustments_total go.
func (p *Pusher) StoreRemoved(_ context.Context, key inventory.StoreKey) error {
	p.metrics.outcomes.DeletePartialMatch(prometheus.Labels{"namespace": key.Namespace, "name": key.Name})
	return nil
}

// Kick wakes the store's worker, starting one if needed. Before Start it
// does nothing (Start's first sweep finds the work).
func (p *Pusher) Kick(key inventory.StoreKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx == nil || p.ctx.Err() != nil {
		return
	}
	if w := p.workers[key]; w != nil {
		select {
		case w.wake <- struct{}{}:
		default:
		}
		return
	}
	w := &worker{p: p, key: key, wake: make(chan struct{}, 1)}
	w.wake <- struct{}{}
	p.workers[key] = w
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		w.run(p.ctx)
	}()
}

// retire removes an idle worker unless it was woken meanwhile.
func (p *Pusher) retire(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-w.wake:
		return false
	default:
	}
	delete(p.workers, w.key)
	return true
}

// newAttemptID returns a fresh attempt ID made at now; one sent without
// memos ends in noMemoSuffix (resolve.go).
func newAttemptID(now time.Time, memo bool) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	id := fmt.Sprintf("%x-%s", now.UnixNano(), hex.EncodeToString(b))
	if !memo {
		id += noMemoSuffix
	}
	return id
}

// memosKept reports whether the store's Smaregi is known to keep memos.
func (p *Pusher) memosKept(key inventory.StoreKey) bool {
	p.memoMu.Lock()
	defer p.memoMu.Unlock()
	return p.keepsMemos[key]
}

// setMemosKept records that the store's Smaregi keeps memos.
func (p *Pusher) setMemosKept(key inventory.StoreKey) {
	p.memoMu.Lock()
	defer p.memoMu.Unlock()
	p.keepsMemos[key] = true
}

// client returns the Smaregi backend of the store's current target.
func (p *Pusher) client(ctx context.Context, key inventory.StoreKey) (storeaccess.Backend, storeaccess.Target, error) {
	t, err := p.opts.Targets.Target(ctx, key)
	if err != nil {
		return nil, t, fmt.Errorf("looking up the Smaregi target of %s: %w", key, err)
	}
	c, err := p.opts.Clients.Backend(t, storeaccess.Tune{
		RequestTimeout: p.opts.RequestTimeout, Backoff: p.opts.ReadBackoff, MaxReadAttempts: p.opts.MaxReadAttempts,
	})
	if err != nil {
		return nil, t, fmt.Errorf("Smaregi client for %s: %w", key, err)
	}
	return c, t, nil
}

// maxRows is how many products one all-or-none write of the store carries
// (its API's). A store whose target cannot be looked up gets the legacy
// size: the push then stops at the same look-up, before anything is sent.
func (p *Pusher) maxRows(ctx context.Context, key inventory.StoreKey) int {
	t, err := p.opts.Targets.Target(ctx, key)
	if err != nil {
		return storeaccess.MaxRowsPerWrite(v1alpha1.APILegacy)
	}
	return storeaccess.MaxRowsPerWrite(t.API)
}

// setBlocked records that the store's open attempt started at startedAt
// could not be resolved; a zero startedAt clears the store.
func (p *Pusher) setBlocked(key inventory.StoreKey, startedAt time.Time) {
	p.blockedMu.Lock()
	defer p.blockedMu.Unlock()
	if startedAt.IsZero() {
		delete(p.blocked, key)
		return
	}
	p.blocked[key] = startedAt
}

// noteEnded records that attempt id's call returned at t without a
// decisive answer.
func (p *Pusher) noteEnded(id string, t time.Time) {
	p.endedMu.Lock()
	defer p.endedMu.Unlock()
	p.ended[id] = t
}

// forgetEnded drops what noteEnded recorded once the attempt is settled.
func (p *Pusher) forgetEnded(id string) {
	p.endedMu.Lock()
	defer p.endedMu.Unlock()
	delete(p.ended, id)
}

// settleBy is the time before which attempt a must not be concluded not
// applied: SettlePeriod after its request ended. The end is when this
// pusher saw the call return, if it did; otherwise the durable bound, the
// attempt's RequestDeadline (StartedAt plus the request timeout for
// attempts recorded before that field existed).
func (p *Pusher) settleBy(a inventory.Attempt) time.Time {
	end := a.RequestDeadline
	if end.IsZero() {
		end = a.StartedAt.Add(p.opts.RequestTimeout)
	}
	p.endedMu.Lock()
	if t, ok := p.ended[a.ID]; ok && t.Before(end) {
		end = t
	}
	p.endedMu.Unlock()
	return end.Add(p.opts.SettlePeriod)
}
