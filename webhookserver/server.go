// Package webhookserver is the receiver for Smaregi's API送信 (the sends
// Smaregi makes when stock or transactions change). It authenticates each
// send by the extra form parameter the shop configured, parses it, routes it
// to the SmaregiStores of the contract it concerns and hands it to a Sink;
// it answers 2xx only once the Sink has recorded the send.
package webhookserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/httpserve"
)

// Defaults for Options left zero.
const (
	DefaultBindAddress  = ":8082"
	DefaultMaxBodyBytes = 4 << 20
	// DefaultMaxRows caps the rows of one send. A real stock row is over
	// 200 bytes once form-encoded, so a send within DefaultMaxBodyBytes
	// has fewer than 20,000; the cap bounds the memory of sends made of
	// tiny rows, which cost their typed value each.
	DefaultMaxRows           = 20_000
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
}

// Server is the receiver. It is a manager.Runnable that every replica runs
// (Smaregi may reach any of them through the Service), and an http.Handler.
type Server struct {
	opts   Options
	log    logr.Logger
	clock  clock.PassiveClock
	health *sendHealth
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
	if opts.SecretReader == nil {
		opts.SecretReader = opts.Reader
	}
	if opts.BindAddress == "" {
		opts.BindAddress = DefaultBindAddress
	}
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
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
	return &Server{opts: opts, log: opts.Log, clock: opts.Clock, health: health}, nil
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
	return httpserve.Serve(ctx, srv, ln, s.opts.ShutdownTimeout, "Smaregi sends", s.log)
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

// ServeHTTP answers one send.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
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
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	form, params, err := readForm(r, s.opts.MaxBodyBytes)
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			log.V(1).Info("refused a send: body too large")
			return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, "request body too large")
		}
		// The parse error can quote the query string, which may hold the
		// key, so it is not logged.
		log.V(1).Info("refused a send: form not readable")
		return refuse(http.StatusBadRequest, ResultBadRequest, "malformed form")
	}

	if out, ok := s.authenticate(ctx, log, route, form); !ok {
		return out
	}

	procName := form.Get("proc_name")
	if procName == "" {
		log.V(1).Info("refused a send: no proc_name")
		return refuse(http.StatusBadRequest, ResultBadRequest, "missing proc_name")
	}
	if procName != ProcStockSend && procName != ProcTransactionSend {
		log.V(1).Info("ignored a send of a function the operator does not use", "procName", procName)
		return outcome{status: http.StatusOK, result: ResultIgnored, message: "proc_name not used by this receiver"}
	}

	parsed, err := parseParams(procName, params, s.opts.MaxRows)
	if errors.Is(err, errTooManyRows) {
		log.V(1).Info("refused a send: too many rows", "procName", procName, "maxRows", s.opts.MaxRows)
		return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, fmt.Sprintf(
			"more than %d rows in one send; the receiver's --receiver-max-rows limits it", s.opts.MaxRows))
	}
	if err != nil {
		log.V(1).Info("refused a send: malformed params", "procName", procName, "problem", err.Error())
		return refuse(http.StatusBadRequest, ResultBadRequest, err.Error())
	}

	targets, err := s.targets(ctx, store, parsed.storeIDs)
	if err != nil {
		log.Error(err, "cannot route a send")
		return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later")
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
	log.V(1).Info("accepted a send", "sendID", send.ID, "procName", procName, "rows", send.Rows, "targets", len(targets))
	return outcome{status: http.StatusOK, result: ResultAccepted, id: send.ID, targets: len(targets)}
}

// route is what a receiver URL leads to: the SmaregiStores of one
// (namespace, contract) that publish it, and where their key is.
type route struct {
	// stores share namespace and contract; stores[0] names them.
	stores []smaregiv1alpha1.SmaregiStore
	// legacy is set when the URL is a store's own pre-contract route (its
	// UID): that store's old per-store key Secret is still accepted on it.
	legacy *smaregiv1alpha1.SmaregiStore
}

