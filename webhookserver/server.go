// Package webhookserver is the receiver for Smaregi's API送信 (the sends
// Smaregi makes when stock or transactions change). It authenticates each
// send by the extra form parameter the shop configured, parses it, routes it
// to the SmaregiStores of the contract it concerns and hands it to a Sink;
// it answers 2xx only once the Sink has recorded the send.
//
// It also receives the webhooks of Smaregi's Platform API on one
// operator-wide path (platform.go): authenticated by the operator's webhook
// key (PlatformKeys), routed by contract and store IDs to the Platform
// stores of every watched namespace, deduplicated by event ID and recorded
// through the same Sink, as an edge that triggers a pull.
package webhookserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/httpserve"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// Defaults for Options left zero.
const (
	DefaultBindAddress  = ":8082"
	DefaultMaxBodyBytes = 4 << 20
	// DefaultMaxRows caps the rows of one send. A real stock row is over
	// 200 bytes once form-encoded, so a send within DefaultMaxBodyBytes
	// has fewer than 20,000; the cap bounds the memory of sends made of
	// tiny rows, which cost their typed value each.
	DefaultMaxRows = 20_000
	// DefaultMaxFormFields caps the fields of one send's form (body and
	// query). Smaregi sends proc_name, params and the shop's few extra
	// parameters; the cap refuses forms of many tiny fields before they
	// are decoded.
	DefaultMaxFormFields = 100
	// DefaultInFlightBodies is the default of Options.MaxInFlightBytes in
	// bodies of MaxBodyBytes: eight at once. Real sends are a few KiB, so
	// the cap is met only by a flood, which then gets 503 at once instead
	// of growing the operator past its memory limit.
	DefaultInFlightBodies = 8
	// DefaultMaxConnections caps the receiver's open connections; each
	// costs buffers and a goroutine even when idle.
	DefaultMaxConnections    = 256
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 120 * time.Second
	DefaultShutdownTimeout   = 30 * time.Second
	DefaultSinkTimeout       = 10 * time.Second
)

// Options configure a Server. Reader and Sink are required.
type Options struct {
	// BindAddress is the TCP address Start listens on. Defaults to
	// DefaultBindAddress. TLS is expected to end in front of the receiver
	// (an Ingress or a Gateway), as Smaregi needs a public HTTPS URL.
	BindAddress string
	// Reader reads SmaregiStores and key Secrets; in the operator it is the
	// manager's cache, with the indexes of SetupIndexes registered.
	Reader client.Reader
	// SecretReader reads the receiver key Secrets; it defaults to Reader.
	// Give it a cache restricted to Secrets labelled ManagedByLabel so that
	// the receiver does not make the manager cache every Secret.
	SecretReader client.Reader
	// Sink records accepted sends.
	Sink Sink
	// Clock decides whether a previous key has expired, and stamps
	// Send.ReceivedAt. Defaults to the real clock.
	Clock clock.PassiveClock
	// MaxBodyBytes caps a request body; larger ones get 413. Defaults to
	// DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxRows caps the rows (of all tables) in one send's params; more get
	// 413. Defaults to DefaultMaxRows.
	MaxRows int
	// MaxFormFields caps the fields of a send's form (body and query
	// together); more get 413. Defaults to DefaultMaxFormFields.
	MaxFormFields int
	// MaxInFlightBytes caps the body bytes the receiver holds for all
	// requests in flight together; a request that would pass it gets 503
	// with Retry-After. At least MaxBodyBytes. Defaults to
	// DefaultInFlightBodies times MaxBodyBytes.
	MaxInFlightBytes int64
	// MaxConnections caps the connections Serve keeps open; further ones
	// wait in the listen backlog. Defaults to DefaultMaxConnections.
	MaxConnections int
	// Log receives one line per refusal (V(1)) and per sink failure. It
	// never receives the key or the route. Defaults to the controller-runtime
	// logger named "smaregi-receiver".
	Log logr.Logger

	// Timeouts of the HTTP server; zero means the Default above.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	// ShutdownTimeout bounds how long Start waits for requests in flight
	// once its context is done.
	ShutdownTimeout time.Duration
	// SinkTimeout bounds one Sink.Accept call.
	SinkTimeout time.Duration

	// Status writes the SendsHealthy condition of the stores whose sends
	// arrive with a wrong or previous key, and Recorder the matching
	// events; either may be nil (then that report is not made).
	Status   client.Client
	Recorder events.EventRecorder
	// ReportInterval between repeated reports of a continuing bad verdict
	// per contract. Defaults to DefaultReportInterval.
	ReportInterval time.Duration

	// Platform configures the route of the Platform API's webhooks
	// (smaregiv1alpha1.PlatformWebhookPath); without Platform.Keys it
	// answers 404. MaxBodyBytes and MaxRows (as the most ids of one
	// event) apply to it too.
	Platform PlatformOptions
}

