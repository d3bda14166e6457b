// Package httpserve runs the operator's HTTP servers (the receiver, the hub
// API) as manager runnables with one shutdown behaviour: stop accepting, then
// drain requests in flight, so a send or an adjustment being stored during a
// rolling update is still answered.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/net/netutil"
)

// Listen opens a TCP listener on addr; what names the server in errors.
func Listen(ctx context.Context, addr, what string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for %s on %s: %w", what, addr, err)
	}
	return ln, nil
}

// Serve runs srv on ln until ctx ends, then stops accepting connections and
// waits up to drain for requests in flight. srv.BaseContext should stay
// unset: request contexts tied to ctx would be cancelled at the very moment
// the drain is meant to let them finish. Serve closes ln.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration, what string, log logr.Logger) error {
	log.Info("serving "+what, "address", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve %s on %s: %w", what, ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down %s: %w", what, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve %s on %s: %w", what, ln.Addr(), err)
	}
	log.Info("stopped serving " + what)
	return nil
}

// LimitConnections returns a listener that keeps at most n connections
// open at once (n <= 0: no limit); Accept waits while n are open, so
// further clients wait in the kernel's listen backlog rather than cost the
// process a goroutine and buffers each. A public endpoint needs it: a
// client holding many idle or slow connections otherwise grows the
// process without bound.
func LimitConnections(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return netutil.LimitListener(ln, n)
}
