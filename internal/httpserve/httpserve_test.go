package httpserve

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// A request in flight when the context ends is answered, not cut off, and
// its own context is not cancelled by the shutdown.
func TestServeDrainsRequestsInFlight(t *testing.T) {
	ln, err := Listen(context.Background(), "127.0.0.1:0", "test server")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(300 * time.Millisecond) // still working when shutdown begins
		if r.Context().Err() != nil {
			http.Error(w, "request context cancelled by shutdown", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "recorded")
	})}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- Serve(ctx, srv, ln, 5*time.Second, "test server", logr.Discard()) }()

	answer := make(chan string, 1)
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err != nil {
			answer <- "error: " + err.Error()
			return
		}
		defer func() { _ = resp.Body.Close() }()
		body, _ := io.ReadAll(resp.Body)
		answer <- resp.Status + " " + string(body)
	}()
	<-started
	cancel()
	if got := <-answer; got != "200 OK recorded" {
		t.Fatalf("request in flight at shutdown got %q, want it answered", got)
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := http.Get("http://" + ln.Addr().String()); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}
