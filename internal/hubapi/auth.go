package hubapi

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authzv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/utils/clock"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// The operator itself must be allowed to ask the API server who a caller is
// and what the caller may do.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Subresources the hub API authorises against. They exist only as RBAC
// names: the API server serves no such subresources, but RBAC rules and
// SubjectAccessReviews accept any subresource name, which lets a platform
// team grant "read stock" and "adjust stock" per store like any other
// permission.
const (
	SubresourceStock       = "stock"
	SubresourceAdjustments = "adjustments"
	storeResource          = "smaregistores"
	poolResource           = "stockpools"
)

// The hub ClusterRoles as installed: config/rbac's hub-stock-viewer and
// hub-adjuster with kustomize's namePrefix (config/default), which the Helm
// chart's names match for a release called smaregi-operator. The README,
// docs/hub-api.md, make demo and the 403 answer use these names only.
const (
	StockViewerRole = "smaregi-operator-hub-stock-viewer"
	AdjusterRole    = "smaregi-operator-hub-adjuster"
)

// reviewTimeout bounds one TokenReview or SubjectAccessReview call.
const reviewTimeout = 10 * time.Second

// tokenKey identifies a bearer token in the caches without keeping the token
// itself in memory longer than the request.
type tokenKey [sha256.Size]byte

func hashToken(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// attributes are what one request asks to do.
type attributes struct {
	verb        string
	resource    string // storeResource or poolResource
	subresource string
	namespace   string
	name        string
}

// authResult is the cached outcome of a TokenReview.
type authResult struct {
	authenticated bool
	user          authnv1.UserInfo
}

// errReviewsBusy is returned when the bound on concurrent uncached
// TokenReviews is reached; the server answers 429.
var errReviewsBusy = errors.New("too many token reviews in flight")

// reviewer authenticates bearer tokens with TokenReview and authorises
// requests with SubjectAccessReview, caching both answers briefly so that a
// busy caller does not cost two API calls per request. Failed calls to the
// API server are never cached.
//
// Anyone who can reach the port can make up tokens, and each new one costs
// a TokenReview, so two things keep that from hurting the API server and
// real callers: at most cap(reviewSlots) TokenReviews run at once (beyond
// that the caller gets errReviewsBusy at once, without waiting), and
// rejected tokens are remembered in their own small cache, so a flood of
// bogus tokens can evict only other bogus tokens, never a real caller's
// cached identity.
type reviewer struct {
	authn     authnv1client.TokenReviewInterface
	authz     authzv1client.SubjectAccessReviewInterface
	audiences []string
	clock     clock.PassiveClock
	ttl       time.Duration

	users       *ttlCache[tokenKey, authResult] // authenticated tokens only
	rejected    *ttlCache[tokenKey, struct{}]   // tokens the API server refused
	decisions   *ttlCache[decisionKey, bool]
	reviewSlots chan struct{}
	// flights collapses concurrent identical reviews (a burst of requests
	// with one new token) into one API call.
	flights singleflight.Group
}

type decisionKey struct {
	token tokenKey
	attrs attributes
}

// rejectedCacheSize bounds the cache of refused tokens relative to the
// positive one: it only spares the API server repeats of one bad token.
func rejectedCacheSize(maxEntries int) int { return max(maxEntries/10, 1) }

func newReviewer(authn authnv1client.TokenReviewInterface, authz authzv1client.SubjectAccessReviewInterface,
	audiences []string, clk clock.PassiveClock, ttl time.Duration, maxEntries, maxConcurrentReviews int) *reviewer {
	return &reviewer{
		authn: authn, authz: authz, audiences: audiences, clock: clk, ttl: ttl,
		users:       newTTLCache[tokenKey, authResult](maxEntries),
		rejected:    newTTLCache[tokenKey, struct{}](rejectedCacheSize(maxEntries)),
		decisions:   newTTLCache[decisionKey, bool](maxEntries),
		reviewSlots: make(chan struct{}, maxConcurrentReviews),
	}
}

// authenticate returns who the token belongs to. ok is false when the API
// server rejected the token; err is set only when it could not be asked,
// and is errReviewsBusy when too many reviews are in flight. Errors never
// contain the token.
func (r *reviewer) authenticate(ctx context.Context, token string) (authnv1.UserInfo, tokenKey, bool, error) {
	key := hashToken(token)
	flight := "authn\x00" + string(key[:])
	review := func() (any, error) {
		// One slot per distinct token under review (the flight already
		// merges repeats). Not waiting for a slot keeps a flood from
		// queueing goroutines behind the API server.
		select {
		case r.reviewSlots <- struct{}{}:
			defer func() { <-r.reviewSlots }()
		default:
			reviewsTotal.WithLabelValues(reviewToken, sourceBusy).Inc()
			return nil, errReviewsBusy
		}
		// The flight is shared: one caller giving up must not fail the
		// others, so the call gets its own deadline instead of ctx's.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reviewTimeout)
		defer cancel()
		tr, err := r.authn.Create(ctx, &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: token, Audiences: r.audiences},
		}, metav1.CreateOptions{})
		if err != nil {
			reviewsTotal.WithLabelValues(reviewToken, sourceError).Inc()
			// The client's error quotes the URL and status, never the body
			// it sent, so the token does not leak through it.
			return nil, fmt.Errorf("token review: %w", err)
		}
		reviewsTotal.WithLabelValues(reviewToken, sourceAPI).Inc()
		res := authResult{authenticated: tr.Status.Authenticated && r.audienceOK(tr.Status.Audiences), user: tr.Status.User}
		if res.authenticated {
			r.users.put(key, res, r.clock.Now(), r.ttl)
		} else {
			r.rejected.put(key, struct{}{}, r.clock.Now(), r.ttl)
		}
		return res, nil
	}
	now := r.clock.Now()
	if res, hit, renew := r.users.getRenew(key, now); hit {
		reviewsTotal.WithLabelValues(reviewToken, sourceCache).Inc()
		if renew {
			r.flights.DoChan(flight, review) // see ttlCache.getRenew
		}
		return res.user, key, res.authenticated, nil
	}
	if _, hit := r.rejected.get(key, now); hit {
		reviewsTotal.WithLabelValues(reviewToken, sourceCache).Inc()
		return authnv1.UserInfo{}, key, false, nil
	}
	v, err, _ := r.flights.Do(flight, review)
	if err != nil {
		return authnv1.UserInfo{}, key, false, err
	}
	res := v.(authResult)
	return res.user, key, res.authenticated, nil
}

