package smaregisim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FirstProductID is the productId of the first simulated product.
const FirstProductID = 8000001

// Server is a running simulator. All methods are safe for concurrent use.
type Server struct {
	beh   Behaviour
	log   *slog.Logger
	clock func() time.Time
	mux   *http.ServeMux

	mu       sync.Mutex // guards everything below and the state
	st       state
	contract string
	token    string
	account  Account
	allowed  []netip.Prefix
	disabled map[string]bool
	faults   Faults
	rng      *rand.Rand // faults; seeded
	txs      map[string]*transaction
	txOrder  []*transaction
	nextTx   int64

	sender *sender
	plat   *platform
	// lateCommits counts held or scheduled late commits (lateCommitRate).
	lateCommits atomic.Int64
	// afterFunc schedules late commits; time.AfterFunc but in tests.
	afterFunc func(time.Duration, func()) *time.Timer
}

// New builds a simulator with its products and initial stock, and starts the
// sender goroutine. Call Close to stop it.
func New(o Options) (*Server, error) {
	if o.Contract == "" || o.Token == "" {
		return nil, errors.New("smaregisim: contract and token are required")
	}
	if o.Products < 0 {
		return nil, fmt.Errorf("smaregisim: products must not be negative, got %d", o.Products)
	}
	if len(o.Stores) == 0 {
		o.Stores = []string{"1"}
	}
	switch o.Behaviour.Memo {
	case "", MemoKept, MemoIgnored, MemoRejected:
	default:
		return nil, fmt.Errorf("smaregisim: memo behaviour %q: want %s, %s or %s", o.Behaviour.Memo, MemoKept, MemoIgnored, MemoRejected)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SendClient == nil {
		o.SendClient = &http.Client{Timeout: 10 * time.Second}
	}
	s := &Server{
		beh:       o.Behaviour.withDefaults(),
		log:       o.Logger,
		clock:     o.Clock,
		contract:  o.Contract,
		token:     o.Token,
		disabled:  map[string]bool{},
		rng:       rand.New(rand.NewPCG(uint64(o.Seed), 0x5eed)),
		txs:       map[string]*transaction{},
		afterFunc: time.AfterFunc,
		st: state{
			stores: map[int64]*storeState{},
			byID:   map[int64]*product{},
			byCode: map[string]*product{},
		},
	}
	for _, id := range o.Stores {
		if err := s.st.addStore(strings.TrimSpace(id)); err != nil {
			return nil, fmt.Errorf("smaregisim: %w", err)
		}
	}
	s.makeProducts(o.Products, o.Seed)
	if o.InitialStock != 0 {
		// Initial stock predates the simulation: rows exist with the start
		// time but no history, as if loaded long ago.
		ts := FormatTime(s.clock())
		for _, ss := range s.st.storeOrder {
			ss.ordered = make([]*stockRow, 0, len(s.st.products))
			ss.upd = make([]updEntry, 0, len(s.st.products))
			for _, p := range s.st.products {
				r := ss.row(p, true)
				r.amount = o.InitialStock
				s.st.touch(ss, r, ts)
			}
		}
	}
	plat, err := newPlatform(s, o.Platform, o.Contract, o.SendClient, o.Seed)
	if err != nil {
		return nil, err
	}
	s.plat = plat
	s.sender = newSender(s, o.SendClient, rand.New(rand.NewPCG(uint64(o.Seed), 0x5e4d)))
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/access/", s.serveAccess)
	s.routeControl(s.mux)
	s.routePlatformControl(s.mux)
	s.mux.Handle("/", s.platformHandler())
	return s, nil
}

// makeProducts creates n products with unique 13-digit JAN-like codes drawn
// from the seed, so two runs with the same seed agree.
func (s *Server) makeProducts(n int, seed int64) {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9a5))
	s.st.products = make([]*product, 0, n)
	for i := range n {
		id := int64(FirstProductID + i)
		var code string
		for {
			body := "49" + fmt.Sprintf("%010d", rng.Int64N(1e10))
			code = body + strconv.Itoa(janCheckDigit(body))
			if s.st.byCode[code] == nil {
				break
			}
		}
		p := &product{id: id, Product: Product{
			ProductID:   strconv.FormatInt(id, 10),
			ProductCode: code,
			ProductName: fmt.Sprintf("テスト商品%d", i+1),
			Price:       100 * (1 + rng.Int64N(50)),
		}}
		s.st.products = append(s.st.products, p)
		s.st.byID[id] = p
		s.st.byCode[code] = p
	}
}

// janCheckDigit is the EAN-13 check digit of 12 digits.
func janCheckDigit(d string) int {
	sum := 0
	for i := range 12 {
		v := int(d[i] - '0')
		if i%2 == 1 {
			v *= 3
		}
		sum += v
	}
	return (10 - sum%10) % 10
}

// Handler serves /access/ (the legacy API), /_sim/ (the control API), and
// the Platform API (/app/{contract}/token, /{contract}/pos/…).
func (s *Server) Handler() http.Handler { return s.mux }

// Close stops the sender and the webhook outbox. Queued sends, webhooks and
// bulk jobs that were not posted are abandoned.
func (s *Server) Close() error {
	s.sender.close()
	s.plat.out.close()
	return nil
}

