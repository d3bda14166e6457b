package mirror

import (
	"errors"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// Defaults of Options.
const (
	DefaultWorkers  = 4
	DefaultOverlap  = 60 * time.Second
	DefaultTokenTTL = 5 * time.Minute
	// DefaultStatusInterval spaces a store's status writes to the
	// kube-apiserver. It is off both user paths: the hub API reads the
	// inventory store, not status, and a condition change is written at
	// once.
	DefaultStatusInterval = 5 * time.Second
	// DefaultTick is the resolution of the poll and full-resync schedule
	// (minutes apart) and of the end of a back-off. It is off both user
	// paths: a send, an adjustment's pull and a configuration change queue
	// the store at once.
	DefaultTick = time.Second
	// DefaultSendPullRate and DefaultSendPullBurst bound the pulls that
	// sends alone ask for, per store: an idle store pulls at once (the
	// burst), a store whose sends keep coming is pulled at most twice a
	// second, every pull covering all the sends before it. A sale brings
	// two sends (transaction_send, stock_send), so a store ringing up to
	// about one sale a second is never held back; a busier one gets up to
	// 500 ms more lag, and costs at most 2 of its contract's 10 calls a
	// second (--smaregi-rate-limit, shared with its other stores and the
	// pusher); a burst of 400 sales (800 sends) costs a few calls.
	DefaultSendPullRate  = 2.0
	DefaultSendPullBurst = 4
	// DefaultPollStretchMax bounds how far an idle store's poll is
	// stretched: to at most 8 times spec.sync.pollInterval (8 minutes at
	// the default 1m), never past the full resync interval. See
	// pollIntervalLocked for why that is safe.
	DefaultPollStretchMax   = 8
	DefaultRetryBase        = time.Second
	DefaultRetryMax         = 5 * time.Minute
	DefaultConfigBackoff    = time.Minute
	DefaultConfigBackoffMax = 15 * time.Minute
)

// Options configures an Engine. Inventory is required; Readers too until the
// smaregi client is linked in by default (see DefaultReaders).
type Options struct {
	Inventory inventory.Store
	// Client writes status with server-side apply. Ignored when Status is
	// set. SetupWithManager fills it from the manager.
	Client client.Client
	// APIReader reads credential Secrets uncached: the manager's cache holds
	// only labelled Secrets. Ignored when Tokens is set. SetupWithManager
	// fills it from the manager.
	APIReader client.Reader
	// Clients builds the Smaregi clients, from the process-wide
	// per-contract rate limiter registry shared with every other caller.
	Clients *storeaccess.Clients
	// Recorder emits Kubernetes events (initial import, drift). Optional.
	Recorder events.EventRecorder
	// Clock drives scheduling, back-off and status rate limiting.
	Clock clock.WithTicker
	// Workers is the number of stores pulled at once.
	Workers int
	// Overlap is re-read below the watermark on each incremental pull.
	Overlap time.Duration
	// StatusInterval is the least time between two status writes of one
	// store; a change of the InventorySynced condition is written at once.
	StatusInterval time.Duration
	// TokenTTL is how long an access token read from its Secret is reused.
	TokenTTL time.Duration
	// Tick is the resolution of the poll and full-resync schedule.
	Tick time.Duration
	// SendPullRate (pulls a second) and SendPullBurst bound, per store, the
	// pulls asked for by sends alone (see DefaultSendPullRate). Polls,
	// start-up, full reconciles and the pusher's pulls are not counted.
	SendPullRate  float64
	SendPullBurst int
	// PollStretchMax is the most a store's poll interval is multiplied by
	// while its polls find nothing new (see DefaultPollStretchMax); 1
	// polls at spec.sync.pollInterval always.
	PollStretchMax int
	// RetryBase and RetryMax bound the per-store exponential back-off after
	// transient errors; ConfigBackoff and ConfigBackoffMax after
	// configuration errors, which need a human and must not hammer Smaregi.
	RetryBase, RetryMax             time.Duration
	ConfigBackoff, ConfigBackoffMax time.Duration
	Log                             logr.Logger
	// Readers builds StockReaders; default DefaultReaders with Limiters.
	Readers ReaderFactory
	// Tokens supplies access tokens; default reads the Secret via APIReader.
	Tokens TokenSource
	// Status writes status; default applies it via Client.
	Status StatusWriter
	// OnSendSynced, if set, is called with the send→mirror lag each time a
	// pull finishes that covers a pending send: the time from the oldest
	// such send's ReceivedAt to the end of the first successful pull that
	// started after it. It is also observed in smaregi_mirror_send_lag_seconds.
	OnSendSynced func(key inventory.StoreKey, lag time.Duration)
}

// New returns an engine. It does no I/O; Start runs it.
func New(opts Options) (*Engine, error) {
	if opts.Inventory == nil {
		return nil, errors.New("mirror: Options.Inventory is required")
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	if opts.Overlap <= 0 {
		opts.Overlap = DefaultOverlap
	}
	if opts.StatusInterval <= 0 {
		opts.StatusInterval = DefaultStatusInterval
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	if opts.Tick <= 0 {
		opts.Tick = DefaultTick
	}
	if opts.SendPullRate <= 0 {
		opts.SendPullRate = DefaultSendPullRate
	}
	if opts.SendPullBurst <= 0 {
		opts.SendPullBurst = DefaultSendPullBurst
	}
	if opts.PollStretchMax <= 0 {
		opts.PollStretchMax = DefaultPollStretchMax
	}
	if opts.RetryBase <= 0 {
		opts.RetryBase = DefaultRetryBase
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = DefaultRetryMax
	}
	if opts.ConfigBackoff <= 0 {
		opts.ConfigBackoff = DefaultConfigBackoff
	}
	if opts.ConfigBackoffMax <= 0 {
		opts.ConfigBackoffMax = DefaultConfigBackoffMax
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logr.Discard()
	}
	e := &Engine{
		opts:    opts,
		inv:     opts.Inventory,
		clock:   opts.Clock,
		log:     opts.Log,
		puller:  puller{inv: opts.Inventory, overlap: opts.Overlap, now: opts.Clock.Now},
		retry:   workqueue.NewTypedItemExponentialFailureRateLimiter[inventory.StoreKey](opts.RetryBase, opts.RetryMax),
		kick:    make(chan struct{}, 1),
		stores:  map[inventory.StoreKey]*storeState{},
		metrics: getMetrics(),
	}
	// The queue's own rate limiter is unused (back-off is decided per store
	// in sync, where triggers arriving during a back-off are held rather
	// than hammering Smaregi); the queue gives per-key dedupe and "re-queue
	// once after Done" coalescing.
	e.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedMaxOfRateLimiter[inventory.StoreKey](),
		workqueue.TypedRateLimitingQueueConfig[inventory.StoreKey]{Name: "smaregi_mirror_pulls", Clock: opts.Clock},
	)
	e.wire()
	return e, nil
}

// wire builds the collaborators that depend on options SetupWithManager may
// fill in late.
func (e *Engine) wire() {
	e.readers = e.opts.Readers
	if e.readers == nil {
		e.readers = DefaultReaders(e.opts.Clients, storeaccess.Tune{})
	}
	e.tokens = e.opts.Tokens
	if e.tokens == nil && e.opts.APIReader != nil {
		e.tokens = storeaccess.NewTokens(e.opts.APIReader, e.opts.TokenTTL, e.clock)
	}
	e.status = e.opts.Status
	if e.status == nil && e.opts.Client != nil {
		e.status = NewStatusApplier(e.opts.Client)
	}
}