// Server is the receiver. It is a manager.Runnable that every replica runs
// (Smaregi may reach any of them through the Service), and an http.Handler.
type Server struct {
	opts     Options
	log      logr.Logger
	clock    clock.PassiveClock
	health   *sendHealth
	inflight *byteBudget
	platform *platformReceiver // nil: no Platform route
}

var (
	_ manager.Runnable               = (*Server)(nil)
	_ manager.LeaderElectionRunnable = (*Server)(nil)
	_ http.Handler                   = (*Server)(nil)
)

// New checks opts, fills in defaults and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Reader == nil {
		return nil, errors.New("webhookserver: Options.Reader is required")
	}
	if opts.Sink == nil {
		return nil, errors.New("webhookserver: Options.Sink is required")
	}
	if opts.MaxBodyBytes < 0 {
		return nil, fmt.Errorf("webhookserver: Options.MaxBodyBytes is negative (%d)", opts.MaxBodyBytes)
	}
	if opts.MaxRows < 0 {
		return nil, fmt.Errorf("webhookserver: Options.MaxRows is negative (%d)", opts.MaxRows)
	}
	if opts.MaxRows == 0 {
		opts.MaxRows = DefaultMaxRows
	}
	if opts.MaxFormFields < 0 {
		return nil, fmt.Errorf("webhookserver: Options.MaxFormFields is negative (%d)", opts.MaxFormFields)
	}
	if opts.MaxFormFields == 0 {
		opts.MaxFormFields = DefaultMaxFormFields
	}
	if opts.MaxConnections < 0 {
		return nil, fmt.Errorf("webhookserver: Options.MaxConnections is negative (%d)", opts.MaxConnections)
	}
	if opts.MaxConnections == 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.SecretReader == nil {
		opts.SecretReader = opts.Reader
	}
	if opts.BindAddress == "" {
		opts.BindAddress = DefaultBindAddress
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	switch {
	case opts.MaxInFlightBytes < 0:
		return nil, fmt.Errorf("webhookserver: Options.MaxInFlightBytes is negative (%d)", opts.MaxInFlightBytes)
	case opts.MaxInFlightBytes == 0:
		opts.MaxInFlightBytes = DefaultInFlightBodies * opts.MaxBodyBytes
	case opts.MaxInFlightBytes < opts.MaxBodyBytes:
		// A send of MaxBodyBytes could never be read.
		return nil, fmt.Errorf("webhookserver: Options.MaxInFlightBytes (%d) is less than MaxBodyBytes (%d)",
			opts.MaxInFlightBytes, opts.MaxBodyBytes)
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	if opts.Log.GetSink() == nil {
		opts.Log = logf.Log.WithName("smaregi-receiver")
	}
	defaultDuration(&opts.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	defaultDuration(&opts.ReadTimeout, DefaultReadTimeout)
	defaultDuration(&opts.WriteTimeout, DefaultWriteTimeout)
	defaultDuration(&opts.IdleTimeout, DefaultIdleTimeout)
	defaultDuration(&opts.ShutdownTimeout, DefaultShutdownTimeout)
	defaultDuration(&opts.SinkTimeout, DefaultSinkTimeout)
	defaultDuration(&opts.ReportInterval, DefaultReportInterval)
	health := &sendHealth{status: opts.Status, recorder: opts.Recorder, interval: opts.ReportInterval, log: opts.Log,
		now: opts.Clock.Now, last: map[string]healthRecord{}}
	platform, err := newPlatformReceiver(opts.Platform)
	if err != nil {
		return nil, err
	}
	return &Server{opts: opts, log: opts.Log, clock: opts.Clock, health: health, platform: platform,
		inflight: &byteBudget{limit: opts.MaxInFlightBytes}}, nil
}

func defaultDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// NeedLeaderElection returns false: every replica serves sends.
func (s *Server) NeedLeaderElection() bool { return false }

// Handler returns the receiver's http.Handler, for tests and for mounting
// behind another server.
func (s *Server) Handler() http.Handler { return s }

// Start listens on Options.BindAddress and serves until ctx is done, then
// shuts down gracefully.
func (s *Server) Start(ctx context.Context) error {
	ln, err := httpserve.Listen(ctx, s.opts.BindAddress, "Smaregi sends")
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then stops accepting connections and
// waits up to Options.ShutdownTimeout for requests in flight, so that a send
// being recorded during a rollout is still answered. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	return httpserve.Serve(ctx, srv, httpserve.LimitConnections(ln, s.opts.MaxConnections), s.opts.ShutdownTimeout, "Smaregi sends", s.log)
}

// outcome is the answer to one request.
type outcome struct {
	status  int
	result  string
	message string // short reason for the sender; never a secret
	id      string
	targets int
}

func refuse(status int, result, message string) outcome {
	return outcome{status: status, result: result, message: message}
}

// ServeHTTP answers one send, or one Platform webhook.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if isPlatformPath(r.URL.Path) {
		s.servePlatform(w, r)
		return
	}
	start := time.Now()
	out := s.handle(w, r)
	requestsTotal.WithLabelValues(out.result).Inc()
	requestDuration.WithLabelValues(out.result).Observe(time.Since(start).Seconds())
	writeOutcome(w, out)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) outcome {
	routeID, ok := strings.CutPrefix(r.URL.Path, smaregiv1alpha1.ReceiverPathPrefix)
	if !ok || routeID == "" || strings.Contains(routeID, "/") {
		return refuse(http.StatusNotFound, ResultNotFound, "unknown route")
	}
	// The method is checked before the route is looked up, so that a GET
	// cannot tell a live route from a dead one.
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return refuse(http.StatusMethodNotAllowed, ResultMethodNotAllowed, "only POST is accepted")
	}

	ctx := r.Context()
	route, out, ok := s.lookupRoute(ctx, routeID)
	if !ok {
		return out
	}
	store := &route.stores[0]
	log := s.log.WithValues("smaregistore", client.ObjectKeyFromObject(store))

	if r.ContentLength > s.opts.MaxBodyBytes {
		log.V(1).Info("refused a send: body too large", "contentLength", r.ContentLength)
		return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, "request body too large")
	}
	isForm, err := isFormBody(r)
	if err != nil {
		log.V(1).Info("refused a send: form not readable")
		return refuse(http.StatusBadRequest, ResultBadRequest, "malformed form")
	}

	// The key field is looked for in the raw bytes as they arrive (see
	// keyScan): the body's first, else the query's first, as
	// form.Get would pick it. Nothing is decoded before it matched.
	param, _, _ := store.ReceiverKeyLocation()
	body := &formBody{r: http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes), length: r.ContentLength,
		max: s.opts.MaxBodyBytes, budget: s.inflight}
	defer body.release()
	scan := &keyScan{name: param, maxFields: s.opts.MaxFormFields}
	if isForm {
		if err := body.read(scan); err != nil {
			return s.bodyError(w, log, err)
		}
	}
	if !scan.found {
		queryScan := &keyScan{name: param, maxFields: s.opts.MaxFormFields}
		if err := queryScan.scan([]byte(r.URL.RawQuery), true); err != nil {
			return s.bodyError(w, log, err)
		}
		scan = queryScan
	}
	if out, ok := s.authenticate(ctx, log, route, scan.sum, scan.found); !ok {
		return out
	}

	if isForm {
		if err := body.read(nil); err != nil {
			return s.bodyError(w, log, err)
		}
	}
	form, params, err := decodeForm(body.buf, r.URL.RawQuery, s.opts.MaxFormFields)
	if err != nil {
		return s.bodyError(w, log, err)
	}

	procName := form.Get("proc_name")
	if procName == "" {
		log.V(1).Info("refused a send: no proc_name")
		return refuse(http.StatusBadRequest, ResultBadRequest, "missing proc_name")
	}
	kind := sendKind(procName)

	parsed, err := parseParams(procName, params, s.opts.MaxRows)
	if errors.Is(err, errTooManyRows) {
		log.V(1).Info("refused a send: too many rows", "procName", procName, "maxRows", s.opts.MaxRows)
		return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, fmt.Sprintf(
			"more than %d rows in one send; the receiver's --receiver-max-rows limits it", s.opts.MaxRows))
	}
	if err != nil && kind == KindOther {
		// No document describes these params: refusing them would make
		// Smaregi mail the shop an error for a send the mirror does not
		// need (the poll still catches what it would have triggered).
		log.V(1).Info("ignored a send of another kind: params not readable", "procName", procName)
		sendsTotal.WithLabelValues(kind, PullNone).Inc()
		return outcome{status: http.StatusOK, result: ResultIgnored, message: "params not readable; no store pulled"}
	}
	if err != nil {
		log.V(1).Info("refused a send: malformed params", "procName", procName, "problem", err.Error())
		return refuse(http.StatusBadRequest, ResultBadRequest, err.Error())
	}
	if kind == KindOther && len(parsed.storeIDs) == 0 {
		// A send of another kind that names no store pulls nothing (see
		// sendKind): it is counted, and answered 200.
		log.V(1).Info("ignored a send of another kind: it names no store", "procName", procName)
		sendsTotal.WithLabelValues(kind, PullNone).Inc()
		return outcome{status: http.StatusOK, result: ResultIgnored, message: "no store named; no store pulled"}
	}

	targets, err := s.targets(ctx, store, parsed.storeIDs)
	if err != nil {
		log.Error(err, "cannot route a send")
		return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later")
	}
	if kind == KindOther && len(targets) == 0 {
		log.V(1).Info("ignored a send of another kind: it names no store of the contract", "procName", procName)
		sendsTotal.WithLabelValues(kind, PullNone).Inc()
		return outcome{status: http.StatusOK, result: ResultIgnored, message: "no store of the contract named; no store pulled"}
	}

	send := Send{
		ID:           sendID(store.Namespace, store.Spec.ContractID, procName, params),
		Namespace:    store.Namespace,
		ContractID:   store.Spec.ContractID,
		Route:        client.ObjectKeyFromObject(store),
		ProcName:     procName,
		StoreIDs:     parsed.storeIDs,
		Targets:      targets,
		Rows:         parsed.rows,
		ReceivedAt:   s.clock.Now(),
		Stock:        parsed.stock,
		Transactions: parsed.transactions,
	}
	// The write goes on if Smaregi hangs up: a send recorded but answered
	// with an error is resent and deduplicated by ID, while a write cut
	// halfway helps nobody.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.SinkTimeout)
	defer cancel()
	if err := s.opts.Sink.Accept(sctx, send); err != nil {
		log.Error(err, "cannot record a send", "sendID", send.ID, "procName", procName)
		return refuse(http.StatusServiceUnavailable, ResultSinkError, "send not recorded, resend later")
	}
	pull := PullStores
	if len(targets) == 0 {
		pull = PullNone
	}
	sendsTotal.WithLabelValues(kind, pull).Inc()
	log.V(1).Info("accepted a send", "sendID", send.ID, "procName", procName, "rows", send.Rows, "targets", len(targets))
	return outcome{status: http.StatusOK, result: ResultAccepted, id: send.ID, targets: len(targets)}
}

