package smaregisim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Webhook events and actions the simulator sends.
const (
	EventStock        = "pos:stock"
	EventTransactions = "pos:transactions"

	WebhookActionEdited     = "edited"      // a stock change: sale, movement, Platform write
	WebhookActionBulkUpdate = "bulk-update" // a Platform bulk write
	WebhookActionCreated    = "created"     // a sale was rung up
	WebhookActionCanceled   = "canceled"    // a sale was voided
)

// WebhookUserAgent is the User-Agent of webhooks and bulk callbacks.
const WebhookUserAgent = "Smaregi-Platform-Api-Webhook/1.0 (smaregi-sim)"

// Outbox record kinds.
const (
	OutboxWebhook  = "webhook"
	OutboxCallback = "callback"
)

// WebhookRecord is one posted (or pending) webhook or bulk callback. It
// holds no URL query and no header values: both may carry the receiver's
// key.
type WebhookRecord struct {
	ID       string        `json:"id"`
	Kind     string        `json:"kind"`              // webhook or callback
	Event    string        `json:"event,omitempty"`   // Smaregi-Event
	EventID  string        `json:"eventId,omitempty"` // Smaregi-Event-Id
	Target   string        `json:"target"`            // scheme://host only
	Body     string        `json:"body"`
	State    string        `json:"state"` // queued, sent, failed
	Attempts []SendAttempt `json:"attempts"`
}

// outItem is a queued post. run, when set, is a bulk job: it applies the
// rows when the item's turn comes and returns the callback body.
type outItem struct {
	rec  *WebhookRecord
	url  string
	due  time.Time
	run  func() []byte
	hdrs map[string]string
}

// outbox posts webhooks and bulk callbacks one at a time, in order, from one
// goroutine, never under the shop's lock.
type outbox struct {
	postLoop
	srv    *Server
	client *http.Client

	// Guarded by postLoop.mu:
	rng     *rand.Rand
	cfg     WebhookConfig
	queue   []*outItem
	busy    bool
	records []*WebhookRecord
}

func newOutbox(srv *Server, client *http.Client, rng *rand.Rand) *outbox {
	ob := &outbox{srv: srv, client: client, rng: rng}
	ob.init()
	go ob.loop()
	return ob
}

// SetWebhookConfig replaces the app's webhook URL and headers; an empty URL
// switches webhooks off.
func (s *Server) SetWebhookConfig(c WebhookConfig) error {
	if c.URL != "" {
		if err := checkCallbackURL(c.URL); err != nil {
			return fmt.Errorf("smaregisim: webhook URL %w", err)
		}
	}
	c.Headers = maps(c.Headers)
	ob := s.plat.out
	ob.mu.Lock()
	defer ob.mu.Unlock()
	ob.cfg = c
	return nil
}

// WebhookConfig returns the webhook settings with header values redacted.
func (s *Server) WebhookConfig() WebhookConfig {
	ob := s.plat.out
	ob.mu.Lock()
	defer ob.mu.Unlock()
	c := WebhookConfig{URL: redactURL(ob.cfg.URL), Headers: map[string]string{}}
	for k := range ob.cfg.Headers {
		c.Headers[k] = "<redacted>"
	}
	return c
}

// redactURL keeps scheme and host only: the path or the query may hold the
// receiver's key.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || raw == "" {
		return ""
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		out += "/<redacted>"
	}
	return out
}

// Webhooks returns the webhook and callback history, oldest first.
func (s *Server) Webhooks() []WebhookRecord {
	ob := s.plat.out
	ob.mu.Lock()
	defer ob.mu.Unlock()
	out := make([]WebhookRecord, len(ob.records))
	for i, r := range ob.records {
		out[i] = *r
		out[i].Attempts = slices.Clone(r.Attempts)
	}
	return out
}

// WaitWebhooksIdle returns once no webhook, bulk job or callback is queued
// or in flight.
func (s *Server) WaitWebhooksIdle(ctx context.Context) error {
	ob := s.plat.out
	return ob.waitIdle(ctx, "webhooks", func() bool { return len(ob.queue) == 0 && !ob.busy })
}

// webhook queues one event if a webhook URL is set. The body carries IDs
// only, never amounts.
func (s *Server) webhook(event, action string, ids [][]string) {
	jw := &jsonWriter{}
	jw.raw("{")
	jw.str("contractId")
	jw.raw(":")
	jw.str(s.contract)
	jw.raw(`,"event":`)
	jw.str(event)
	jw.raw(`,"action":`)
	jw.str(action)
	jw.raw(`,"ids":[`)
	for i, pairs := range ids {
		if i > 0 {
			jw.raw(",")
		}
		kv(jw, pairs...)
	}
	jw.raw("]}")
	ob := s.plat.out
	s.plat.mu.Lock()
	delay := s.plat.o.WebhookDelay
	s.plat.mu.Unlock()
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if ob.closed || ob.cfg.URL == "" {
		return
	}
	rec := &WebhookRecord{ID: strconv.Itoa(len(ob.records) + 1), Kind: OutboxWebhook, Event: event,
		EventID: newUUID(), Body: string(jw.buf), State: SendQueued}
	ob.push(&outItem{rec: rec, due: time.Now().Add(delay)})
}

