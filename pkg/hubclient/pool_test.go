package hubclient_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

// step is one answer of a scripted hub API: to the request it expects
// (a listing when rv is "", else a watch from rv), a status and a body; a
// watch with hang set stays open after its body until the client leaves.
type step struct {
	rv     string
	status int
	body   string
	hang   bool
}

// scriptedHub serves steps in order and records what was asked; a request
// other than the one expected fails the test. When the steps are used up,
// done is closed.
type scriptedHub struct {
	t     *testing.T
	path  string
	mu    sync.Mutex
	steps []step
	asked []string
	done  chan struct{}
	url   string
}

func newScriptedHub(t *testing.T, path string, steps ...step) *scriptedHub {
	h := &scriptedHub{t: t, path: path, steps: steps, done: make(chan struct{})}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.steps) > 0 {
			t.Errorf("%d scripted answers were never asked for; asked: %v", len(h.steps), h.asked)
		}
	})
	h.url = srv.URL
	return h
}

func (h *scriptedHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if got := r.Header.Get("Authorization"); got != "Bearer tok" {
		h.t.Errorf("Authorization %q", got)
	}
	q := r.URL.Query()
	asked := "list"
	if q.Get("watch") == "true" {
		asked = "watch " + q.Get("resourceVersion")
	}
	h.mu.Lock()
	h.asked = append(h.asked, asked)
	if r.URL.Path != h.path || len(h.steps) == 0 {
		h.mu.Unlock()
		h.t.Errorf("unexpected %s %s (asked so far: %v)", r.URL.Path, asked, h.asked)
		w.WriteHeader(http.StatusTeapot)
		return
	}
	s := h.steps[0]
	h.steps = h.steps[1:]
	last := len(h.steps) == 0
	h.mu.Unlock()
	want := "list"
	if s.rv != "" {
		want = "watch " + s.rv
	}
	if asked != want {
		h.t.Errorf("asked %q, want %q", asked, want)
	}
	w.WriteHeader(s.status)
	_, _ = w.Write([]byte(s.body))
	w.(http.Flusher).Flush()
	if last {
		close(h.done)
	}
	if s.hang {
		<-r.Context().Done()
	}
}

// poolRecorder is a PoolHandler recording each call as a line.
type poolRecorder struct {
	*hubclient.PoolMirror
	mu    sync.Mutex
	calls []string
}

func (p *poolRecorder) Replace(items []hubclient.PoolItem, rv string) {
	p.mu.Lock()
	p.calls = append(p.calls, fmt.Sprintf("replace %d items at %s", len(items), rv))
	p.mu.Unlock()
	p.PoolMirror.Replace(items, rv)
}

func (p *poolRecorder) Apply(e hubclient.PoolEvent) {
	p.mu.Lock()
	p.calls = append(p.calls, fmt.Sprintf("%s %s available=%d at %s", e.Type, e.Item.ProductID, e.Item.Available, e.ResourceVersion))
	p.mu.Unlock()
	p.PoolMirror.Apply(e)
}

func poolListing(rv string, items ...string) string {
	return `{"namespace":"shops","name":"tokyo","resourceVersion":"` + rv + `","safetyStock":1,"allocationPolicy":"Priority",` +
		`"members":[{"name":"harajuku","priority":0,"ready":true,"active":true}],"items":[` + strings.Join(items, ",") + `]}`
}

func poolItem(id string, available int64) string {
	return fmt.Sprintf(`{"productId":%q,"safetyStock":1,"available":%d,"members":[{"store":"harajuku","available":%d}]}`, id, available, available+1)
}

func poolEvent(typ, obj, rv string) string {
	return `{"type":"` + typ + `","object":` + strings.TrimSuffix(obj, "}") + `,"resourceVersion":"` + rv + `"}}` + "\n"
}