// lookupRoute finds the stores a route belongs to, from the cache indexes:
// every store of a contract publishes the contract's route; a route that is
// a store's UID is that store's URL from before one route per contract.
func (s *Server) lookupRoute(ctx context.Context, routeID string) (route, outcome, bool) {
	unavailable := refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later")
	unknown := refuse(http.StatusNotFound, ResultNotFound, "unknown route")
	var stores smaregiv1alpha1.SmaregiStoreList
	if err := s.opts.Reader.List(ctx, &stores, client.MatchingFields{RouteIDField: routeID}); err != nil {
		// The error may name the field value, that is the route: log only
		// that the look-up failed.
		s.log.Error(errors.New("list SmaregiStores by route failed"), "cannot look up a route", "errorType", fmt.Sprintf("%T", err))
		return route{}, unavailable, false
	}
	var rt route
	if len(stores.Items) == 0 {
		var legacy smaregiv1alpha1.SmaregiStoreList
		if err := s.opts.Reader.List(ctx, &legacy, client.MatchingFields{UIDField: routeID}); err != nil {
			s.log.Error(errors.New("list SmaregiStores by UID failed"), "cannot look up a route", "errorType", fmt.Sprintf("%T", err))
			return route{}, unavailable, false
		}
		if len(legacy.Items) != 1 {
			s.log.V(1).Info("refused a send: unknown route")
			return route{}, unknown, false
		}
		rt.legacy = &legacy.Items[0]
		stores.Items = legacy.Items
	}
	first := &stores.Items[0]
	for i := range stores.Items {
		st := &stores.Items[i]
		// The controller publishes one route per (namespace, contract);
		// stores elsewhere sharing it mean a hand-edited status, and serving
		// either would be a guess.
		if st.Namespace != first.Namespace || st.Spec.ContractID != first.Spec.ContractID {
			s.log.Error(errors.New("route shared across namespaces or contracts"), "refused a send", "stores", len(stores.Items))
			return route{}, unknown, false
		}
	}
	rt.stores = stores.Items
	return rt, outcome{}, true
}

// authenticate checks the key parameter against the contract's key Secret
// (and, on a store's pre-contract route, that store's old key Secret).
func (s *Server) authenticate(ctx context.Context, log logr.Logger, rt route, form url.Values) (outcome, bool) {
	unauthorized := refuse(http.StatusUnauthorized, ResultUnauthorized, "missing or wrong key parameter")
	store := &rt.stores[0]
	param, secretName, secretKey := store.ReceiverKeyLocation()
	got := form.Get(param)
	if got == "" {
		log.V(1).Info("refused a send: no key parameter", "parameter", param)
		s.health.note(rt, verdictWrong)
		return unauthorized, false
	}
	gotSum := sha256.Sum256([]byte(got))
	if rt.legacy != nil {
		// The store's own key Secret of operator versions before one key
		// per contract, controlled by that store.
		switch m, err := s.matchKey(ctx, log, gotSum, rt.legacy.Namespace, rt.legacy.ReceiverKeySecretName(), param,
			func(secret *corev1.Secret) bool { return controlledBy(secret, rt.legacy) }); {
		case err != nil:
			return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later"), false
		case m != verdictWrong:
			log.V(1).Info("accepted a send on a store's pre-contract URL; the shop should enter the contract's URL once")
			return outcome{}, true
		}
	}
	m, err := s.matchKey(ctx, log, gotSum, store.Namespace, secretName, secretKey,
		func(secret *corev1.Secret) bool { return ownedByOneOf(secret, rt.stores) })
	if err != nil {
		return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later"), false
	}
	s.health.note(rt, m)
	if m == verdictWrong {
		return unauthorized, false
	}
	return outcome{}, true
}

