/*
Copyright 2026 The smaregi-operator Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Command manager is the smaregi-operator: one controller-runtime manager
// running the SmaregiStore controller, the receiver for Smaregi's sends (on
// every replica), the hub API (every replica), the stock sync engine and the
// adjustment pusher (on the leader), over one inventory store.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/plugin/pkg/client/auth" // cloud auth providers in kubeconfigs
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/controllers"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	_ "github.com/stocksync/smaregi-operator/internal/inventory/boltstore" // bolt:// backend
	_ "github.com/stocksync/smaregi-operator/internal/inventory/pgstore"   // postgres:// backend
	"github.com/stocksync/smaregi-operator/internal/mirror"
	"github.com/stocksync/smaregi-operator/internal/pusher"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
	"github.com/stocksync/smaregi-operator/internal/storemetrics"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
	"github.com/stocksync/smaregi-operator/internal/watchscope"
	"github.com/stocksync/smaregi-operator/webhookserver"
	// +kubebuilder:scaffold:imports
)

var (
	scheme   = runtime.NewScheme()
	setupLog = ctrl.Log.WithName("setup")
)

func init() {
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(smaregiv1alpha1.AddToScheme(scheme))
	// +kubebuilder:scaffold:scheme
}

// config is every flag of the operator.
type config struct {
	metricsAddr          string
	probeAddr            string
	pprofAddr            string
	secureMetrics        bool
	enableHTTP2          bool
	leaderElect          bool
	leaderElectionNS     string
	receiverAddr         string
	receiverBaseURL      string
	keyRotationGrace     time.Duration
	credentialsRecheck   time.Duration
	smaregiRateLimit     float64
	smaregiRateBurst     int
	platformReadRate     float64
	platformWriteRate    float64
	receiverMaxBodyBytes int64
	receiverMaxRows      int
	receiverMaxFields    int
	receiverMaxInFlight  int64
	receiverMaxConns     int
	inventoryURL         string
	apiAddr              string
	apiAudiences         string
	apiTLSCertFile       string
	apiTLSKeyFile        string
	syncWorkers          int
	storeReconciles      int
	adjustmentRetention  time.Duration
	smaregiSendMemo      bool
	allowedEndpoints     string
	requestTimeout       time.Duration
	pushSettlePeriod     time.Duration
	watchNamespaces      string
	platformKeySecret    string
	platformKeyHeader    string
	platformKeyInPath    bool
}

func main() {
	var c config
	flag.StringVar(&c.metricsAddr, "metrics-bind-address", "0", "The address the metrics endpoint binds to. "+
		"Use :8443 for HTTPS or :8080 for HTTP, or leave as 0 to disable the metrics service.")
	flag.StringVar(&c.probeAddr, "health-probe-bind-address", ":8081", "The address the probe endpoint binds to (0 disables it).")
	flag.StringVar(&c.pprofAddr, "pprof-bind-address", "0", "The address Go's pprof endpoints (/debug/pprof/) bind to, e.g. 127.0.0.1:6060; "+
		"0 (the default) disables them. Unauthenticated, and a heap profile shows memory contents: bind it to loopback or port-forward to it.")
	flag.BoolVar(&c.leaderElect, "leader-elect", false, "Enable leader election, ensuring only one active controller manager.")
	flag.StringVar(&c.leaderElectionNS, "leader-election-namespace", "",
		"Namespace of the leader election Lease; needed when running outside a cluster (in a Pod it defaults to the Pod's namespace).")
	flag.BoolVar(&c.secureMetrics, "metrics-secure", true, "Serve metrics over HTTPS with authentication and authorisation (TokenReview/SubjectAccessReview).")
	flag.BoolVar(&c.enableHTTP2, "enable-http2", false, "Enable HTTP/2 for the metrics server (off by default: HTTP/2 Stream Cancellation and Rapid Reset CVEs).")
	flag.StringVar(&c.receiverAddr, "receiver-bind-address", ":8082", "The address the receiver for Smaregi's sends (API送信) listens on.")
	flag.StringVar(&c.receiverBaseURL, "receiver-base-url", "", "The public base URL of the receiver, e.g. https://smaregi.example.com; "+
		"status.receiver.url is this plus /smaregi/v1/<routeID>.")
	flag.DurationVar(&c.keyRotationGrace, "key-rotation-grace", 24*time.Hour, "How long a rotated-out receiver key keeps working.")
	flag.DurationVar(&c.credentialsRecheck, "credentials-recheck-interval", 10*time.Minute, "How often a store's credentials are re-checked (with jitter).")
	flag.Float64Var(&c.smaregiRateLimit, "smaregi-rate-limit", 10, "Calls per second to Smaregi per contract ID, shared by all stores of the contract.")
	flag.IntVar(&c.smaregiRateBurst, "smaregi-rate-burst", 10, "Burst of calls to Smaregi per contract ID.")
	// Smaregi counts Platform reads and writes apart, per app and contract.
	// It publishes no figures; a third-party summary gives 50 and 20 a
	// second in production (docs/smaregi-facts.md): these stay under them so
	// that 429s are the exception, not the pacing.
	flag.Float64Var(&c.platformReadRate, "smaregi-platform-read-rate", 40, "Platform API reads (and token calls) per second per app and contract, shared by all stores of the contract.")
	flag.Float64Var(&c.platformWriteRate, "smaregi-platform-write-rate", 16, "Platform API writes per second per app and contract.")
	flag.Int64Var(&c.receiverMaxBodyBytes, "receiver-max-body-bytes", 4<<20, "The largest send the receiver accepts, in bytes.")
	flag.IntVar(&c.receiverMaxRows, "receiver-max-rows", webhookserver.DefaultMaxRows,
		"The most rows (of all tables) one send may carry; more are refused with 413. Bounds the receiver's memory per send.")
	flag.IntVar(&c.receiverMaxFields, "receiver-max-form-fields", webhookserver.DefaultMaxFormFields,
		"The most form fields (body and query) one send may carry; more are refused with 413 before anything is decoded.")
	flag.Int64Var(&c.receiverMaxInFlight, "receiver-max-in-flight-bytes", 0,
		"The most body bytes the receiver holds for all requests at once; a request past it gets 503 with Retry-After. "+
			"0 means 8 times --receiver-max-body-bytes; at least --receiver-max-body-bytes.")
	flag.IntVar(&c.receiverMaxConns, "receiver-max-connections", webhookserver.DefaultMaxConnections,
		"The most connections the receiver keeps open at once; further ones wait to be accepted.")
	flag.StringVar(&c.inventoryURL, "inventory", "bolt:///var/lib/smaregi-operator/inventory.db",
		"Where stock mirrors and accepted sends are kept: bolt:///path/file.db (embedded, one replica) "+
			"or postgres://user@host/db (several replicas; the schema is created and migrated automatically). "+
			"Give the password as PGPASSWORD or in a PGPASSFILE, not in the URL: arguments are visible to whoever may get Pods.")
	flag.StringVar(&c.apiAddr, "api-bind-address", hubapi.DefaultBindAddress,
		"The address of the hub API (stock, availability, adjustments; Kubernetes bearer tokens); 0 disables it.")
	flag.StringVar(&c.apiAudiences, "hub-api-audiences", hubapi.DefaultAudience,
		"Comma-separated token audiences the hub API asks for in TokenReviews; a token must be issued for one "+
			"(kubectl create token --audience "+hubapi.DefaultAudience+"). Empty accepts tokens for the API server itself, which are full-power.")
	flag.StringVar(&c.apiTLSCertFile, "api-tls-cert-file", "", "PEM certificate for the hub API; with --api-tls-key-file it serves HTTPS, reloading the files when they change.")
	flag.StringVar(&c.apiTLSKeyFile, "api-tls-key-file", "", "PEM private key for the hub API's certificate.")
	flag.DurationVar(&c.adjustmentRetention, "adjustment-retention", 30*24*time.Hour,
		"How long settled adjustments are kept; this is also how long an adjustment id stays idempotent.")
	flag.IntVar(&c.syncWorkers, "sync-workers", mirror.DefaultWorkers, "Stores pulled from Smaregi at once.")
	flag.IntVar(&c.storeReconciles, "smaregistore-concurrent-reconciles", controllers.DefaultStoreConcurrentReconciles,
		"SmaregiStores the SmaregiStore controller reconciles at once (receiver key, credential check, status). "+
			"Credential checks still wait for the contract's --smaregi-rate-limit, so more workers do not call Smaregi faster than that.")
	flag.BoolVar(&c.smaregiSendMemo, "smaregi-send-memo", true, "Write \"smaregi-operator <attempt ID>\" into the memo of each stock_upd row, "+
		"so that an ambiguous push is decided exactly from StockHistory; set to false for a Smaregi that rejects memo (error 41).")
	flag.StringVar(&c.allowedEndpoints, "allowed-endpoints", strings.Join(storeaccess.DefaultAllowedEndpoints, ","),
		"Comma-separated URL prefixes a SmaregiStore's spec.endpoint must match; a store outside them is Stalled "+
			"(EndpointNotAllowed) and no request is sent, so whoever may edit SmaregiStores cannot send credentials elsewhere.")
	flag.DurationVar(&c.requestTimeout, "smaregi-request-timeout", smaregi.DefaultRequestTimeout,
		"Bound of one Smaregi call of the adjustment pusher.")
	flag.DurationVar(&c.pushSettlePeriod, "push-settle-period", 5*time.Minute,
		"After a push ended without a clear answer, how long Smaregi's stock history is re-read before the push is concluded not applied and sent again.")
	flag.StringVar(&c.watchNamespaces, "watch-namespaces", "",
		"Comma-separated namespaces the operator acts in: it caches, reconciles, receives for and serves the hub API "+
			"only there, and reads Secrets only there (RBAC may then grant Secrets by RoleBindings in these namespaces). "+
			"Empty (the default) is every namespace.")
	flag.StringVar(&c.platformKeySecret, "platform-webhook-key-secret", "smaregi-platform-webhook-key",
		"The Secret (NAME in the operator's namespace, or NAMESPACE/NAME) holding the key of the Platform API webhook URL; "+
			"created with a random key if missing. Empty switches the Platform webhook route off.")
	flag.StringVar(&c.platformKeyHeader, "platform-webhook-key-header", webhookserver.DefaultPlatformKeyHeader,
		"The custom header whose value must be the Platform webhook key; empty: the key is not accepted in a header.")
	flag.BoolVar(&c.platformKeyInPath, "platform-webhook-key-in-path", true,
		"Accept the Platform webhook key as the last path segment ("+smaregiv1alpha1.PlatformWebhookPath+"/KEY), for an app "+
			"whose webhook settings cannot add a header. Turn off once the header works: a key in a URL reaches access logs.")
	opts := zap.Options{Development: false}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))

	if err := run(ctrl.SetupSignalHandler(), c); err != nil {
		setupLog.Error(err, "operator stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, c config) error {
	if c.receiverBaseURL == "" {
		return errors.New("--receiver-base-url is required: the public URL Smaregi posts to, shown in status.receiver.url")
	}
	if c.storeReconciles < 1 {
		return fmt.Errorf("--smaregistore-concurrent-reconciles %d: want at least 1", c.storeReconciles)
	}

	// HTTP/2 stays off unless asked for (CVE-2023-44487, CVE-2023-39325).
	var tlsOpts []func(*tls.Config)
	if !c.enableHTTP2 {
		tlsOpts = append(tlsOpts, func(t *tls.Config) { t.NextProtos = []string{"http/1.1"} })
	}
	metricsOpts := metricsserver.Options{BindAddress: c.metricsAddr, SecureServing: c.secureMetrics, TLSOpts: tlsOpts}
	if c.secureMetrics {
		metricsOpts.FilterProvider = filters.WithAuthenticationAndAuthorization
	}

	scope, err := watchscope.Parse(splitList(c.watchNamespaces))
	if err != nil {
		return fmt.Errorf("--watch-namespaces: %w", err)
	}
	mgr, err := ctrl.NewManager(ctrl.GetConfigOrDie(), ctrl.Options{
		Scheme:                  scheme,
		Metrics:                 metricsOpts,
		HealthProbeBindAddress:  c.probeAddr,
		PprofBindAddress:        c.pprofAddr,
		LeaderElection:          c.leaderElect,
		LeaderElectionID:        "smaregi-operator.stocksync.io",
		LeaderElectionNamespace: c.leaderElectionNS,
		// The receiver keeps serving while a new leader is elected, so a
		// fast hand-over on shutdown loses nothing.
		LeaderElectionReleaseOnCancel: true,
		Cache:                         controllers.CacheOptions(scope.Names()...),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	// Uncached reads (credentials Secrets) and the hub API's reads never
	// leave the watched namespaces: a name outside is NotFound without a
	// call to the API server.
	apiReader := scope.Reader(mgr.GetAPIReader())
	// smaregi_store_* gauges, read from the informer cache at scrape time.
	if err := storemetrics.Register(mgr.GetCache(), ctrl.Log.WithName("storemetrics")); err != nil {
		return fmt.Errorf("register store metrics: %w", err)
	}

	inv, err := inventory.Open(ctx, c.inventoryURL)
	if err != nil {
		return fmt.Errorf("open inventory store: %w", err)
	}
	defer func() {
		if err := inv.Close(); err != nil {
			setupLog.Error(err, "closing inventory store")
		}
	}()

	// One limiter per contract ID for every caller of Smaregi in the process.
	limiters := smaregi.NewLimiterRegistry(c.smaregiRateLimit, c.smaregiRateBurst)
	allowed, err := storeaccess.ParseEndpoints(splitList(c.allowedEndpoints))
	if err != nil {
		return fmt.Errorf("--allowed-endpoints: %w", err)
	}
	clients := &storeaccess.Clients{
		Limiters:              limiters,
		PlatformLimiters:      smaregi.NewLimiterRegistry(c.platformReadRate, max(1, int(c.platformReadRate))),
		PlatformWriteLimiters: smaregi.NewLimiterRegistry(c.platformWriteRate, max(1, int(c.platformWriteRate))),
		// One cache of Platform app tokens for every caller, so that the
		// token call (which counts against the read limit) is made once an
		// hour per app and contract, not per check or pull.
		PlatformTokens: smaregiplatform.NewTokenCache(time.Now),
		Allowed:        allowed,
	}
	// The operator-wide key of the Platform webhook URL, in the operator's
	// namespace (possibly outside --watch-namespaces: read uncached).
	var platformKeys *webhookserver.PlatformKeys
	var platformRef *smaregiv1alpha1.WebhookKeyReference
	if c.platformKeySecret != "" {
		secret, err := platformKeySecretName(c.platformKeySecret, c.leaderElectionNS)
		if err != nil {
			return fmt.Errorf("--platform-webhook-key-secret: %w", err)
		}
		if platformKeys, err = webhookserver.NewPlatformKeys(webhookserver.PlatformKeysOptions{
			Client: mgr.GetClient(), Reader: mgr.GetAPIReader(), Secret: secret,
			RotationGrace: c.keyRotationGrace, Log: ctrl.Log.WithName("platform-webhook-key"),
		}); err != nil {
			return fmt.Errorf("platform webhook key: %w", err)
		}
		if err := mgr.Add(platformKeys); err != nil {
			return fmt.Errorf("add platform webhook key: %w", err)
		}
		platformRef = &smaregiv1alpha1.WebhookKeyReference{Namespace: secret.Namespace, Name: secret.Name,
			Key: smaregiv1alpha1.PlatformWebhookKeyKey, Header: c.platformKeyHeader, InPath: c.platformKeyInPath}
	}

	reconciler := &controllers.SmaregiStoreReconciler{
		Client:                  mgr.GetClient(),
		APIReader:               apiReader,
		Scheme:                  mgr.GetScheme(),
		Recorder:                mgr.GetEventRecorder("smaregi-operator"),
		Clock:                   clock.RealClock{},
		Checker:                 controllers.NewSmaregiChecker(clients),
		ReceiverBaseURL:         c.receiverBaseURL,
		PlatformWebhook:         platformRef,
		KeyRotationGrace:        c.keyRotationGrace,
		RecheckInterval:         c.credentialsRecheck,
		MaxConcurrentReconciles: c.storeReconciles,
		WatchNamespaces:         scope.Names(),
		// The controller runs on the leader, where the inventory store is
		// open (bbolt has one replica; PostgreSQL is shared by all).
		Outbox: controllers.InventoryOutbox{Store: inv, Clock: clock.RealClock{}},
	}
	if err := reconciler.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up SmaregiStore controller: %w", err)
	}
	// Records spec.safetyStock and the overrides ConfigMap in the inventory
	// (leader only, like every inventory writer), where the hub API of
	// every replica reads them and their changes get resource versions.
	if err := (&controllers.SafetyStockReconciler{
		Client: mgr.GetClient(), APIReader: apiReader, Store: inv, Clock: clock.RealClock{},
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up safety stock controller: %w", err)
	}
	if err := (&controllers.StockPoolReconciler{Client: mgr.GetClient(), APIReader: apiReader, Rows: inv}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up StockPool controller: %w", err)
	}

	// The registry of SmaregiStores that the sync engine and the pusher
	// subscribe to, and the token cache they share: the credentials Secret
	// is read one way (internal/storeaccess).
	registry := storeregistry.New()
	if err := (&storeregistry.Controller{Registry: registry}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up store registry: %w", err)
	}
	tokens := storeaccess.NewTokens(apiReader, mirror.DefaultTokenTTL, clock.RealClock{})

	engine, err := mirror.New(mirror.Options{
		Inventory: inv,
		Clients:   clients,
		Tokens:    tokens,
		Recorder:  mgr.GetEventRecorder("smaregi-operator-mirror"),
		Workers:   c.syncWorkers,
		Log:       ctrl.Log.WithName("mirror"),
	})
	if err != nil {
		return fmt.Errorf("create sync engine: %w", err)
	}
	if err := engine.SetupWithManager(mgr); err != nil {
		return fmt.Errorf("set up sync engine: %w", err)
	}
	registry.Subscribe(engine)

	// The pusher applies other channels' adjustments to Smaregi exactly once
	// (leader only), then asks the engine for a pull so the mirror shows them.
	push, err := pusher.New(pusher.Options{
		// An adjustment Smaregi refuses for an unknown store ID turns the
		// store's CredentialsValid False (the controller watches refusals).
		Store:               reconciler.WatchRefusals(inv),
		Targets:             storeregistry.Targets{Registry: registry, Tokens: tokens},
		Clients:             clients,
		AdjustmentRetention: c.adjustmentRetention,
		DisableMemo:         !c.smaregiSendMemo,
		RequestTimeout:      c.requestTimeout,
		SettlePeriod:        c.pushSettlePeriod,
		OnApplied:           func(key inventory.StoreKey) { engine.RequestPull(key, mirror.TriggerAdjustment) },
	})
	if err != nil {
		return fmt.Errorf("create adjustment pusher: %w", err)
	}
	if err := mgr.Add(push); err != nil {
		return fmt.Errorf("add adjustment pusher: %w", err)
	}
	registry.Subscribe(push)
	// +kubebuilder:scaffold:builder

	if err := webhookserver.SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("set up receiver indexes: %w", err)
	}
	receiver, err := webhookserver.New(webhookserver.Options{
		BindAddress: c.receiverAddr,
		Reader:      mgr.GetClient(),
		// Records every send durably (and marks its stores dirty) before the
		// receiver answers 2xx; works on every replica, leader or not.
		Sink:         webhookserver.NewDurableSink(inv, engine.NoteSend),
		MaxBodyBytes: c.receiverMaxBodyBytes,
		MaxRows:      c.receiverMaxRows,
		// A keyless flood of large bodies is refused without growing the
		// operator past its memory limit (issue 20 §1).
		MaxFormFields:    c.receiverMaxFields,
		MaxInFlightBytes: c.receiverMaxInFlight,
		MaxConnections:   c.receiverMaxConns,
		Log:              ctrl.Log.WithName("receiver"),
		// Sends with a wrong (or the previous) key show on the contract's
		// stores as SendsHealthy and a Warning event, not only as 401s in
		// Smaregi's send history.
		Status:   mgr.GetClient(),
		Recorder: mgr.GetEventRecorder("smaregi-operator-receiver"),
		// Platform webhooks: one operator-wide route, recorded through the
		// same Sink as an edge that makes the stores pull.
		Platform: webhookserver.PlatformOptions{Keys: platformKeys, KeyHeader: c.platformKeyHeader, KeyInPath: c.platformKeyInPath},
	})
	if err != nil {
		return fmt.Errorf("create receiver: %w", err)
	}
	if err := mgr.Add(receiver); err != nil {
		return fmt.Errorf("add receiver: %w", err)
	}

	if c.apiAddr != "0" {
		kube, err := kubernetes.NewForConfig(mgr.GetConfig())
		if err != nil {
			return fmt.Errorf("kubernetes clientset for the hub API: %w", err)
		}
		hub, err := hubapi.New(hubapi.Options{
			BindAddress: c.apiAddr,
			Reader:      scope.Reader(mgr.GetClient()),
			APIReader:   apiReader,
			Clients:     clients,
			Authn:       kube.AuthenticationV1().TokenReviews(),
			Authz:       kube.AuthorizationV1().SubjectAccessReviews(),
			Store:       inv,
			Log:         ctrl.Log.WithName("hub-api"),
			Audiences:   splitList(c.apiAudiences),
			TLSCertFile: c.apiTLSCertFile,
			TLSKeyFile:  c.apiTLSKeyFile,
		})
		if err != nil {
			return fmt.Errorf("create hub API: %w", err)
		}
		if err := mgr.Add(hub); err != nil {
			return fmt.Errorf("add hub API: %w", err)
		}
	}

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return fmt.Errorf("ready check: %w", err)
	}

	setupLog.Info("starting manager", "receiver", c.receiverAddr, "receiverBaseURL", c.receiverBaseURL,
		"inventory", inventory.RedactURL(c.inventoryURL), "watchNamespaces", scope.Names())
	return mgr.Start(ctx)
}

// serviceAccountNamespaceFile holds the Pod's namespace in a cluster.
const serviceAccountNamespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// platformKeySecretName resolves --platform-webhook-key-secret: NAMESPACE/NAME,
// or NAME in the operator's namespace (the Pod's, else
// --leader-election-namespace).
func platformKeySecretName(v, fallbackNS string) (types.NamespacedName, error) {
	ns, name, found := strings.Cut(v, "/")
	if !found {
		name, ns = v, ""
		if b, err := os.ReadFile(serviceAccountNamespaceFile); err == nil {
			ns = strings.TrimSpace(string(b))
		}
		if ns == "" {
			ns = fallbackNS
		}
		if ns == "" {
			// Outside a Pod (make run, the demo, the e2e tests) with no
			// namespace given: the operator must still start, and a
			// local control plane always has "default".
			ns = "default"
		}
	}
	for _, part := range []string{ns, name} {
		if errs := validation.IsDNS1123Subdomain(part); len(errs) > 0 {
			return types.NamespacedName{}, fmt.Errorf("%q: %s", v, strings.Join(errs, "; "))
		}
	}
	return types.NamespacedName{Namespace: ns, Name: name}, nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