// bodyError answers a body that could not be read or decoded.
func (s *Server) bodyError(w http.ResponseWriter, log logr.Logger, err error) outcome {
	if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
		log.V(1).Info("refused a send: body too large")
		return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, "request body too large")
	}
	switch {
	case errors.Is(err, errTooManyFields):
		log.V(1).Info("refused a send: too many form fields", "maxFormFields", s.opts.MaxFormFields)
		return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, fmt.Sprintf(
			"more than %d form fields; the receiver's --receiver-max-form-fields limits them", s.opts.MaxFormFields))
	case errors.Is(err, errBusy):
		// Not the sender's fault: other requests hold the receiver's
		// bytes in flight. Smaregi's send is worth resending shortly.
		log.V(1).Info("refused a send: too many bytes in flight", "maxInFlightBytes", s.opts.MaxInFlightBytes)
		w.Header().Set("Retry-After", retryAfterSeconds)
		return refuse(http.StatusServiceUnavailable, ResultBusy, "receiver busy, resend later")
	}
	// The error can quote the query string, which may hold the key, so it
	// is not logged.
	log.V(1).Info("refused a send: form not readable")
	return refuse(http.StatusBadRequest, ResultBadRequest, "malformed form")
}

// retryAfterSeconds is the Retry-After of a busy answer: a body in flight
// is read within the read timeout, usually within a second.
const retryAfterSeconds = "1"

