package smaregisim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Send states.
const (
	SendQueued  = "queued"
	SendSending = "sending"
	SendSent    = "sent"
	SendFailed  = "failed"
	SendDropped = "dropped"
)

// SendRecord is one outgoing send as the admin screen's send history shows
// it. It never holds the extra parameters (they are secrets).
type SendRecord struct {
	ID        string        `json:"id"`
	ProcName  string        `json:"procName"`
	Params    string        `json:"params"`
	CreatedAt string        `json:"createdAt"`
	State     string        `json:"state"`
	Attempts  []SendAttempt `json:"attempts"`
}

// SendAttempt is one POST of a send.
type SendAttempt struct {
	Time       string `json:"time"`
	StatusCode int    `json:"statusCode,omitempty"`
	Error      string `json:"error,omitempty"`
	Duplicate  bool   `json:"duplicate,omitempty"` // an injected second copy
}

// reorderWait is how long a held-back send waits for a later one to
// overtake it.
const reorderWait = 200 * time.Millisecond

// sender posts sends one at a time, in queue order, from one goroutine.
type sender struct {
	postLoop
	srv    *Server
	client *http.Client

	// Guarded by postLoop.mu:
	rng     *rand.Rand
	cfg     SendConfig
	queue   []*SendRecord
	busy    bool
	records []*SendRecord
	byID    map[string]*SendRecord
}

func newSender(srv *Server, client *http.Client, rng *rand.Rand) *sender {
	sd := &sender{srv: srv, client: client, rng: rng, byID: map[string]*SendRecord{}}
	sd.init()
	go sd.loop()
	return sd
}

// SetSendConfig replaces the admin screen's send settings.
func (s *Server) SetSendConfig(c SendConfig) error {
	if c.URL != "" {
		u, err := url.Parse(c.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return errors.New("smaregisim: send URL must be an absolute http(s) URL")
		}
	}
	for _, f := range c.Functions {
		if f != "transaction_send" && f != "stock_send" && !validOtherSend(f) {
			return fmt.Errorf("smaregisim: unknown send function %q", f)
		}
	}
	c.Params = maps(c.Params)
	c.Functions = slices.Clone(c.Functions)
	s.sender.mu.Lock()
	defer s.sender.mu.Unlock()
	s.sender.cfg = c
	return nil
}

