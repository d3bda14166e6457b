// Package hubapi is the hub's HTTP API: other sales channels read a shop's
// stock and availability from the operator's mirror, submit stock
// adjustments under an idempotency ID, and read an adjustment's state.
// Callers authenticate with Kubernetes bearer tokens (TokenReview) and are
// authorised per store with SubjectAccessReview, so ordinary RBAC decides who
// may read or change stock where. docs/hub-api.md is the user guide.
package hubapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/httpserve"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// Defaults for Options left zero.
const (
	DefaultBindAddress  = ":8083"
	DefaultMaxBodyBytes = 1 << 20
	// DefaultAudience is the token audience the operator asks for: callers
	// get tokens with `kubectl create token --audience smaregi-operator-hub`
	// (or a projected token with that audience), good for this API only.
	DefaultAudience        = "smaregi-operator-hub"
	DefaultReviewCacheTTL  = 10 * time.Second
	DefaultReviewCacheSize = 10_000
	// DefaultMaxConcurrentTokenReviews bounds uncached TokenReviews in
	// flight per replica: enough for many new callers at once, small
	// enough that made-up tokens cannot flood the API server.
	DefaultMaxConcurrentTokenReviews = 16
	// tokenReviewRetryAfter is the Retry-After of a 429 for that bound.
	tokenReviewRetryAfter    = "1"
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	// DefaultWriteTimeout leaves room for a 100,000-row listing (about
	// 10 MB) to a slow client. A listing holds no store read while it
	// writes (it reads in pages), so a slow client costs only itself.
	DefaultWriteTimeout    = 2 * time.Minute
	DefaultIdleTimeout     = 120 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
)

// Options configure a Server. Reader, Authn, Authz and Store are required.
type Options struct {
	// BindAddress is the TCP address Start listens on; defaults to
	// DefaultBindAddress. Bearer tokens must not cross a network in clear
	// text: set TLSCertFile and TLSKeyFile, or end TLS in front of it
	// (Ingress, Gateway or a service mesh).
	BindAddress string
	// TLSCertFile and TLSKeyFile, when both set, make the API serve HTTPS
	// with this PEM certificate and key. The files are watched and the
	// certificate is reloaded when they change (a cert-manager renewal of
	// a mounted Secret), without a restart.
	TLSCertFile string
	TLSKeyFile  string
	// Reader reads SmaregiStores; in the operator, the manager's cache.
	Reader client.Reader
	// APIReader and Clients build the default Resolver when Resolver is
	// nil: APIReader (the manager's uncached reader) reads the store's
	// credentials Secret, Clients builds Smaregi clients from the
	// process's per-contract limiters.
	APIReader client.Reader
	Clients   *storeaccess.Clients
	// Authn and Authz ask the API server who a caller is and what the caller
	// may do (clientset.AuthenticationV1().TokenReviews() and
	// clientset.AuthorizationV1().SubjectAccessReviews()).
	Authn authnv1client.TokenReviewInterface
	Authz authzv1client.SubjectAccessReviewInterface
	// Audiences, if set, are asked for in every TokenReview and one must be
	// granted; empty accepts tokens for the API server's own audiences,
	// which is what `kubectl create token` issues without --audience: any
	// token the caller holds for the API server, with all its power, would
	// then work here. The operator sets DefaultAudience.
	Audiences []string
	// Store is the inventory store.
	Store Store
	// Pools keeps StockPool orders. Nil uses Store when it is an
	// inventory.PoolOrderStore (both backends are); without one the pool
	// order routes answer 404.
	Pools inventory.PoolOrderStore
	// Resolver maps productCode to productId. Nil with APIReader set means
	// a SmaregiResolver; nil without APIReader refuses productCode lines.
	Resolver Resolver
	// Clock stamps adjustments and ages cached reviews; defaults to the real
	// clock.
	Clock clock.PassiveClock
	// Log receives refusals (V(1)) and server-side failures, never tokens.
	// Defaults to the controller-runtime logger named "hub-api".
	Log logr.Logger
	// ReviewCacheTTL is how long a TokenReview or SubjectAccessReview answer
	// is reused; defaults to DefaultReviewCacheTTL. A revoked token or role
	// stops working at most this much later.
	ReviewCacheTTL time.Duration
	// ReviewCacheSize bounds each review cache (entries). Rejected tokens
	// are kept apart in a cache a tenth of this size, so they never evict
	// an authenticated caller.
	ReviewCacheSize int
	// MaxConcurrentTokenReviews bounds TokenReviews in flight (distinct
	// tokens not in a cache); a request beyond it gets 429 with
	// Retry-After. Defaults to DefaultMaxConcurrentTokenReviews.
	MaxConcurrentTokenReviews int
	// MaxBodyBytes caps a request body; larger ones get 413.
	MaxBodyBytes int64

	// WatchBookmarkInterval, WatchTimeout, WatchWriteTimeout and WatchRing
	// tune the live feed (watch.go); zero means the Default… value.
	WatchBookmarkInterval time.Duration
	WatchTimeout          time.Duration
	WatchWriteTimeout     time.Duration
	WatchRing             int

	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	WriteTimeout      time.Duration
	IdleTimeout       time.Duration
	ShutdownTimeout   time.Duration
}

