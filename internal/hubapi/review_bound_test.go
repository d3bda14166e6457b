package hubapi

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
)

// blockingAuthn is a fake TokenReview client: every review waits until
// release is closed, so the test controls how many are in flight. A review
// that arrives while limit are already in flight is counted as an overflow
// and answered at once, so that a missing bound fails the test instead of
// hanging it.
type blockingAuthn struct {
	authnv1client.TokenReviewInterface
	limit    int
	entered  chan struct{}
	release  chan struct{}
	mu       sync.Mutex
	inflight int
	overflow int
}

func (b *blockingAuthn) Create(ctx context.Context, tr *authnv1.TokenReview, _ metav1.CreateOptions) (*authnv1.TokenReview, error) {
	b.mu.Lock()
	if b.inflight >= b.limit {
		b.overflow++
		b.mu.Unlock()
		return &authnv1.TokenReview{}, nil
	}
	b.inflight++
	b.mu.Unlock()
	b.entered <- struct{}{}
	<-b.release
	b.mu.Lock()
	b.inflight--
	b.mu.Unlock()
	return &authnv1.TokenReview{}, nil // not authenticated
}

// TestTokenReviewsAreBounded: made-up tokens cost at most
// MaxConcurrentTokenReviews TokenReviews at once; beyond that the caller
// gets 429 with Retry-After, and the slots come back (issue 9 §6).
func TestTokenReviewsAreBounded(t *testing.T) {
	const bound = 2
	authn := &blockingAuthn{limit: bound, entered: make(chan struct{}, 100), release: make(chan struct{})}
	f := newFixture(t, fixtureOpts{authn: authn, maxReviews: bound})

	codes := make(chan int, bound)
	for i := range bound {
		go func() {
			codes <- f.do("GET", f.path("/stock"), fmt.Sprintf("bogus-%d", i), nil).code
		}()
	}
	for range bound {
		<-authn.entered
	}
	r := f.do("GET", f.path("/stock"), "bogus-one-too-many", nil)
	if r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Errorf("a review beyond the bound: got %d (Retry-After %q), want 429 with Retry-After", r.code, r.header.Get("Retry-After"))
	} else if e := r.errorBody(t); e.Error != reasonTooManyRequests {
		t.Errorf("429 reason = %q", e.Error)
	}
	close(authn.release)
	for range bound {
		if c := <-codes; c != http.StatusUnauthorized {
			t.Errorf("a bogus token under review: got %d, want 401", c)
		}
	}
	if r := f.do("GET", f.path("/stock"), "bogus-after", nil); r.code != http.StatusUnauthorized {
		t.Errorf("after the reviews ended: got %d, want 401 (the slots must come back)", r.code)
	}
	authn.mu.Lock()
	defer authn.mu.Unlock()
	if authn.overflow != 0 {
		t.Errorf("%d TokenReviews ran beyond the bound of %d", authn.overflow, bound)
	}
}

// TestRejectedTokensDoNotEvictCallers: a flood of distinct bogus tokens
// does not push an authenticated caller out of the review cache (issue 9
// §6), against the real API server's TokenReview.
func TestRejectedTokensDoNotEvictCallers(t *testing.T) {
	authn := &countingAuthn{TokenReviewInterface: clientset.AuthenticationV1().TokenReviews()}
	f := newFixture(t, fixtureOpts{authn: authn, cacheSize: 4})
	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	const flood = 40
	for i := range flood {
		if r := f.do("GET", f.path("/stock"), fmt.Sprintf("bogus-%d", i), nil); r.code != http.StatusUnauthorized {
			t.Fatalf("bogus token: got %d, want 401", r.code)
		}
	}
	if got := authn.calls(); got != 1+flood {
		t.Fatalf("%d TokenReviews, want %d", got, 1+flood)
	}
	decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
	if got := authn.calls(); got != 1+flood {
		t.Fatalf("the real caller was reviewed again (%d reviews): bogus tokens evicted it from the cache", got)
	}
}
