package controllers_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/hubapi"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/testenv"
	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

// feed is a channel's view of a store: a hubclient.Mirror that also keeps
// the product of every event, and checks versions follow on with no gap or
// duplicate.
type feed struct {
	*hubclient.Mirror
	mu       sync.Mutex
	replaces int
	last     uint64
	events   []string
	problems []string
}

func (f *feed) Replace(items []hubclient.Item, rv uint64) {
	f.mu.Lock()
	f.replaces++
	f.last = rv
	f.mu.Unlock()
	f.Mirror.Replace(items, rv)
}

func (f *feed) Apply(e hubclient.Event) {
	f.mu.Lock()
	if e.ResourceVersion != f.last+1 {
		f.problems = append(f.problems, fmt.Sprintf("event %d after %d", e.ResourceVersion, f.last))
	}
	f.last = e.ResourceVersion
	f.events = append(f.events, e.Item.ProductID)
	f.mu.Unlock()
	f.Mirror.Apply(e)
}

// mark is how many events the feed has seen.
func (f *feed) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.events)
}

// expectEvents waits until the feed has seen len(want) events after mark
// and checks they are for exactly the products in want.
func (f *feed) expectEvents(t *testing.T, what string, mark int, want ...string) {
	t.Helper()
	eventually(t, waitLong, func() error {
		f.mu.Lock()
		defer f.mu.Unlock()
		if n := len(f.events) - mark; n < len(want) {
			return fmt.Errorf("%s: %d of %d events so far", what, n, len(want))
		}
		return nil
	})
	f.mu.Lock()
	got := slices.Clone(f.events[mark:])
	f.mu.Unlock()
	slices.Sort(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: events for %v, want %v", what, got, want)
	}
}

// hubViewer serves the hub API over the suite's inventory on 127.0.0.1
// and returns a client holding the token of a ServiceAccount bound, in ns,
// to the shipped stock viewer role.
func hubViewer(t *testing.T, ns string) *hubclient.Client {
	t.Helper()
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "rbac", "hub_stock_viewer_role.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(data, &role); err != nil {
		t.Fatal(err)
	}
	if err := live.Create(ctx, &role); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	mustCreate(t, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "channel"}})
	mustCreate(t, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "channel"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: ns, Name: "channel"}},
	})
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "channel", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600), Audiences: []string{hubapi.DefaultAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := hubapi.New(hubapi.Options{BindAddress: "127.0.0.1:0", Reader: live, Authn: cs.AuthenticationV1().TokenReviews(),
		Authz: cs.AuthorizationV1().SubjectAccessReviews(), Store: outbox, Audiences: []string{hubapi.DefaultAudience},
		WatchBookmarkInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(sctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub API: %v", err)
		}
	})
	return &hubclient.Client{BaseURL: "http://" + ln.Addr().String(), Token: tr.Status.Token, Backoff: 50 * time.Millisecond}
}

func setConfigMap(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	if err := live.Update(context.Background(), cm); err != nil {
		t.Fatal(err)
	}
}