// targets returns the stores of the route's contract and namespace that the
// send concerns (see Send.Targets).
func (s *Server) targets(ctx context.Context, route *smaregiv1alpha1.SmaregiStore, storeIDs []string) ([]types.NamespacedName, error) {
	var stores smaregiv1alpha1.SmaregiStoreList
	if err := s.opts.Reader.List(ctx, &stores, client.InNamespace(route.Namespace),
		client.MatchingFields{ContractIDField: route.Spec.ContractID}); err != nil {
		return nil, fmt.Errorf("list SmaregiStores of contract %s in %s: %w", route.Spec.ContractID, route.Namespace, err)
	}
	wanted := make(map[string]struct{}, len(storeIDs))
	for _, id := range storeIDs {
		wanted[smaregi.CanonicalStoreID(id)] = struct{}{}
	}
	var out []types.NamespacedName
	for i := range stores.Items {
		st := &stores.Items[i]
		// The cache index is trusted for the contract, but the namespace
		// and contract are checked again: a send must never reach another
		// tenant's store.
		if st.Namespace != route.Namespace || st.Spec.ContractID != route.Spec.ContractID {
			continue
		}
		if len(wanted) > 0 {
			if _, ok := wanted[smaregi.CanonicalStoreID(st.Spec.StoreID)]; !ok {
				continue
			}
		}
		out = append(out, client.ObjectKeyFromObject(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

func sendID(namespace, contractID, procName string, params []byte) string {
	h := sha256.New()
	for _, part := range []string{namespace, contractID, procName} {
		h.Write([]byte(part))
		h.Write([]byte("\n"))
	}
	h.Write(params)
	return hex.EncodeToString(h.Sum(nil))
}

// response is the JSON body of every answer.
type response struct {
	Result  string `json:"result"`
	Message string `json:"message,omitempty"`
	ID      string `json:"id,omitempty"`
	Targets *int   `json:"targets,omitempty"`
}

func writeOutcome(w http.ResponseWriter, out outcome) {
	body := response{Result: out.result, Message: out.message, ID: out.id}
	if out.result == ResultAccepted {
		body.Targets = &out.targets
	}
	b, err := json.Marshal(body)
	if err != nil {
		// Marshalling a struct of strings cannot fail; answer plainly if
		// it ever does.
		http.Error(w, out.result, out.status)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(out.status)
	_, _ = w.Write(append(b, '\n'))
}
