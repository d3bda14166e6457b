package mirror

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
	"github.com/stocksync/smaregi-operator/internal/testenv"
)

func openInventory(t *testing.T) inventory.Store {
	t.Helper()
	inv, err := boltstore.Open(filepath.Join(t.TempDir(), "inventory.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inv.Close() })
	return inv
}

// seedRows gives a store a mirror row (and a summary).
func seedRows(t *testing.T, inv inventory.Store, key inventory.StoreKey, productIDs ...string) {
	t.Helper()
	if len(productIDs) == 0 {
		productIDs = []string{"8000001"}
	}
	rows := make([]inventory.Row, 0, len(productIDs))
	for _, p := range productIDs {
		rows = append(rows, inventory.Row{ProductID: p, StockAmount: 5, UpdDateTime: simStart})
	}
	if _, err := inv.ApplyPull(context.Background(), key, rows, simStart); err != nil {
		t.Fatal(err)
	}
}

// seedDirty marks stores dirty with a recorded send.
func seedDirty(t *testing.T, inv inventory.Store, id string, keys ...inventory.StoreKey) {
	t.Helper()
	if _, err := inv.RecordSend(context.Background(), inventory.SendRecord{ID: id, Namespace: keys[0].Namespace,
		ProcName: "transaction_send", Targets: keys, Rows: 1, ReceivedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// seedPending submits a pending adjustment (an online order of one unit).
func seedPending(t *testing.T, inv inventory.Store, key inventory.StoreKey, id string) {
	t.Helper()
	if _, _, err := inv.SubmitAdjustment(context.Background(), inventory.Adjustment{Key: key, ID: id,
		Reason: "online order", Lines: []inventory.AdjustmentLine{{ProductID: "8000001", Quantity: -1}}}); err != nil {
		t.Fatal(err)
	}
}

func wantInventoryStores(t *testing.T, inv inventory.Store, want ...inventory.StoreKey) {
	t.Helper()
	got, err := inv.Stores(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, inventory.CompareStoreKeys)
	if !slices.Equal(got, want) {
		t.Fatalf("inventory holds %v, want %v", got, want)
	}
}

func smaregiStore(key inventory.StoreKey) *v1alpha1.SmaregiStore {
	return &v1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name},
		Spec: v1alpha1.SmaregiStoreSpec{ContractID: testContract, StoreID: "1",
			CredentialsRef: v1alpha1.SecretKeyReference{Name: "smaregi-credentials"}}}
}

var smaregiStoresGR = schema.GroupResource{Group: v1alpha1.GroupVersion.Group, Resource: "smaregistores"}

func TestSweepOrphans(t *testing.T) {
	inv := openInventory(t)
	var (
		declared  = inventory.StoreKey{Namespace: "shop", Name: "store-1"}
		otherNS   = inventory.StoreKey{Namespace: "other", Name: "store-1"} // same name, no object
		gone      = inventory.StoreKey{Namespace: "shop", Name: "closed"}
		dirtyOnly = inventory.StoreKey{Namespace: "gone", Name: "ghost"}
		orders    = inventory.StoreKey{Namespace: "shop", Name: "has-orders"}
	)
	seedRows(t, inv, declared)
	seedRows(t, inv, otherNS)
	seedRows(t, inv, gone)
	seedDirty(t, inv, "s1", gone, declared)
	seedDirty(t, inv, "s2", dirtyOnly)
	seedRows(t, inv, orders)
	seedPending(t, inv, orders, "order-1")

	c := fake.NewClientBuilder().WithScheme(testenv.Scheme()).WithObjects(smaregiStore(declared)).Build()
	e, err := New(Options{Inventory: inv, Client: c, APIReader: c})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.sweepOrphans(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []inventory.StoreKey{dirtyOnly, otherNS, gone}; !slices.Equal(res.Removed, want) {
		t.Errorf("removed %v, want %v", res.Removed, want)
	}
	if want := []inventory.StoreKey{orders}; !slices.Equal(res.KeptPending, want) {
		t.Errorf("kept for pending adjustments %v, want %v", res.KeptPending, want)
	}
	wantInventoryStores(t, inv, declared, orders)
	if rows := mirrorRows(t, inv, declared); len(rows) != 1 {
		t.Errorf("declared store has %d rows after the sweep, want 1", len(rows))
	}
	marks, err := inv.Dirty(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 1 || marks[0].Key != declared {
		t.Errorf("dirty marks after the sweep %v, want only %s's", marks, declared)
	}
	if n, _, err := inv.PendingAdjustments(context.Background(), orders); err != nil || n != 1 {
		t.Errorf("pending adjustments of %s = %d, %v; want 1", orders, n, err)
	}
}

// A failed SmaregiStore list must not read as "no SmaregiStores".
func TestSweepOrphansListErrorRemovesNothing(t *testing.T) {
	inv := openInventory(t)
	a, b := inventory.StoreKey{Namespace: "shop", Name: "a"}, inventory.StoreKey{Namespace: "shop", Name: "b"}
	seedRows(t, inv, a)
	seedDirty(t, inv, "s1", b)
	c := fake.NewClientBuilder().WithScheme(testenv.Scheme()).WithInterceptorFuncs(interceptor.Funcs{
		List: func(context.Context, client.WithWatch, client.ObjectList, ...client.ListOption) error {
			return apierrors.NewServiceUnavailable("etcd is on fire")
		},
	}).Build()
	e, err := New(Options{Inventory: inv, Client: c, APIReader: c})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.sweepOrphans(context.Background())
	if err == nil {
		t.Fatal("sweep succeeded although the list failed")
	}
	if len(res.Removed) != 0 {
		t.Errorf("removed %v after a failed list", res.Removed)
	}
	wantInventoryStores(t, inv, a, b)
}

// A store missing from the (cached) list is removed only once an uncached
// read says NotFound: one that exists there, or that cannot be read, stays.
func TestSweepOrphansConfirmsWithAPIReader(t *testing.T) {
	inv := openInventory(t)
	var (
		uncached  = inventory.StoreKey{Namespace: "unwatched", Name: "store-1"} // exists; the cache does not cover it
		forbidden = inventory.StoreKey{Namespace: "locked", Name: "store-1"}    // the read fails
		gone      = inventory.StoreKey{Namespace: "shop", Name: "closed"}
	)
	for _, k := range []inventory.StoreKey{uncached, forbidden, gone} {
		seedRows(t, inv, k)
	}
	cached := fake.NewClientBuilder().WithScheme(testenv.Scheme()).Build()
	api := fake.NewClientBuilder().WithScheme(testenv.Scheme()).WithObjects(smaregiStore(uncached)).
		WithInterceptorFuncs(interceptor.Funcs{
			Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
				if key.Namespace == forbidden.Namespace {
					return apierrors.NewForbidden(smaregiStoresGR, key.Name, errors.New("no RBAC here"))
				}
				return c.Get(ctx, key, obj, opts...)
			},
		}).Build()
	e, err := New(Options{Inventory: inv, Client: cached, APIReader: api})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.sweepOrphans(context.Background())
	if err == nil || !apierrors.IsForbidden(errors.Unwrap(err)) {
		t.Errorf("sweep error %v, want the Forbidden read reported", err)
	}
	if want := []inventory.StoreKey{gone}; !slices.Equal(res.Removed, want) {
		t.Errorf("removed %v, want %v", res.Removed, want)
	}
	wantInventoryStores(t, inv, uncached, forbidden)
}

// A store the watch registered (the object was created after the list) is
// never removed, even before any read confirms it.
func TestSweepOrphansKeepsRegisteredStores(t *testing.T) {
	inv := openInventory(t)
	key := inventory.StoreKey{Namespace: "shop", Name: "new"}
	seedRows(t, inv, key)
	c := fake.NewClientBuilder().WithScheme(testenv.Scheme()).Build() // neither the list nor a Get sees it
	e, err := New(Options{Inventory: inv, Client: c, APIReader: c})
	if err != nil {
		t.Fatal(err)
	}
	e.UpsertStore(storeregistry.StoreConfig{Key: key, Generation: 1, ContractID: testContract, StoreID: "1"})
	res, err := e.sweepOrphans(context.Background())
	if err != nil || len(res.Removed) != 0 {
		t.Fatalf("sweep = %+v, %v; want nothing removed", res, err)
	}
	wantInventoryStores(t, inv, key)
}

// A deletion the watch sees still removes everything, but dropping orders
// not yet applied in Smaregi is logged as an error.
func TestRemoveStoreLogsDroppedAdjustments(t *testing.T) {
	inv := openInventory(t)
	withOrders := inventory.StoreKey{Namespace: "shop", Name: "has-orders"}
	quiet := inventory.StoreKey{Namespace: "shop", Name: "quiet"}
	seedRows(t, inv, withOrders)
	seedPending(t, inv, withOrders, "order-1")
	seedRows(t, inv, quiet)
	var mu sync.Mutex
	var errorLines []string
	logger := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if strings.Contains(args, `"error"=`) {
			errorLines = append(errorLines, args)
		}
	}, funcr.Options{})
	e, err := New(Options{Inventory: inv, Log: logger})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.RemoveStore(context.Background(), quiet); err != nil {
		t.Fatal(err)
	}
	if len(errorLines) != 0 {
		t.Fatalf("error logged removing a store without adjustments: %v", errorLines)
	}
	if err := e.RemoveStore(context.Background(), withOrders); err != nil {
		t.Fatal(err)
	}
	if len(errorLines) != 1 || !strings.Contains(errorLines[0], `"store"="shop/has-orders"`) ||
		!strings.Contains(errorLines[0], `"pendingAdjustments"=1`) {
		t.Fatalf("error lines %q, want one naming the store and its 1 pending adjustment", errorLines)
	}
	wantInventoryStores(t, inv)
}