// TestSyncPoolResumesAndRelists: SyncPool resumes from the last event's or
// bookmark's version after the server ends a watch (an operator restart),
// and lists again only on 410: an ERROR event in the stream, or a watch
// refused with 410.
func TestSyncPoolResumesAndRelists(t *testing.T) {
	const gone = `{"type":"ERROR","object":{"code":410,"reason":"Expired","message":"the pool's active members changed; list again"}}` + "\n"
	hub := newScriptedHub(t, "/api/v1/namespaces/shops/stockpools/tokyo/stock",
		step{status: 200, body: poolListing("harajuku:1~f", poolItem("8000001", 9), poolItem("8000002", 4))},
		// A change, then the server goes away: resume from it.
		step{rv: "harajuku:1~f", status: 200, body: poolEvent("MODIFIED", poolItem("8000001", 8), "harajuku:2~f")},
		// Only a bookmark, then the server goes away: resume from it.
		step{rv: "harajuku:2~f", status: 200, body: `{"type":"BOOKMARK","object":{"resourceVersion":"harajuku:5~f"}}` + "\n"},
		// The members changed: list again.
		step{rv: "harajuku:5~f", status: 200, body: gone},
		step{status: 200, body: poolListing("harajuku:5,shibuya:3~f", poolItem("8000001", 20), poolItem("8000003", 1))},
		step{rv: "harajuku:5,shibuya:3~f", status: 200, body: poolEvent("DELETED", `{"productId":"8000003"}`, "harajuku:5,shibuya:4~f")},
		// A watch from before a change of the safety stock: 410, list again.
		step{rv: "harajuku:5,shibuya:4~f", status: http.StatusGone, body: `{"error":"Gone"}`},
		step{status: 200, body: poolListing("harajuku:5,shibuya:4~g", poolItem("8000001", 19))},
		step{rv: "harajuku:5,shibuya:4~g", status: 200, hang: true},
	)
	c := &hubclient.Client{BaseURL: hub.url, Token: "tok", Backoff: time.Millisecond,
		OnError: func(err error) { t.Errorf("SyncPool recovered from an error: %v", err) }}
	rec := &poolRecorder{PoolMirror: hubclient.NewPoolMirror()}
	ctx, cancel := context.WithCancel(context.Background())
	synced := make(chan error, 1)
	go func() { synced <- c.SyncPool(ctx, "shops", "tokyo", rec) }()
	<-hub.done
	cancel()
	if err := <-synced; !errors.Is(err, context.Canceled) {
		t.Fatalf("SyncPool returned %v, want context.Canceled", err)
	}
	want := []string{
		"replace 2 items at harajuku:1~f",
		"MODIFIED 8000001 available=8 at harajuku:2~f",
		"replace 2 items at harajuku:5,shibuya:3~f",
		"DELETED 8000003 available=0 at harajuku:5,shibuya:4~f",
		"replace 1 items at harajuku:5,shibuya:4~g",
	}
	if !reflect.DeepEqual(rec.calls, want) {
		t.Fatalf("handler calls:\n%s\nwant:\n%s", strings.Join(rec.calls, "\n"), strings.Join(want, "\n"))
	}
	items, rv := rec.Snapshot()
	wantItems := map[string]hubclient.PoolItem{"8000001": {ProductID: "8000001", SafetyStock: 1, Available: 19,
		Members: []hubclient.PoolMemberStock{{Store: "harajuku", Available: 20}}}}
	if rv != "harajuku:5,shibuya:4~g" || !reflect.DeepEqual(items, wantItems) {
		t.Fatalf("mirror at %s: %+v", rv, items)
	}
}

// TestListPool reads a listing's members and items, and refuses a listing
// without a resourceVersion (an operator without the pool feed).
func TestListPool(t *testing.T) {
	hub := newScriptedHub(t, "/api/v1/namespaces/shops/stockpools/tokyo/stock",
		step{status: 200, body: poolListing("harajuku:7~f", poolItem("8000001", 3))},
		step{status: 200, body: poolListing("", poolItem("8000001", 3))},
		step{status: 403, body: `{"error":"Forbidden"}`},
	)
	c := &hubclient.Client{BaseURL: hub.url, Token: "tok"}
	st, err := c.ListPool(context.Background(), "shops", "tokyo")
	if err != nil {
		t.Fatal(err)
	}
	want := &hubclient.PoolStock{Namespace: "shops", Name: "tokyo", ResourceVersion: "harajuku:7~f", SafetyStock: 1, AllocationPolicy: "Priority",
		Members: []hubclient.PoolMember{{Name: "harajuku", Ready: true, Active: true}},
		Items: []hubclient.PoolItem{{ProductID: "8000001", SafetyStock: 1, Available: 3,
			Members: []hubclient.PoolMemberStock{{Store: "harajuku", Available: 4}}}}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("listing %+v, want %+v", st, want)
	}
	if _, err := c.ListPool(context.Background(), "shops", "tokyo"); err == nil || !strings.Contains(err.Error(), "no resourceVersion") {
		t.Fatalf("a listing without resourceVersion: %v", err)
	}
	var se *hubclient.StatusError
	if _, err := c.ListPool(context.Background(), "shops", "tokyo"); !errors.As(err, &se) || se.Code != 403 {
		t.Fatalf("a 403: %v", err)
	}
}
