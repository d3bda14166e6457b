package hubclient_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

// storeRecorder is a Handler recording each call as a line.
type storeRecorder struct {
	*hubclient.Mirror
	mu    sync.Mutex
	calls []string
}

func (s *storeRecorder) Replace(items []hubclient.Item, rv uint64) {
	s.mu.Lock()
	s.calls = append(s.calls, fmt.Sprintf("replace %d items at %d", len(items), rv))
	s.mu.Unlock()
	s.Mirror.Replace(items, rv)
}

func (s *storeRecorder) Apply(e hubclient.Event) {
	s.mu.Lock()
	s.calls = append(s.calls, fmt.Sprintf("%s %s available=%d at %d", e.Type, e.Item.ProductID, e.Item.Available, e.ResourceVersion))
	s.mu.Unlock()
	s.Mirror.Apply(e)
}

// TestSyncResumesAndRelists: a store's Sync, on the loop SyncPool shares,
// resumes from the last event's or bookmark's version after the server
// ends a watch, retries after an error (a 503 while the operator starts),
// and lists again only on 410.
func TestSyncResumesAndRelists(t *testing.T) {
	listing := func(rv string, n int) string {
		items := make([]string, n)
		for i := range items {
			items[i] = fmt.Sprintf(`{"productId":"800000%d","stockAmount":5,"available":5}`, i+1)
		}
		return `{"namespace":"shops","name":"shibuya","resourceVersion":"` + rv + `","items":[` + strings.Join(items, ",") + `]}`
	}
	hub := newScriptedHub(t, "/api/v1/namespaces/shops/smaregistores/shibuya/stock",
		step{status: 200, body: listing("10", 2)},
		step{rv: "10", status: 200, body: `{"type":"MODIFIED","object":{"productId":"8000001","stockAmount":4,"available":4,"resourceVersion":"11"}}` + "\n"},
		step{rv: "11", status: 503, body: `{"error":"Unavailable"}`},
		step{rv: "11", status: 200, body: `{"type":"BOOKMARK","object":{"resourceVersion":"12"}}` + "\n"},
		step{rv: "12", status: 200, body: `{"type":"ERROR","object":{"code":410}}` + "\n"},
		step{status: 200, body: listing("30", 1)},
		step{rv: "30", status: 200, hang: true},
	)
	var recovered []string
	c := &hubclient.Client{BaseURL: hub.url, Token: "tok", Backoff: time.Millisecond,
		OnError: func(err error) { recovered = append(recovered, err.Error()) }}
	rec := &storeRecorder{Mirror: hubclient.NewMirror()}
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan error, 1)
	go func() { synced <- c.Sync(ctx, "shops", "shibuya", rec) }()
	<-hub.done
	cancel()
	if err := <-synced; !errors.Is(err, context.Canceled) {
		t.Fatalf("Sync returned %v, want context.Canceled", err)
	}
	want := []string{"replace 2 items at 10", "MODIFIED 8000001 available=4 at 11", "replace 1 items at 30"}
	if !reflect.DeepEqual(rec.calls, want) {
		t.Fatalf("handler calls:\n%s\nwant:\n%s", strings.Join(rec.calls, "\n"), strings.Join(want, "\n"))
	}
	if len(recovered) != 1 || !strings.Contains(recovered[0], "503") {
		t.Fatalf("errors recovered from: %v, want the 503", recovered)
	}
	if _, rv := rec.Snapshot(); rv != 30 {
		t.Fatalf("mirror at %d, want 30", rv)
	}
}
