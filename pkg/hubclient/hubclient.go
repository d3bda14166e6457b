// Package hubclient is a small Go client for the smaregi-operator hub API's
// stock feed, for channel developers: list a SmaregiStore's stock, then
// watch it, resuming after every disconnection from the last resourceVersion
// seen and listing again only when the operator answers 410 Gone (the
// changes since were no longer kept). It is Kubernetes' list-then-watch;
// docs/hub-api.md describes the protocol. A StockPool's feed is followed
// the same way with SyncPool and a PoolMirror (pool.go).
//
//	c := &hubclient.Client{BaseURL: "https://hub.example.com", TokenFile: "/var/run/secrets/hub/token"}
//	m := hubclient.NewMirror()
//	err := c.Sync(ctx, "shops", "shibuya", m) // until ctx ends
//	item, ok := m.Get("8000001")               // from any goroutine
package hubclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Item is one product's stock and availability, as listed and as carried
// by an event.
type Item struct {
	ProductID          string `json:"productId"`
	StockAmount        int64  `json:"stockAmount"`
	LayawayStockAmount int64  `json:"layawayStockAmount"`
	PendingAdjustment  int64  `json:"pendingAdjustment"`
	// SafetyStock is the units held back from this product: its entry in
	// spec.safetyStockOverridesRef's ConfigMap, else spec.safetyStock.
	SafetyStock int64      `json:"safetyStock"`
	Available   int64      `json:"available"`
	UpdDateTime *time.Time `json:"updDateTime"`
}

// Stock is a listing.
type Stock struct {
	Namespace       string     `json:"namespace"`
	Name            string     `json:"name"`
	ResourceVersion uint64     `json:"-"`
	SafetyStock     int64      `json:"safetyStock"`
	SKUs            int64      `json:"skus"`
	Watermark       *time.Time `json:"watermark"`
	Items           []Item     `json:"items"`
}

// EventType is the type of a watch event.
type EventType string

const (
	Modified EventType = "MODIFIED" // Item is the product's row now
	Deleted  EventType = "DELETED"  // the product has no row any more; only Item.ProductID is set
	Bookmark EventType = "BOOKMARK" // no change; ResourceVersion is where the watch is
)

// Event is one change, in resourceVersion order; versions of MODIFIED and
// DELETED events grow by exactly one per store.
type Event struct {
	Type            EventType
	Item            Item
	ResourceVersion uint64
}

// Handler receives what Sync learns. Calls come from Sync's goroutine, one
// at a time.
type Handler interface {
	// Replace replaces everything known about the store with a listing.
	Replace(items []Item, resourceVersion uint64)
	// Apply applies one MODIFIED or DELETED event.
	Apply(e Event)
}

// The kinds of object with a stock feed, as in the hub API's paths.
const (
	kindStore = "smaregistores"
	kindPool  = "stockpools"
)

// ErrGone is returned by Watch (and surfaced in Sync's loop) when the
// operator no longer keeps the changes after the version asked for: list
// again.
var ErrGone = errors.New("hubclient: resourceVersion too old; list again")

// Client talks to one hub API.
type Client struct {
	// BaseURL is where the hub API is, e.g. https://hub.example.com.
	BaseURL string
	// Token is the bearer token; TokenFile, if set, is read before every
	// request instead (a projected ServiceAccount token is rotated).
	Token     string
	TokenFile string
	// HTTP is the client to use; http.DefaultClient when nil. It must not
	// have a Timeout: a watch is a long request.
	HTTP *http.Client
	// Backoff is the pause before reconnecting after a failed request
	// (doubling to 30s); default 1s.
	Backoff time.Duration
	// OnError, if set, is told of every error Sync recovers from.
	OnError func(error)
}

func (c *Client) httpClient() *http.Client {
	if c.HTTP != nil {
		return c.HTTP
	}
	return http.DefaultClient
}