// validOtherSend reports whether f may name a send function besides
// stock_send and transaction_send (StockMovement.SendAs): lower-case letters,
// digits and underscores, ending in "_send", at most 64 bytes.
func validOtherSend(f string) bool {
	if f == "stock_send" || f == "transaction_send" || len(f) > 64 || !strings.HasSuffix(f, "_send") || f == "_send" {
		return false
	}
	for _, c := range f {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// SendConfig returns the send settings with parameter values redacted.
func (s *Server) SendConfig() SendConfig {
	s.sender.mu.Lock()
	defer s.sender.mu.Unlock()
	c := s.sender.cfg
	c.Params = map[string]string{}
	for k := range s.sender.cfg.Params {
		c.Params[k] = "<redacted>"
	}
	c.Functions = slices.Clone(c.Functions)
	return c
}

// enqueue adds a send if its function is switched on and a URL is set.
func (s *Server) enqueue(proc, params string) {
	sd := s.sender
	sd.mu.Lock()
	defer sd.mu.Unlock()
	if sd.closed || sd.cfg.URL == "" || !slices.Contains(sd.cfg.Functions, proc) {
		return
	}
	rec := &SendRecord{ID: strconv.Itoa(len(sd.records) + 1), ProcName: proc, Params: params,
		CreatedAt: FormatTime(s.clock()), State: SendQueued}
	sd.records = append(sd.records, rec)
	sd.byID[rec.ID] = rec
	sd.queue = append(sd.queue, rec)
	sd.notify()
}

// Resend queues a send again, like the admin screen's manual resend button.
func (s *Server) Resend(id string) error {
	sd := s.sender
	sd.mu.Lock()
	defer sd.mu.Unlock()
	rec := sd.byID[id]
	if rec == nil {
		return fmt.Errorf("%w: send %q", ErrNotFound, id)
	}
	if rec.State == SendQueued || rec.State == SendSending {
		return fmt.Errorf("smaregisim: send %s is already %s", id, rec.State)
	}
	rec.State = SendQueued
	sd.queue = append(sd.queue, rec)
	sd.notify()
	return nil
}

// Sends returns the send history, oldest first.
func (s *Server) Sends() []SendRecord {
	sd := s.sender
	sd.mu.Lock()
	defer sd.mu.Unlock()
	out := make([]SendRecord, len(sd.records))
	for i, r := range sd.records {
		out[i] = *r
		out[i].Attempts = slices.Clone(r.Attempts)
	}
	return out
}

// WaitSendsIdle returns once no send is queued or in flight.
func (s *Server) WaitSendsIdle(ctx context.Context) error {
	sd := s.sender
	return sd.waitIdle(ctx, "sends", func() bool { return len(sd.queue) == 0 && !sd.busy })
}

// next pops the next send, holding one back when reordering is injected.
func (sd *sender) next() *SendRecord {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	for len(sd.queue) == 0 && !sd.closed {
		ch := sd.changed
		sd.mu.Unlock()
		<-ch
		sd.mu.Lock()
	}
	if sd.closed {
		return nil
	}
	if sd.srv.Faults().ReorderSends && sd.rng.Float64() < 0.5 {
		if len(sd.queue) == 1 {
			// Wait briefly for a later send to overtake this one.
			ch := sd.changed
			sd.busy = true
			sd.mu.Unlock()
			select {
			case <-ch:
			case <-time.After(reorderWait):
			case <-sd.ctx.Done():
			}
			sd.mu.Lock()
			if sd.closed {
				return nil
			}
		}
		if len(sd.queue) >= 2 {
			sd.queue[0], sd.queue[1] = sd.queue[1], sd.queue[0]
		}
	}
	rec := sd.queue[0]
	sd.queue = sd.queue[1:]
	sd.busy = true
	rec.State = SendSending
	return rec
}

func (sd *sender) loop() {
	defer close(sd.done)
	for {
		rec := sd.next()
		if rec == nil {
			return
		}
		sd.process(rec)
		sd.mu.Lock()
		sd.busy = false
		sd.notify()
		sd.mu.Unlock()
	}
}

func (sd *sender) process(rec *SendRecord) {
	f := sd.srv.Faults()
	sd.mu.Lock()
	drop := f.DropSendRate > 0 && sd.rng.Float64() < f.DropSendRate
	dup := f.DuplicateSendRate > 0 && sd.rng.Float64() < f.DuplicateSendRate
	cfg := sd.cfg
	sd.mu.Unlock()
	if drop {
		sd.finish(rec, SendDropped, nil)
		sd.srv.log.Info("send", "id", rec.ID, "proc_name", rec.ProcName, "fault", "dropped")
		return
	}
	retries := sd.srv.beh.SendRetries
	for {
		a := sd.post(cfg, rec)
		ok := a.Error == "" && a.StatusCode/100 == 2
		if ok && dup {
			d := sd.post(cfg, rec)
			d.Duplicate = true
			sd.finish(rec, SendSent, []SendAttempt{a, d})
			return
		}
		if ok {
			sd.finish(rec, SendSent, []SendAttempt{a})
			return
		}
		sd.finish(rec, SendFailed, []SendAttempt{a})
		if retries <= 0 || sd.ctx.Err() != nil {
			return
		}
		retries--
		select {
		case <-time.After(sd.srv.beh.SendRetryInterval):
		case <-sd.ctx.Done():
			return
		}
		sd.mu.Lock()
		rec.State = SendSending
		cfg = sd.cfg
		sd.mu.Unlock()
	}
}

func (sd *sender) finish(rec *SendRecord, state string, attempts []SendAttempt) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	rec.State = state
	rec.Attempts = append(rec.Attempts, attempts...)
}

// post makes one POST. Errors never carry the URL's query (it may hold the
// extra parameters).
func (sd *sender) post(cfg SendConfig, rec *SendRecord) SendAttempt {
	a := SendAttempt{Time: FormatTime(sd.srv.clock())}
	form := url.Values{"proc_name": {rec.ProcName}, "params": {rec.Params}}
	target, err := url.Parse(cfg.URL)
	if err != nil {
		a.Error = "invalid send URL"
		return a
	}
	if sd.srv.beh.ExtraParamsInQuery {
		q := target.Query()
		for k, v := range cfg.Params {
			q.Set(k, v)
		}
		target.RawQuery = q.Encode()
	} else {
		for k, v := range cfg.Params {
			form.Set(k, v)
		}
	}
	req, err := http.NewRequestWithContext(sd.ctx, http.MethodPost, target.String(), strings.NewReader(form.Encode()))
	if err != nil {
		a.Error = "cannot build request"
		return a
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=UTF-8")
	resp, err := sd.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		a.Error = fmt.Sprintf("POST %s://%s%s: %v", target.Scheme, target.Host, target.Path, err)
		sd.srv.log.Info("send", "id", rec.ID, "proc_name", rec.ProcName, "error", a.Error)
		return a
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 1<<20)
	_ = resp.Body.Close()
	a.StatusCode = resp.StatusCode
	sd.srv.log.Info("send", "id", rec.ID, "proc_name", rec.ProcName, "status", resp.StatusCode)
	return a
}