// Server is the hub API. It is a manager.Runnable that every replica runs
// (it only reads the cache and the shared inventory store), and an
// http.Handler.
type Server struct {
	opts     Options
	certs    *certwatcher.CertWatcher // nil without TLS
	log      logr.Logger
	clock    clock.PassiveClock
	reviewer *reviewer
	handler  http.Handler
	watches  *watchHub
	// poolOverrides keeps pools' overrides ConfigMaps parsed (poolSafety).
	poolOverrides overridesCache
	// stopCtx ends with the context given to Serve: watches end then
	// instead of holding the shutdown drain.
	stopCtx context.Context
	stop    context.CancelFunc
}

var (
	_ manager.Runnable               = (*Server)(nil)
	_ manager.LeaderElectionRunnable = (*Server)(nil)
)

// New checks opts, fills in defaults and returns a Server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.Reader == nil:
		return nil, errors.New("hubapi: Options.Reader is required")
	case opts.Authn == nil:
		return nil, errors.New("hubapi: Options.Authn is required")
	case opts.Authz == nil:
		return nil, errors.New("hubapi: Options.Authz is required")
	case opts.Store == nil:
		return nil, errors.New("hubapi: Options.Store is required")
	case opts.MaxBodyBytes < 0:
		return nil, fmt.Errorf("hubapi: Options.MaxBodyBytes is negative (%d)", opts.MaxBodyBytes)
	case (opts.TLSCertFile == "") != (opts.TLSKeyFile == ""):
		return nil, errors.New("hubapi: set both TLSCertFile and TLSKeyFile, or neither")
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
		opts.Log = logf.Log.WithName("hub-api")
	}
	if opts.ReviewCacheSize <= 0 {
		opts.ReviewCacheSize = DefaultReviewCacheSize
	}
	if opts.MaxConcurrentTokenReviews <= 0 {
		opts.MaxConcurrentTokenReviews = DefaultMaxConcurrentTokenReviews
	}
	defaultDuration(&opts.ReviewCacheTTL, DefaultReviewCacheTTL)
	defaultDuration(&opts.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	defaultDuration(&opts.ReadTimeout, DefaultReadTimeout)
	defaultDuration(&opts.WriteTimeout, DefaultWriteTimeout)
	defaultDuration(&opts.IdleTimeout, DefaultIdleTimeout)
	defaultDuration(&opts.ShutdownTimeout, DefaultShutdownTimeout)
	defaultDuration(&opts.WatchBookmarkInterval, DefaultWatchBookmarkInterval)
	defaultDuration(&opts.WatchTimeout, DefaultWatchTimeout)
	defaultDuration(&opts.WatchWriteTimeout, DefaultWatchWriteTimeout)
	if opts.WatchRing <= 0 {
		opts.WatchRing = DefaultWatchRing
	}
	if opts.Pools == nil {
		opts.Pools, _ = opts.Store.(inventory.PoolOrderStore)
	}
	if opts.Resolver == nil && opts.APIReader != nil {
		r, err := NewSmaregiResolver(SmaregiResolverOptions{APIReader: opts.APIReader, Clients: opts.Clients, Clock: opts.Clock})
		if err != nil {
			return nil, err
		}
		opts.Resolver = r
	}
	s := &Server{
		opts:     opts,
		log:      opts.Log,
		clock:    opts.Clock,
		reviewer: newReviewer(opts.Authn, opts.Authz, opts.Audiences, opts.Clock, opts.ReviewCacheTTL, opts.ReviewCacheSize, opts.MaxConcurrentTokenReviews),
	}
	s.stopCtx, s.stop = context.WithCancel(context.Background())
	s.watches = newWatchHub(s)
	if opts.TLSCertFile != "" {
		// Read now so that a wrong path or a broken pair stops the
		// operator at start, not at the first request.
		cw, err := certwatcher.New(opts.TLSCertFile, opts.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("hubapi: load the TLS certificate: %w", err)
		}
		s.certs = cw
	}
	mux := http.NewServeMux()
	// Methods are checked in the handlers rather than in the patterns so
	// that a wrong method gets a JSON 405 with Allow instead of falling
	// through to the catch-all 404.
	mux.Handle("/api/v1/namespaces/{ns}/smaregistores/{name}/stock", s.route(RouteStock, s.serveStock))
	mux.Handle("/api/v1/namespaces/{ns}/smaregistores/{name}/adjustments", s.route(RouteAdjustments, s.serveAdjustments))
	mux.Handle("/api/v1/namespaces/{ns}/smaregistores/{name}/adjustments/{id}", s.route(RouteAdjustment, s.serveAdjustment))
	mux.Handle("/api/v1/namespaces/{ns}/stockpools/{name}/stock", s.route(RoutePoolStock, s.servePoolStock))
	mux.Handle("/api/v1/namespaces/{ns}/stockpools/{name}/adjustments", s.route(RoutePoolAdjustments, s.servePoolAdjustments))
	mux.Handle("/api/v1/namespaces/{ns}/stockpools/{name}/adjustments/{id}", s.route(RoutePoolAdjustment, s.servePoolAdjustment))
	mux.Handle("/", s.route(RouteOther, func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, reasonNotFound, "no such endpoint; see docs/hub-api.md", nil)
	}))
	s.handler = mux
	return s, nil
}

func defaultDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

// NeedLeaderElection returns false: every replica serves the API.
func (s *Server) NeedLeaderElection() bool { return false }

// Handler returns the API's http.Handler, for tests and for mounting behind
// another server.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on Options.BindAddress and serves until ctx is done.
func (s *Server) Start(ctx context.Context) error {
	ln, err := httpserve.Listen(ctx, s.opts.BindAddress, "the hub API")
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then stops accepting connections and
// waits up to Options.ShutdownTimeout for requests in flight, so that an
// adjustment being stored during a rollout is still answered. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		s.stop()
	}()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: s.opts.ReadHeaderTimeout,
		ReadTimeout:       s.opts.ReadTimeout,
		WriteTimeout:      s.opts.WriteTimeout,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
	}
	if s.certs != nil {
		wctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			if err := s.certs.Start(wctx); err != nil {
				s.log.Error(err, "watching the hub API's TLS certificate failed; the loaded one stays in use")
			}
		}()
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.certs.GetCertificate}
		ln = tls.NewListener(ln, srv.TLSConfig)
	}
	return httpserve.Serve(ctx, srv, ln, s.opts.ShutdownTimeout, "the hub API", s.log)
}

// statusWriter records the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// route wraps a handler with the metrics of its route template.
func (s *Server) route(template string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		method := methodLabel(r.Method)
		// Deferred so that a listing aborted mid-stream is still counted.
		defer func() {
			code := sw.code
			if code == 0 {
				code = http.StatusOK
			}
			requestsTotal.WithLabelValues(template, method, strconv.Itoa(code)).Inc()
			requestDuration.WithLabelValues(template, method).Observe(time.Since(start).Seconds())
		}()
		h(sw, r)
	})
}

// Error reasons, the "error" field of every error answer.
const (
	reasonUnauthorized     = "Unauthorized"
	reasonForbidden        = "Forbidden"
	reasonNotFound         = "NotFound"
	reasonBadRequest       = "BadRequest"
	reasonTooLarge         = "RequestEntityTooLarge"
	reasonUnsupportedMedia = "UnsupportedMediaType"
	reasonInvalid          = "Invalid"
	reasonConflict         = "Conflict"
	reasonMethodNotAllowed = "MethodNotAllowed"
	reasonUnavailable      = "ServiceUnavailable"
	reasonBadGateway       = "BadGateway"
	reasonTooManyRequests  = "TooManyRequests"
	reasonGone             = "Gone"
	reasonInternal         = "InternalError"
)

// FieldError names one invalid field of a request.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ErrorBody is the JSON answer of every failed request.
type ErrorBody struct {
	Error   string       `json:"error"`
	Message string       `json:"message"`
	Details []FieldError `json:"details,omitempty"`
}

func writeError(w http.ResponseWriter, status int, reason, message string, details []FieldError) {
	writeJSON(w, status, ErrorBody{Error: reason, Message: message, Details: details})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only our own response types get here; they always marshal.
		http.Error(w, "internal error encoding the answer", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, reasonMethodNotAllowed, "method not allowed; use "+allow, nil)
}

