package hubapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

// One control plane for the package: the tests share it and isolate
// themselves by namespace.
var (
	restCfg   *rest.Config
	k8s       client.Client
	clientset *kubernetes.Clientset
	nsCounter atomic.Int64
)

// The shipped ClusterRoles, loaded from config/rbac so that the tests check
// the very roles users apply.
const (
	viewerRoleFile   = "hub_stock_viewer_role.yaml"
	adjusterRoleFile = "hub_adjuster_role.yaml"
)

var roleNames = map[string]string{}

func TestMain(m *testing.M) {
	cfg, stop, err := testenv.StartMain()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer stop()
		restCfg = cfg
		if k8s, err = client.New(cfg, client.Options{Scheme: testenv.Scheme()}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if clientset, err = kubernetes.NewForConfig(cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := installRoles(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func installRoles() error {
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	for _, f := range []string{viewerRoleFile, adjusterRoleFile} {
		data, err := os.ReadFile(filepath.Join(root, "config", "rbac", f))
		if err != nil {
			return fmt.Errorf("read shipped role: %w", err)
		}
		var role rbacv1.ClusterRole
		if err := yaml.UnmarshalStrict(data, &role); err != nil {
			return fmt.Errorf("parse %s: %w", f, err)
		}
		if err := k8s.Create(context.Background(), &role); err != nil {
			return fmt.Errorf("create %s: %w", f, err)
		}
		roleNames[f] = role.Name
	}
	return nil
}

// fixture is one test's namespace, store and callers.
type fixture struct {
	t        testing.TB
	ns       string
	store    *smaregiv1alpha1.SmaregiStore
	key      inventory.StoreKey
	mem      *memStore
	base     string // http://127.0.0.1:port
	srv      *Server
	viewer   string // tokens
	adjuster string
	nobody   string
	client   *http.Client
}

type fixtureOpts struct {
	safetyStock int64
	endpoint    string // Smaregi endpoint; default a closed loopback port
	resolver    Resolver
	apiReader   bool
	authn       authnv1client.TokenReviewInterface
	authz       authzv1client.SubjectAccessReviewInterface
	maxBody     int64
	clock       clock.PassiveClock
	log         logr.Logger
	store       Store // default the fixture's memStore
	maxReviews  int   // Options.MaxConcurrentTokenReviews
	cacheSize   int   // Options.ReviewCacheSize
	audiences   []string
	tlsCert     string // Options.TLSCertFile; the fixture's base stays http://
	tlsKey      string
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	ctx := context.Background()
	ns := fmt.Sprintf("hub-%d", nsCounter.Add(1))
	must(t, k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	if o.endpoint == "" {
		o.endpoint = "http://127.0.0.1:1/access/"
	}
	store := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shibuya"},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{
			ContractID:     "sb12345",
			StoreID:        "1",
			Endpoint:       o.endpoint,
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: "smaregi-credentials"},
			SafetyStock:    o.safetyStock,
		},
	}
	must(t, k8s.Create(ctx, store))
	f := &fixture{t: t, ns: ns, store: store, key: inventory.StoreKey{Namespace: ns, Name: store.Name}, mem: newMemStore(),
		client: &http.Client{Timeout: 30 * time.Second}}
	f.viewer = f.serviceAccount("online-shop-reader", roleNames[viewerRoleFile])
	f.adjuster = f.serviceAccount("online-shop", roleNames[adjusterRoleFile])
	f.nobody = f.serviceAccount("stranger", "")

	if o.authn == nil {
		o.authn = clientset.AuthenticationV1().TokenReviews()
	}
	if o.authz == nil {
		o.authz = clientset.AuthorizationV1().SubjectAccessReviews()
	}
	if o.store == nil {
		o.store = f.mem
	}
	opts := Options{
		BindAddress: "127.0.0.1:0", Reader: k8s, Authn: o.authn, Authz: o.authz,
		Store: o.store, Resolver: o.resolver, MaxBodyBytes: o.maxBody, Clock: o.clock, Log: o.log,
		MaxConcurrentTokenReviews: o.maxReviews, ReviewCacheSize: o.cacheSize, Audiences: o.audiences,
		TLSCertFile: o.tlsCert, TLSKeyFile: o.tlsKey,
	}
	if o.apiReader {
		opts.APIReader = k8s
	}
	srv, err := New(opts)
	must(t, err)
	f.srv = srv
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	must(t, err)
	f.base = "http://" + ln.Addr().String()
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve returned %v after shutdown", err)
		}
	})
	return f
}

// serviceAccount creates a ServiceAccount, binds it to the ClusterRole in
// the fixture's namespace (none if empty) and returns a real token for it.
func (f *fixture) serviceAccount(name, clusterRole string) string {
	f.t.Helper()
	ctx := context.Background()
	must(f.t, k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name}}))
	if clusterRole != "" {
		must(f.t, k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: name},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: f.ns, Name: name}},
		}))
	}
	tr, err := clientset.CoreV1().ServiceAccounts(f.ns).CreateToken(ctx, name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	must(f.t, err)
	return tr.Status.Token
}

func (f *fixture) path(rest string) string {
	return f.base + "/api/v1/namespaces/" + f.ns + "/smaregistores/" + f.store.Name + rest
}

// response is a finished HTTP exchange.
type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) errorBody(t testing.TB) ErrorBody {
	t.Helper()
	var e ErrorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error answer is not JSON (%v): %s", err, r.body)
	}
	if e.Error == "" || e.Message == "" {
		t.Fatalf("error answer without error or message: %s", r.body)
	}
	return e
}

func (f *fixture) do(method, url, token string, body any) response {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		must(f.t, err)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	must(f.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := f.client.Do(req)
	must(f.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	must(f.t, err)
	return response{code: resp.StatusCode, header: resp.Header, body: data}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