// audienceOK checks that the API server accepted the token for one of the
// audiences asked for. With none configured the API server checks its own.
func (r *reviewer) audienceOK(got []string) bool {
	if len(r.audiences) == 0 {
		return true
	}
	for _, want := range r.audiences {
		for _, g := range got {
			if g == want {
				return true
			}
		}
	}
	return false
}

// authorize asks whether user may perform attrs on the store. The decision
// is cached under the token's hash, which stands for the user it was
// reviewed as.
func (r *reviewer) authorize(ctx context.Context, user authnv1.UserInfo, token tokenKey, a attributes) (bool, error) {
	key := decisionKey{token: token, attrs: a}
	flight := strings.Join([]string{"authz", string(token[:]), a.verb, a.resource, a.subresource, a.namespace, a.name}, "\x00")
	review := func() (any, error) {
		extra := make(map[string]authzv1.ExtraValue, len(user.Extra))
		for k, v := range user.Extra {
			extra[k] = authzv1.ExtraValue(v)
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reviewTimeout)
		defer cancel()
		sar, err := r.authz.Create(ctx, &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{
				User:   user.Username,
				UID:    user.UID,
				Groups: user.Groups,
				Extra:  extra,
				ResourceAttributes: &authzv1.ResourceAttributes{
					Namespace:   a.namespace,
					Verb:        a.verb,
					Group:       smaregiv1alpha1.GroupVersion.Group,
					Resource:    a.resource,
					Subresource: a.subresource,
					Name:        a.name,
				},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			reviewsTotal.WithLabelValues(reviewAccess, sourceError).Inc()
			return nil, fmt.Errorf("subject access review for %s %s/%s %s/%s: %w",
				a.verb, a.resource, a.subresource, a.namespace, a.name, err)
		}
		reviewsTotal.WithLabelValues(reviewAccess, sourceAPI).Inc()
		allowed := sar.Status.Allowed && !sar.Status.Denied
		r.decisions.put(key, allowed, r.clock.Now(), r.ttl)
		return allowed, nil
	}
	if allowed, hit, renew := r.decisions.getRenew(key, r.clock.Now()); hit {
		reviewsTotal.WithLabelValues(reviewAccess, sourceCache).Inc()
		if renew {
			r.flights.DoChan(flight, review) // see ttlCache.getRenew
		}
		return allowed, nil
	}
	v, err, _ := r.flights.Do(flight, review)
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// bearerToken extracts the token of an "Authorization: Bearer" header.
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// ttlCache is a bounded map whose entries expire. When full it first drops
// expired entries and then, if still full, arbitrary ones: under a flood of
// distinct tokens the cache only loses hits, it never grows.
type ttlCache[K comparable, V any] struct {
	mu      sync.Mutex
	max     int
	entries map[K]ttlEntry[V]
}

type ttlEntry[V any] struct {
	v          V
	exp, renew time.Time
}

func newTTLCache[K comparable, V any](max int) *ttlCache[K, V] {
	return &ttlCache[K, V]{max: max, entries: make(map[K]ttlEntry[V])}
}

func (c *ttlCache[K, V]) get(k K, now time.Time) (V, bool) {
	v, ok, _ := c.getRenew(k, now)
	return v, ok
}

// getRenew is get, and says whether the entry is in the last quarter of
// its life. The reviewer then renews it in the background while still
// answering from it, so a caller that keeps calling never waits for a
// review once its first one is cached (a wait of two API server round
// trips every TTL otherwise). It changes nothing of how long an answer
// is trusted: an entry is never served past its expiry, and a renewal
// that fails leaves it to expire.
func (c *ttlCache[K, V]) getRenew(k K, now time.Time) (v V, ok, renew bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok || !now.Before(e.exp) {
		var zero V
		return zero, false, false
	}
	return e.v, true, !now.Before(e.renew)
}

func (c *ttlCache[K, V]) put(k K, v V, now time.Time, ttl time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for ek, e := range c.entries {
			if !now.Before(e.exp) {
				delete(c.entries, ek)
			}
		}
		// Map iteration order is unspecified, which makes this a cheap
		// random eviction.
		for ek := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, ek)
		}
	}
	c.entries[k] = ttlEntry[V]{v: v, exp: now.Add(ttl), renew: now.Add(ttl - ttl/4)}
}

func (c *ttlCache[K, V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
