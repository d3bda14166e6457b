package hubapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// Resolver maps product codes (商品コード, often the JAN) to Smaregi product
// IDs for one store. The returned map lacks codes Smaregi does not know.
type Resolver interface {
	ProductIDs(ctx context.Context, store *smaregiv1alpha1.SmaregiStore, codes []string) (map[string]string, error)
}

// ResolveError says why codes could not be resolved, in words meant for the
// API caller. Kind decides the HTTP status.
type ResolveError struct {
	Kind    ResolveErrorKind
	Message string
	Err     error
}

// ResolveErrorKind classifies a ResolveError.
type ResolveErrorKind int

const (
	// ResolveUnsupported: the shop has product_ref switched off (code 23).
	ResolveUnsupported ResolveErrorKind = iota + 1
	// ResolveMisconfigured: the store's credentials are missing or rejected.
	ResolveMisconfigured
	// ResolveUnavailable: Smaregi could not be reached or failed; retry.
	ResolveUnavailable
)

func (e *ResolveError) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *ResolveError) Unwrap() error { return e.Err }

// Defaults of SmaregiResolverOptions.
const (
	DefaultCodeTTL        = 10 * time.Minute
	DefaultMaxCachedCodes = 200_000
)

// SmaregiResolverOptions configures a SmaregiResolver.
type SmaregiResolverOptions struct {
	// APIReader reads the store's credentials Secret. It should be the
	// manager's uncached reader, so that the operator does not cache every
	// Secret in the cluster.
	APIReader client.Reader
	// Limiters is the operator's per-contract limiter registry, shared with
	// the sync engine so that lookups count against the same budget.
	Limiters *smaregi.LimiterRegistry
	// HTTPClient is shared by every lookup; defaults to a client with its
	// own transport.
	HTTPClient *http.Client
	// TTL of a cached code→ID mapping; defaults to DefaultCodeTTL. Codes are
	// unique per contract and rarely reassigned, so minutes are safe.
	TTL time.Duration
	// MaxCachedCodes bounds the cache over all contracts.
	MaxCachedCodes int
	Clock          clock.PassiveClock
}

// SmaregiResolver resolves codes with Smaregi's product_ref using each
// store's own credentials, and caches the mapping per contract.
type SmaregiResolver struct {
	opts  SmaregiResolverOptions
	cache *ttlCache[codeKey, string]
}

type codeKey struct {
	endpoint, contract, code string
}

// NewSmaregiResolver returns a resolver; APIReader is required.
func NewSmaregiResolver(opts SmaregiResolverOptions) (*SmaregiResolver, error) {
	if opts.APIReader == nil {
		return nil, errors.New("hubapi: SmaregiResolverOptions.APIReader is required")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultCodeTTL
	}
	if opts.MaxCachedCodes <= 0 {
		opts.MaxCachedCodes = DefaultMaxCachedCodes
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	return &SmaregiResolver{opts: opts, cache: newTTLCache[codeKey, string](opts.MaxCachedCodes)}, nil
}

// ProductIDs implements Resolver.
func (r *SmaregiResolver) ProductIDs(ctx context.Context, store *smaregiv1alpha1.SmaregiStore, codes []string) (map[string]string, error) {
	endpoint, contract := store.EndpointURL(), store.Spec.ContractID
	out := make(map[string]string, len(codes))
	var missing []string
	now := r.opts.Clock.Now()
	for _, c := range codes {
		if id, ok := r.cache.get(codeKey{endpoint, contract, c}, now); ok {
			out[c] = id
		} else {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	token, err := r.accessToken(ctx, store)
	if err != nil {
		return nil, err
	}
	c, err := smaregi.New(smaregi.Options{
		Endpoint: endpoint, ContractID: contract, AccessToken: token,
		Limiters: r.opts.Limiters, HTTPClient: r.opts.HTTPClient,
		// The caller is waiting on an HTTP request: one retry at most.
		MaxReadAttempts: 2, RequestTimeout: 15 * time.Second,
	})
	if err != nil {
		return nil, &ResolveError{Kind: ResolveMisconfigured, Message: "the store's Smaregi settings are invalid", Err: err}
	}
	found, err := c.ProductIDsByCode(ctx, missing)
	if err != nil {
		return nil, classifyLookupError(err)
	}
	now = r.opts.Clock.Now()
	for code, id := range found {
		out[code] = id
		// Unknown codes are not cached: a product added a minute ago must
		// resolve now.
		r.cache.put(codeKey{endpoint, contract, code}, id, now, r.opts.TTL)
	}
	return out, nil
}

func (r *SmaregiResolver) accessToken(ctx context.Context, store *smaregiv1alpha1.SmaregiStore) (string, error) {
	var sec corev1.Secret
	name := store.Spec.CredentialsRef.Name
	err := r.opts.APIReader.Get(ctx, types.NamespacedName{Namespace: store.Namespace, Name: name}, &sec)
	if apierrors.IsNotFound(err) {
		return "", &ResolveError{Kind: ResolveMisconfigured, Message: fmt.Sprintf("the store's credentials Secret %q does not exist", name)}
	}
	if err != nil {
		return "", &ResolveError{Kind: ResolveUnavailable, Message: "reading the store's credentials failed", Err: err}
	}
	v, ok := sec.Data[store.CredentialsKey()]
	if !ok || strings.TrimSpace(string(v)) == "" {
		return "", &ResolveError{Kind: ResolveMisconfigured,
			Message: fmt.Sprintf("the store's credentials Secret %q has no key %q", name, store.CredentialsKey())}
	}
	return string(v), nil
}

func classifyLookupError(err error) error {
	switch code, _ := smaregi.ErrorCode(err); {
	case code == smaregi.CodeFunctionDisabled:
		return &ResolveError{Kind: ResolveUnsupported, Err: err,
			Message: "productCode cannot be resolved because this shop has 商品情報参照 (product_ref) switched off in Smaregi's API settings (機能設定); " +
				"send productId instead, or switch on 商品情報参照"}
	case smaregi.IsConfigError(err):
		return &ResolveError{Kind: ResolveMisconfigured, Err: err,
			Message: "Smaregi rejected the store's credentials or settings; see the SmaregiStore's status"}
	default:
		return &ResolveError{Kind: ResolveUnavailable, Err: err, Message: "looking up product codes in Smaregi failed; retry later"}
	}
}
