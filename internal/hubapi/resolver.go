package hubapi

import (
	"context"
	"errors"
	"time"

	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
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
	// Clients builds the Smaregi clients from the operator's per-contract
	// limiter registry, shared with the sync engine so that lookups count
	// against the same budget; nil builds unthrottled clients.
	Clients *storeaccess.Clients
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
	subject := storeaccess.Subject{Call: storeaccess.CallProductList, Endpoint: endpoint, ContractID: contract,
		StoreID: store.Spec.StoreID, Credentials: storeaccess.CredentialsRefOf(store)}
	creds, err := storeaccess.ReadCredentials(ctx, r.opts.APIReader, subject.Credentials)
	if err != nil {
		return nil, classifyLookupError(err, subject)
	}
	target := storeaccess.Target{API: store.APIName(), Endpoint: endpoint, TokenEndpoint: store.TokenEndpointURL(),
		ContractID: contract, StoreID: store.Spec.StoreID, Credentials: creds}
	// The caller is waiting on an HTTP request: one retry at most.
	c, err := r.opts.Clients.Backend(target, storeaccess.Tune{MaxReadAttempts: 2, RequestTimeout: 15 * time.Second})
	if err != nil {
		return nil, &ResolveError{Kind: ResolveMisconfigured, Message: "the store's Smaregi settings are invalid", Err: err}
	}
	found, err := c.ProductIDsByCode(ctx, missing)
	if err != nil {
		return nil, classifyLookupError(err, subject)
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

// classifyLookupError explains a failed lookup to the API caller with
// storeaccess's one table, so the words match the SmaregiStore's status.
func classifyLookupError(err error, subject storeaccess.Subject) error {
	d := storeaccess.Explain(err, subject)
	switch {
	case d.Reason == smaregiv1alpha1.ReasonFunctionDisabled:
		return &ResolveError{Kind: ResolveUnsupported, Err: err,
			Message: "productCode cannot be resolved: " + d.Message + "; or send productId instead"}
	case storeaccess.IsConfigError(err):
		// A missing Secret or key: the message says all there is.
		return &ResolveError{Kind: ResolveMisconfigured, Message: d.Message}
	case d.Config:
		return &ResolveError{Kind: ResolveMisconfigured, Err: err, Message: d.Message}
	default:
		return &ResolveError{Kind: ResolveUnavailable, Err: err, Message: "looking up product codes in Smaregi failed; retry later"}
	}
}