func (c *Client) token() (string, error) {
	if c.TokenFile != "" {
		b, err := os.ReadFile(c.TokenFile)
		if err != nil {
			return "", fmt.Errorf("hubclient: reading the token file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return c.Token, nil
}

// get asks for the stock of one object of kind ("smaregistores" or
// "stockpools"), a listing or (q) a watch: 200 is the response, 410 ErrGone.
func (c *Client) get(ctx context.Context, kind, ns, name string, q url.Values) (*http.Response, error) {
	u := strings.TrimRight(c.BaseURL, "/") + "/api/v1/namespaces/" + url.PathEscape(ns) + "/" + kind + "/" + url.PathEscape(name) + "/stock"
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("hubclient: %w", err)
	}
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("hubclient: GET stock of %s %s/%s: %w", kind, ns, name, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode == http.StatusGone {
		return nil, ErrGone
	}
	return nil, &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(body))}
}

// getJSON reads a listing into doc. A listing cut off mid-stream does not
// parse: never a short list.
func (c *Client) getJSON(ctx context.Context, kind, ns, name string, doc any) error {
	resp, err := c.get(ctx, kind, ns, name, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(doc); err != nil {
		return fmt.Errorf("hubclient: reading the stock of %s %s/%s: %w", kind, ns, name, err)
	}
	return nil
}

// watchStream opens a watch of kind's stock from resourceVersion.
func (c *Client) watchStream(ctx context.Context, kind, ns, name, resourceVersion string) (*eventStream, error) {
	resp, err := c.get(ctx, kind, ns, name, url.Values{"watch": {"true"}, "resourceVersion": {resourceVersion}})
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	return &eventStream{body: resp.Body, sc: sc}, nil
}

// eventStream reads a watch's newline-delimited events, a store's or a
// pool's alike.
type eventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// next decodes the next event's object into obj (which must have a
// resourceVersion field) and returns its type. An ERROR event is an error:
// ErrGone for 410. io.EOF means the server ended the watch.
func (s *eventStream) next(obj any) (EventType, error) {
	for s.sc.Scan() {
		line := s.sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var raw struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := json.Unmarshal(line, &raw); err != nil {
			return "", fmt.Errorf("hubclient: malformed event: %w", err)
		}
		if raw.Type == "ERROR" {
			var status struct {
				Code int `json:"code"`
			}
			if err := json.Unmarshal(raw.Object, &status); err != nil {
				return "", fmt.Errorf("hubclient: malformed ERROR event: %w", err)
			}
			if status.Code == http.StatusGone {
				return "", ErrGone
			}
			return "", fmt.Errorf("hubclient: watch error %d", status.Code)
		}
		if err := json.Unmarshal(raw.Object, obj); err != nil {
			return "", fmt.Errorf("hubclient: malformed %s event: %w", raw.Type, err)
		}
		return EventType(raw.Type), nil
	}
	if err := s.sc.Err(); err != nil {
		return "", err
	}
	return "", io.EOF
}

func (s *eventStream) close() error { return s.body.Close() }

// StatusError is an answer other than 200 (and 410, which is ErrGone).
type StatusError struct {
	Code int
	Body string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("hubclient: hub API answered %d: %s", e.Code, e.Body)
}

// List reads the store's whole stock and the resourceVersion to watch from.
func (c *Client) List(ctx context.Context, ns, name string) (*Stock, error) {
	var doc struct {
		Stock
		RV string `json:"resourceVersion"`
	}
	if err := c.getJSON(ctx, kindStore, ns, name, &doc); err != nil {
		return nil, err
	}
	st := doc.Stock
	var err error
	if st.ResourceVersion, err = strconv.ParseUint(doc.RV, 10, 64); err != nil {
		return nil, fmt.Errorf("hubclient: listing of %s/%s has no resourceVersion (an operator without the feed?)", ns, name)
	}
	return &st, nil
}

// Watcher is one open watch.
type Watcher struct{ s *eventStream }

// Watch opens a watch of the changes after resourceVersion. It returns
// ErrGone when they are no longer kept.
func (c *Client) Watch(ctx context.Context, ns, name string, resourceVersion uint64) (*Watcher, error) {
	s, err := c.watchStream(ctx, kindStore, ns, name, strconv.FormatUint(resourceVersion, 10))
	if err != nil {
		return nil, err
	}
	return &Watcher{s: s}, nil
}

// Next returns the next event. io.EOF means the server ended the watch (a
// timeout, a restart, or a slow client cut off): watch again from the last
// version. ErrGone means list again.
func (w *Watcher) Next() (Event, error) {
	var obj struct {
		Item
		RV string `json:"resourceVersion"`
	}
	typ, err := w.s.next(&obj)
	if err != nil {
		return Event{}, err
	}
	rv, err := strconv.ParseUint(obj.RV, 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("hubclient: %s event without a resourceVersion", typ)
	}
	return Event{Type: typ, Item: obj.Item, ResourceVersion: rv}, nil
}

// Close ends the watch.
func (w *Watcher) Close() error { return w.s.close() }

// Sync lists the store and then watches it until ctx ends, feeding h. After
// a disconnection it watches again from the last version it saw (bookmarks
// included), so h sees every change once; only after 410 Gone does it list
// again (h.Replace). It returns ctx's error.
func (c *Client) Sync(ctx context.Context, ns, name string, h Handler) error {
	var rv uint64
	return c.follow(ctx,
		func(ctx context.Context) error {
			st, err := c.List(ctx, ns, name)
			if err != nil {
				return err
			}
			h.Replace(st.Items, st.ResourceVersion)
			rv = st.ResourceVersion
			return nil
		},
		func(ctx context.Context) (func() error, func() error, error) {
			w, err := c.Watch(ctx, ns, name, rv)
			if err != nil {
				return nil, nil, err
			}
			next := func() error {
				e, err := w.Next()
				if err != nil {
					return err
				}
				if e.Type != Bookmark {
					h.Apply(e)
				}
				rv = e.ResourceVersion
				return nil
			}
			return next, w.Close, nil
		})
}

// follow is the list-then-watch loop of Sync and SyncPool until ctx ends:
// list (which hands the listing to the handler and keeps its version), then
// watch from the last version kept; next applies one event and keeps its
// version. After a disconnection it watches again at once, after an error
// after a pause, and it lists again only after ErrGone. It returns ctx's
// error.
func (c *Client) follow(ctx context.Context, list func(context.Context) error,
	watch func(context.Context) (next func() error, stop func() error, err error)) error {
	listed := false
	backoff := c.Backoff
	if backoff <= 0 {
		backoff = time.Second
	}
	pause := backoff
	fail := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if c.OnError != nil {
			c.OnError(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, 30*time.Second)
		return nil
	}
	for ctx.Err() == nil {
		if !listed {
			if err := list(ctx); err != nil {
				if err := fail(err); err != nil {
					return err
				}
				continue
			}
			listed = true
		}
		next, stop, err := watch(ctx)
		if errors.Is(err, ErrGone) {
			listed = false
			continue
		}
		if err != nil {
			if err := fail(err); err != nil {
				return err
			}
			continue
		}
		pause = backoff
		for {
			err := next()
			if err == nil {
				continue
			}
			_ = stop()
			switch {
			case errors.Is(err, ErrGone):
				listed = false
			case errors.Is(err, io.EOF):
				// The server ended the watch; resume at once.
			default:
				if err := fail(err); err != nil {
					return err
				}
			}
			break
		}
	}
	return ctx.Err()
}
