package pusher

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// gate is a server in front of the simulator that holds every stock_upd
// until released, and notes whether the client had given up by then.
type gate struct {
	arrived  chan struct{}
	release  chan struct{}
	gaveUp   atomic.Bool
	released atomic.Bool
}

func newGate(t *testing.T, h *harness) *gate {
	g := &gate{arrived: make(chan struct{}, 1), release: make(chan struct{})}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if bytes.Contains(body, []byte("stock_upd")) {
			select {
			case g.arrived <- struct{}{}:
			default:
			}
			<-g.release
			if r.Context().Err() != nil {
				g.gaveUp.Store(true)
				return
			}
		}
		h.sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		g.open()
		srv.Close()
	})
	h.endpoint = srv.URL + "/access/"
	return g
}

func (g *gate) open() {
	if g.released.CompareAndSwap(false, true) {
		close(g.release)
	}
}

// runPusher starts a pusher and returns its cancel and Start's result.
func runPusher(t *testing.T, h *harness, mod func(*Options)) (context.CancelFunc, <-chan error) {
	o := h.options()
	if mod != nil {
		mod(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done, stopped := make(chan error, 1), make(chan struct{})
	go func() {
		done <- p.Start(ctx)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
	return cancel, done
}

// Shutdown (or a lost lease) with a stock_upd in flight: the call is not
// cut off, Start returns only after it finished, and its outcome is
// recorded, so no new leader resolves an attempt whose call is still
// running.
func TestShutdownFinishesTheCallInFlight(t *testing.T) {
	h := newHarness(t, 1)
	g := newGate(t, h)
	key := h.keys[0]
	cancel, done := runPusher(t, h, func(o *Options) { o.RequestTimeout = time.Minute })
	adj := inventory.Adjustment{Key: key, ID: "in-flight", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}}
	submitAll(t, h.inv, []inventory.Adjustment{adj})
	<-g.arrived
	cancel()
	// Room for Start to return early, which it must not do while the call
	// is held.
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("Start returned (%v) with a stock_upd in flight", err)
	default:
	}
	g.open()
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
	if g.gaveUp.Load() {
		t.Fatal("the client gave up the call on shutdown")
	}
	if err := stillPending(t, h.inv, []inventory.Adjustment{adj}); err != nil {
		t.Fatalf("after shutdown: %v", err)
	}
	if opens, _ := h.inv.OpenAttempts(context.Background(), key); len(opens) != 0 {
		t.Fatalf("%d open attempts after the call finished", len(opens))
	}
	verifyExactlyOnce(t, h, []inventory.Adjustment{adj}, true)
}

// The wait is bounded by the request timeout: a call that never returns
// lets Start return after it, and the attempt stays open for the next
// leader, whose settle deadline counts from the attempt's RequestDeadline.
func TestShutdownWaitIsBoundedByTheRequestTimeout(t *testing.T) {
	h := newHarness(t, 1)
	g := newGate(t, h)
	key := h.keys[0]
	cancel, done := runPusher(t, h, func(o *Options) { o.RequestTimeout = 300 * time.Millisecond })
	adj := inventory.Adjustment{Key: key, ID: "stuck", Lines: []inventory.AdjustmentLine{{ProductID: product(0), Quantity: -1}}}
	submitAll(t, h.inv, []inventory.Adjustment{adj})
	<-g.arrived
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Start: %v", err)
	}
	opens, err := h.inv.OpenAttempts(context.Background(), key)
	if err != nil || len(opens) != 1 || opens[0].RequestDeadline.IsZero() {
		t.Fatalf("open attempts %+v, %v; want the one in flight, with its request deadline", opens, err)
	}
	if got, _, _ := h.inv.GetAdjustment(context.Background(), key, adj.ID); got.State != inventory.AdjustmentPending {
		t.Fatalf("adjustment %s, want pending", got.State)
	}
}