// access authenticates the caller, authorises verb on the store's
// subresource and loads the store. It writes the refusal and returns false
// when the request must stop. Authorisation comes before the existence
// check so that callers without rights cannot probe which stores exist.
func (s *Server) access(w http.ResponseWriter, r *http.Request, subresource, verb string) (*smaregiv1alpha1.SmaregiStore, bool) {
	ns, name, ok := s.authorizeRequest(w, r, storeResource, subresource, verb)
	if !ok {
		return nil, false
	}
	var store smaregiv1alpha1.SmaregiStore
	if err := s.opts.Reader.Get(r.Context(), types.NamespacedName{Namespace: ns, Name: name}, &store); err != nil {
		if apierrors.IsNotFound(err) {
			writeError(w, http.StatusNotFound, reasonNotFound, fmt.Sprintf("SmaregiStore %s/%s not found", ns, name), nil)
			return nil, false
		}
		s.log.Error(err, "reading a SmaregiStore", "namespace", ns, "name", name)
		writeError(w, http.StatusServiceUnavailable, reasonUnavailable, "reading the SmaregiStore failed; retry later", nil)
		return nil, false
	}
	return &store, true
}

// kindOf names an authorised resource in messages.
func kindOf(resource string) string {
	if resource == poolResource {
		return "StockPool"
	}
	return "SmaregiStore"
}

// authorizeRequest authenticates the caller and authorises verb on the
// subresource of the object {ns}/{name} of the path, a resource of the
// operator's group. It writes the refusal and returns false when the
// request must stop.
func (s *Server) authorizeRequest(w http.ResponseWriter, r *http.Request, resource, subresource, verb string) (ns, name string, _ bool) {
	token, ok := bearerToken(r.Header.Get("Authorization"))
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="smaregi-operator hub API"`)
		writeError(w, http.StatusUnauthorized, reasonUnauthorized, "send a Kubernetes bearer token: Authorization: Bearer <token>", nil)
		return "", "", false
	}
	user, tk, authenticated, err := s.reviewer.authenticate(r.Context(), token)
	if errors.Is(err, errReviewsBusy) {
		s.log.V(1).Info("refused a hub API request: too many token reviews in flight", "route", r.Pattern)
		w.Header().Set("Retry-After", tokenReviewRetryAfter)
		writeError(w, http.StatusTooManyRequests, reasonTooManyRequests, "too many new tokens are being checked; retry shortly", nil)
		return "", "", false
	}
	if err != nil {
		s.log.Error(err, "authenticating a hub API caller")
		writeError(w, http.StatusServiceUnavailable, reasonUnavailable, "the Kubernetes API server could not check the token; retry later", nil)
		return "", "", false
	}
	if !authenticated {
		// The route pattern, not the path: a path can carry a "?" and a
		// secret after it as %3F, and a query is never logged.
		s.log.V(1).Info("refused a hub API request: token not authenticated", "route", r.Pattern)
		w.Header().Set("WWW-Authenticate", `Bearer realm="smaregi-operator hub API", error="invalid_token"`)
		writeError(w, http.StatusUnauthorized, reasonUnauthorized, "the bearer token is invalid or expired", nil)
		return "", "", false
	}
	ns, name = r.PathValue("ns"), r.PathValue("name")
	kind := kindOf(resource)
	// Names that cannot exist in Kubernetes cannot name an object either.
	if len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		writeError(w, http.StatusNotFound, reasonNotFound, "not a valid namespace and "+kind+" name", nil)
		return "", "", false
	}
	allowed, err := s.reviewer.authorize(r.Context(), user, tk, attributes{verb: verb, resource: resource, subresource: subresource, namespace: ns, name: name})
	if err != nil {
		s.log.Error(err, "authorising a hub API caller", "user", user.Username)
		writeError(w, http.StatusServiceUnavailable, reasonUnavailable, "the Kubernetes API server could not check permissions; retry later", nil)
		return "", "", false
	}
	if !allowed {
		s.log.V(1).Info("refused a hub API request: forbidden", "user", user.Username, "verb", verb, "resource", resource, "subresource", subresource, "namespace", ns, "name", name)
		role := AdjusterRole
		if subresource == SubresourceStock {
			role = StockViewerRole
		}
		writeError(w, http.StatusForbidden, reasonForbidden, fmt.Sprintf(
			"%s may not %s %s/%s of %s %s in namespace %s (RBAC: group %s, resource %s/%s, verb %s); "+
				"the ClusterRole %s grants it: kubectl -n %s create rolebinding <name> --clusterrole=%s --serviceaccount=<namespace>:<name>",
			user.Username, verb, resource, subresource, kind, name, ns, smaregiv1alpha1.GroupVersion.Group, resource, subresource, verb,
			role, ns, role), nil)
		return "", "", false
	}
	return ns, name, true
}

func storeKey(st *smaregiv1alpha1.SmaregiStore) inventory.StoreKey {
	return inventory.StoreKey{Namespace: st.Namespace, Name: st.Name}
}