// TestSafetyStockOverridesReachTheFeed: the ConfigMap named by
// spec.safetyStockOverridesRef and spec.safetyStock set what the hub API
// lists as available, and a channel watching the store gets an event for
// exactly the products whose availability a change of either changes, so
// its view stays equal to a fresh listing. Bad entries are ignored and
// named in SafetyStockOverridesValid; a missing or unlabelled ConfigMap
// leaves only spec.safetyStock.
func TestSafetyStockOverridesReachTheFeed(t *testing.T) {
	ctx := context.Background()
	ns := newNamespace(t)
	key := inventory.StoreKey{Namespace: ns, Name: "s"}
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	if _, err := outbox.ApplyPull(ctx, key, []inventory.Row{
		{ProductID: "8000001", StockAmount: 10, UpdDateTime: t0},
		{ProductID: "8000002", StockAmount: 3, UpdDateTime: t0},
		{ProductID: "8000003", StockAmount: 5, UpdDateTime: t0},
	}, t0); err != nil {
		t.Fatal(err)
	}
	st := newStore(ns, "s", "http://127.0.0.1:1/access/")
	st.Spec.SafetyStock = 1
	st.Spec.SafetyStockOverridesRef = &smaregiv1alpha1.ConfigMapReference{Name: "overrides"}
	mustCreate(t, st)
	s := waitCondition(t, ns, "s", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonConfigMapNotFound)
	if c := cond(s, smaregiv1alpha1.SafetyStockOverridesValidCondition); !strings.Contains(c.Message, smaregiv1alpha1.SafetyStockOverridesLabel) {
		t.Errorf("ConfigMapNotFound does not say how to label it: %q", c.Message)
	}
	if c := meta.FindStatusCondition(s.Status.Conditions, smaregiv1alpha1.ReadyCondition); c != nil && c.Reason == smaregiv1alpha1.ReasonConfigMapNotFound {
		t.Errorf("a missing overrides ConfigMap made the store unready: %+v", c)
	}
	eventually(t, waitLong, func() error {
		if _, recorded, err := outbox.SafetyStockFor(ctx, key, nil); err != nil || !recorded {
			return fmt.Errorf("safety stock not recorded yet (%v)", err)
		}
		return nil
	})

	c := hubViewer(t, ns)
	f := &feed{Mirror: hubclient.NewMirror()}
	sctx, cancel := context.WithCancel(ctx)
	synced := make(chan error, 1)
	go func() { synced <- c.Sync(sctx, ns, "s", f) }()
	defer func() {
		cancel()
		<-synced
	}()
	eventually(t, waitLong, func() error {
		v, err := outbox.StoreVersion(ctx, key)
		if _, have := f.Snapshot(); err != nil || have != v {
			return fmt.Errorf("the channel is at %d, the store at %d (%v)", have, v, err)
		}
		return nil
	})

	// Unlabelled: not read, no override.
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "overrides"},
		Data: map[string]string{"8000002": "0", "8000009": "4", "abc": "1", "8000003": "-2"}}
	mustCreate(t, cm)
	waitCondition(t, ns, "s", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonConfigMapNotLabelled)

	// Labelled: the good entries apply, for products with a row; the bad
	// ones are named.
	m := f.mark()
	cm.Labels = map[string]string{smaregiv1alpha1.SafetyStockOverridesLabel: "true"}
	setConfigMap(t, cm)
	f.expectEvents(t, "labelling the ConfigMap", m, "8000002")
	s = waitCondition(t, ns, "s", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonInvalidEntries)
	msg := cond(s, smaregiv1alpha1.SafetyStockOverridesValidCondition).Message
	for _, want := range []string{`2 of 4 entries`, `"abc"`, `"8000003"`} {
		if !strings.Contains(msg, want) {
			t.Errorf("InvalidEntries message %q lacks %s", msg, want)
		}
	}
	if it, _ := f.Get("8000002"); it.Available != 3 || it.SafetyStock != 0 {
		t.Fatalf("with the override 0 the channel sees %+v, want available 3", it)
	}

	// Fixed and changed: one event per product whose value changed.
	m = f.mark()
	cm.Data = map[string]string{"8000002": "0", "8000003": "4"}
	setConfigMap(t, cm)
	f.expectEvents(t, "fixing the bad entry", m, "8000003")
	waitCondition(t, ns, "s", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionTrue, smaregiv1alpha1.ReasonSucceeded)

	// spec.safetyStock: every product without an override.
	m = f.mark()
	updateStore(t, ns, "s", func(s *smaregiv1alpha1.SmaregiStore) { s.Spec.SafetyStock = 2 })
	f.expectEvents(t, "spec.safetyStock 1 → 2", m, "8000001")
	if it, _ := f.Get("8000001"); it.Available != 8 || it.SafetyStock != 2 {
		t.Fatalf("after spec.safetyStock 2 the channel sees %+v, want available 8", it)
	}

	// Deleted: no override applies any more.
	m = f.mark()
	if err := live.Delete(ctx, cm); err != nil {
		t.Fatal(err)
	}
	f.expectEvents(t, "deleting the ConfigMap", m, "8000002", "8000003")
	waitCondition(t, ns, "s", smaregiv1alpha1.SafetyStockOverridesValidCondition, metav1.ConditionFalse, smaregiv1alpha1.ReasonConfigMapNotFound)

	// No ref: the condition goes, nothing else changes.
	m = f.mark()
	updateStore(t, ns, "s", func(s *smaregiv1alpha1.SmaregiStore) { s.Spec.SafetyStockOverridesRef = nil })
	eventually(t, waitLong, func() error {
		s := getStore(t, ns, "s")
		if c := meta.FindStatusCondition(s.Status.Conditions, smaregiv1alpha1.SafetyStockOverridesValidCondition); c != nil {
			return fmt.Errorf("%s still there: %+v", c.Type, c)
		}
		return nil
	})

	fresh, err := c.List(ctx, ns, "s")
	if err != nil {
		t.Fatal(err)
	}
	got, rv := f.Snapshot()
	want := map[string]hubclient.Item{}
	for _, it := range fresh.Items {
		want[it.ProductID] = it
	}
	if !reflect.DeepEqual(got, want) || rv != fresh.ResourceVersion {
		t.Fatalf("the channel's view at %d:\n%+v\na fresh listing at %d:\n%+v", rv, got, fresh.ResourceVersion, want)
	}
	if want["8000002"].Available != 1 || want["8000003"].Available != 3 || fresh.SafetyStock != 2 {
		t.Fatalf("the listing after all changes: %+v", fresh)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.replaces != 1 || len(f.problems) > 0 || len(f.events) != m {
		t.Fatalf("listed %d times (want 1), version problems %v, %d events after removing the ref (want none)", f.replaces, f.problems, len(f.events)-m)
	}
}