// matchKey compares the key sent (as a digest) with the current and, while
// valid, the previous key in the named Secret, if the Secret is the
// operator's (label) and owned as owns says. A missing Secret is no match.
func (s *Server) matchKey(ctx context.Context, log logr.Logger, gotSum [sha256.Size]byte, ns, secretName, secretKey string,
	owns func(*corev1.Secret) bool) (verdict, error) {
	var secret corev1.Secret
	if err := s.opts.SecretReader.Get(ctx, types.NamespacedName{Namespace: ns, Name: secretName}, &secret); err != nil {
		if apierrors.IsNotFound(err) {
			log.Info("refused a send: the receiver key Secret does not exist (yet)", "secret", secretName)
			return verdictWrong, nil
		}
		log.Error(err, "cannot read the receiver key Secret", "secret", secretName)
		return verdictWrong, err
	}
	// Only a Secret the operator made for these very stores may
	// authenticate sends. The label alone is not proof (anyone who may
	// create Secrets in the namespace can set it, e.g. before the
	// controller first runs); the owner reference to a store's UID is set
	// by the operator and names one store object, not a name that can be
	// re-created.
	if secret.Labels[smaregiv1alpha1.ManagedByLabel] != smaregiv1alpha1.ManagedByValue {
		log.Info("refused a send: the receiver key Secret is not managed by the operator", "secret", secretName)
		return verdictWrong, nil
	}
	if !owns(&secret) {
		log.Info("refused a send: the receiver key Secret is not owned by the route's SmaregiStores", "secret", secretName)
		return verdictWrong, nil
	}
	current := keyMatches(gotSum, secret.Data[secretKey])
	previous := false
	if s.previousKeyValid(log, &secret) {
		previous = keyMatches(gotSum, secret.Data[secretKey+smaregiv1alpha1.PreviousKeySuffix])
	}
	if current {
		return verdictCurrent, nil
	}
	if previous {
		log.V(1).Info("accepted the previous receiver key; the shop has not entered the rotated one yet")
		return verdictPrevious, nil
	}
	log.V(1).Info("refused a send: wrong key")
	return verdictWrong, nil
}

// ownedByOneOf reports whether obj has an owner reference (controller or
// not) to one of stores, by UID, kind and group.
func ownedByOneOf(obj metav1.Object, stores []smaregiv1alpha1.SmaregiStore) bool {
	for _, ref := range obj.GetOwnerReferences() {
		if ref.Kind != "SmaregiStore" {
			continue
		}
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil || gv.Group != smaregiv1alpha1.GroupVersion.Group {
			continue
		}
		for i := range stores {
			if stores[i].UID != "" && ref.UID == stores[i].UID {
				return true
			}
		}
	}
	return false
}

// controlledBy reports whether obj's controller reference names store by
// UID (and kind and group, so that another resource with a colliding UID in
// a hand-written reference does not count).
func controlledBy(obj metav1.Object, store *smaregiv1alpha1.SmaregiStore) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || store.UID == "" || ref.UID != store.UID || ref.Kind != "SmaregiStore" {
		return false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	return err == nil && gv.Group == smaregiv1alpha1.GroupVersion.Group
}

// keyMatches compares digests, so the comparison takes the same time
// whatever the lengths of the two keys.
func keyMatches(gotSum [sha256.Size]byte, want []byte) bool {
	if len(want) == 0 {
		return false
	}
	wantSum := sha256.Sum256(want)
	return subtle.ConstantTimeCompare(gotSum[:], wantSum[:]) == 1
}

// previousKeyValid reports whether the rotated-out key is still accepted. A
// missing or unreadable expiry means it is not: failing closed costs the
// shop a resend, failing open would keep a leaked key alive.
func (s *Server) previousKeyValid(log logr.Logger, secret *corev1.Secret) bool {
	raw, ok := secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]
	if !ok {
		return false
	}
	expires, err := time.Parse(time.RFC3339, raw)
	if err != nil {
		log.Info("ignoring the previous receiver key: its expiry is not RFC 3339", "secret", secret.Name)
		return false
	}
	return s.clock.Now().Before(expires)
}

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
		wanted[canonicalStoreID(id)] = struct{}{}
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
			if _, ok := wanted[canonicalStoreID(st.Spec.StoreID)]; !ok {
				continue
			}
		}
		out = append(out, client.ObjectKeyFromObject(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// canonicalStoreID drops leading zeros: spec.storeID allows "01", and
// Smaregi's storeId is a number sent as a string.
func canonicalStoreID(id string) string {
	if n, err := strconv.ParseUint(id, 10, 64); err == nil {
		return strconv.FormatUint(n, 10)
	}
	return id
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