// SetAccount replaces the admin-screen account settings.
func (s *Server) SetAccount(a Account) error {
	var prefixes []netip.Prefix
	for _, ip := range a.AllowedIPs {
		p, err := parsePrefix(ip)
		if err != nil {
			return fmt.Errorf("smaregisim: allowed IP %q: %w", ip, err)
		}
		prefixes = append(prefixes, p)
	}
	disabled := map[string]bool{}
	for _, f := range a.DisabledFunctions {
		disabled[f] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.account = Account{
		DisabledFunctions: append([]string(nil), a.DisabledFunctions...),
		Locked:            a.Locked,
		AllowedIPs:        append([]string(nil), a.AllowedIPs...),
	}
	s.allowed, s.disabled = prefixes, disabled
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// Account returns the current admin-screen account settings.
func (s *Server) Account() Account {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.account
}

// SetToken re-issues the access token, as the admin screen does; the old
// token stops working at once.
func (s *Server) SetToken(token string) error {
	if token == "" {
		return errors.New("smaregisim: empty token")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
	return nil
}

// SetFaults replaces the injected faults; the zero value clears them.
func (s *Server) SetFaults(f Faults) error {
	for _, r := range []float64{f.ErrorRate, f.AppliedErrorRate, f.HTMLErrorRate, f.LostResponseRate, f.DropSendRate, f.DuplicateSendRate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("smaregisim: fault rate %v outside [0,1]", r)
		}
	}
	if f.LatencyMs < 0 {
		return fmt.Errorf("smaregisim: negative latency %d", f.LatencyMs)
	}
	if f.LateCommitRate < 0 || f.LateCommitRate > 1 {
		return fmt.Errorf("smaregisim: fault rate %v outside [0,1]", f.LateCommitRate)
	}
	if f.LateCommitDelay < 0 {
		return fmt.Errorf("smaregisim: negative late commit delay %s", time.Duration(f.LateCommitDelay))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	return nil
}

// Faults returns the injected faults.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// LateCommitsPending counts stock_upd calls held by the lateCommit fault
// that are not applied yet: a test waits for 0 before reading the final
// history.
func (s *Server) LateCommitsPending() int { return int(s.lateCommits.Load()) }

// chance draws from the seeded fault RNG.
func (s *Server) chance(rate float64) bool {
	if rate <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < rate
}

// Products returns every product in productId order.
func (s *Server) Products() []Product {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Product, len(s.st.products))
	for i, p := range s.st.products {
		out[i] = p.Product
	}
	return out
}

// Stock returns every stock row of a store in productId order.
func (s *Server) Stock(storeID string) ([]StockRow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.store(storeID)
	if err != nil {
		return nil, err
	}
	out := make([]StockRow, len(ss.ordered))
	for i, r := range ss.ordered {
		out[i] = r.public()
	}
	return out, nil
}

// StockOf returns one product's stock in a store; a missing row is 0.
func (s *Server) StockOf(storeID, productID string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.store(storeID)
	if err != nil {
		return 0, err
	}
	p, err := s.product(productID)
	if err != nil {
		return 0, err
	}
	if r := ss.rows[p.id]; r != nil {
		return r.amount, nil
	}
	return 0, nil
}

// History returns a store's stock history, oldest first; storeID "" returns
// every store's.
func (s *Server) History(storeID string) ([]HistoryRow, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := s.st.history
	if storeID != "" {
		ss, err := s.store(storeID)
		if err != nil {
			return nil, err
		}
		rows = ss.history
	}
	out := make([]HistoryRow, len(rows))
	for i, h := range rows {
		out[i] = h.HistoryRow
	}
	return out, nil
}

func (s *Server) store(id string) (*storeState, error) {
	n, ok := parseID(id, 5)
	if ss := s.st.stores[n]; ok && ss != nil {
		return ss, nil
	}
	return nil, fmt.Errorf("%w: store %q", ErrNotFound, id)
}

func (s *Server) product(id string) (*product, error) {
	n, ok := parseID(id, 15)
	if p := s.st.byID[n]; ok && p != nil {
		return p, nil
	}
	return nil, fmt.Errorf("%w: product %q", ErrNotFound, id)
}

// ErrNotFound reports an unknown store, product, transaction or send.
var ErrNotFound = errors.New("not found")

// waitLatency is the latency fault: it waits d, or until the client gives
// up, and reports whether the call should go on. A call abandoned during
// the latency is not run at all (nothing applied), as a request that never
// got past a slow gateway; lateCommitRate is the fault for a server that
// finishes an abandoned write. net/http notices that a client went away
// only once the request body has been read to its end, so the body (up to
// limit) is read first and handed on unchanged: without that a write whose
// client had timed out would still be applied when the latency ended.
func waitLatency(r *http.Request, d time.Duration, limit int64) bool {
	buf, _ := io.ReadAll(io.LimitReader(r.Body, limit)) // an error shows again to the handler's read
	r.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(buf), r.Body), r.Body}
	return sleepCtx(r.Context(), d)
}

// sleepCtx waits d and reports true, or false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// drain reads and discards what is left of a request body, bounded, so the
// connection can be reused.
func drain(r io.Reader) { _, _ = io.CopyN(io.Discard, r, 1<<20) }