// push queues an item. The caller holds ob.mu.
func (ob *outbox) push(it *outItem) {
	ob.records = append(ob.records, it.rec)
	ob.queue = append(ob.queue, it)
	ob.notify()
}

// stockWebhook queues pos:stock for some stock changes: ids are the
// stock-history ID, store and product of each.
func (s *Server) stockWebhook(action string, hist []*historyRow) {
	if len(hist) == 0 {
		return
	}
	ids := make([][]string, len(hist))
	for i, h := range hist {
		ids[i] = []string{"id", strconv.FormatInt(h.ID, 10), "storeId", h.StoreID, "productId", h.ProductID}
	}
	s.webhook(EventStock, action, ids)
}

// saleWebhooks queues pos:transactions and pos:stock for a sale or a void.
func (s *Server) saleWebhooks(action, txID, storeID string, hist []*historyRow) {
	s.webhook(EventTransactions, action, [][]string{{"transactionHeadId", txID, "storeId", storeID}})
	s.stockWebhook(WebhookActionEdited, hist)
}

func (ob *outbox) next() *outItem {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	for len(ob.queue) == 0 && !ob.closed {
		ch := ob.changed
		ob.mu.Unlock()
		<-ch
		ob.mu.Lock()
	}
	if ob.closed {
		return nil
	}
	it := ob.queue[0]
	ob.queue = ob.queue[1:]
	ob.busy = true
	return it
}

func (ob *outbox) loop() {
	defer close(ob.done)
	for {
		it := ob.next()
		if it == nil {
			return
		}
		if d := time.Until(it.due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ob.ctx.Done():
				t.Stop()
			}
		}
		if ob.ctx.Err() == nil {
			ob.process(it)
		}
		ob.mu.Lock()
		ob.busy = false
		ob.notify()
		ob.mu.Unlock()
	}
}

func (ob *outbox) process(it *outItem) {
	body := []byte(it.rec.Body)
	if it.run != nil {
		body = it.run()
	}
	ob.mu.Lock()
	target, hdrs := it.url, it.hdrs
	if it.rec.Kind == OutboxWebhook {
		target, hdrs = ob.cfg.URL, ob.cfg.Headers
	}
	dupRate := 0.0
	if it.rec.Kind == OutboxWebhook {
		ob.srv.plat.mu.Lock()
		dupRate = ob.srv.plat.o.WebhookDuplicateRate
		ob.srv.plat.mu.Unlock()
	}
	dup := dupRate > 0 && ob.rng.Float64() < dupRate
	it.rec.Body = string(body)
	it.rec.Target = redactURL(target)
	ob.mu.Unlock()
	attempts := []SendAttempt{ob.post(target, hdrs, it.rec, body)}
	if dup {
		a := ob.post(target, hdrs, it.rec, body)
		a.Duplicate = true
		attempts = append(attempts, a)
	}
	ob.mu.Lock()
	defer ob.mu.Unlock()
	it.rec.Attempts = append(it.rec.Attempts, attempts...)
	it.rec.State = SendSent
	if a := attempts[0]; a.Error != "" || a.StatusCode/100 != 2 {
		it.rec.State = SendFailed
	}
}

// post makes one POST. Errors never carry the URL's query.
func (ob *outbox) post(target string, hdrs map[string]string, rec *WebhookRecord, body []byte) SendAttempt {
	a := SendAttempt{Time: FormatTime(ob.srv.clock())}
	if target == "" {
		a.Error = "no webhook URL"
		return a
	}
	req, err := http.NewRequestWithContext(ob.ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		a.Error = "cannot build request"
		return a
	}
	for k, v := range hdrs {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", WebhookUserAgent)
	if rec.Kind == OutboxWebhook {
		req.Header.Set("Smaregi-Event", rec.Event)
		req.Header.Set("Smaregi-Contract-Id", ob.srv.contract)
		req.Header.Set("Smaregi-Event-Id", rec.EventID)
	}
	resp, err := ob.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		a.Error = fmt.Sprintf("POST %s: %v", redactURL(target), err)
		ob.srv.log.Info("webhook", "id", rec.ID, "kind", rec.Kind, "event", rec.Event, "error", a.Error)
		return a
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 1<<20)
	_ = resp.Body.Close()
	a.StatusCode = resp.StatusCode
	ob.srv.log.Info("webhook", "id", rec.ID, "kind", rec.Kind, "event", rec.Event, "status", resp.StatusCode)
	return a
}
