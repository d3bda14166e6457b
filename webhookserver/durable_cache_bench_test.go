package webhookserver_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/controllers"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/inventory/pgstore"
	"github.com/stocksync/smaregi-operator/internal/testenv"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

// BenchmarkReceiverDurableCache is BenchmarkReceiverDurable with the
// SmaregiStores and the key Secret read from controller-runtime's informer
// cache, built with the manager's own options (controllers.CacheOptions)
// and the receiver's indexes, filled from a real kube-apiserver (envtest):
// what the operator reads through mgr.GetClient(). The fake client of
// BenchmarkReceiverDurable JSON-round-trips every object it lists, which
// took ~40% of that benchmark's CPU. Needs KUBEBUILDER_ASSETS (make bench
// sets it); kube-apiserver and etcd idle on the same machine meanwhile.
func BenchmarkReceiverDurableCache(b *testing.B) {
	reader := cachedDurableReader(b)
	b.Run("bolt", func(b *testing.B) {
		st, err := boltstore.Open(filepath.Join(b.TempDir(), "inventory.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		benchReceiverDurable(b, st, reader)
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := freshPostgres(b)
		st, err := pgstore.Open(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		benchReceiverDurable(b, st, reader)
	})
}

// cachedDurableReader starts envtest, creates the objects durableReader
// holds (same namespace, names, route and key) and returns a started,
// synced informer cache over them.
func cachedDurableReader(b *testing.B) client.Reader {
	b.Helper()
	cfg, stop := testenv.Start(b)
	b.Cleanup(stop)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	kube, err := client.New(cfg, client.Options{Scheme: testenv.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	if err := kube.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shops"}}); err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= durableStores; i++ {
		name := fmt.Sprintf("store-%d", i)
		st := &smaregiv1alpha1.SmaregiStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: name},
			Spec: smaregiv1alpha1.SmaregiStoreSpec{
				ContractID:     "C1",
				StoreID:        fmt.Sprint(i),
				Endpoint:       "https://smaregi.example.test/access/",
				CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: name + "-token"},
			},
		}
		if err := kube.Create(ctx, st); err != nil {
			b.Fatalf("creating %s: %v", name, err)
		}
		if i != 1 {
			continue
		}
		st.Status.Receiver = &smaregiv1alpha1.ReceiverStatus{
			RouteID:       durableRoute,
			URL:           "https://receiver.example.test" + smaregiv1alpha1.ReceiverPathPrefix + durableRoute,
			ParameterName: smaregiv1alpha1.DefaultReceiverParameterName,
		}
		if err := kube.Status().Update(ctx, st); err != nil {
			b.Fatalf("publishing the route of %s: %v", name, err)
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: "shops", Name: st.ReceiverKeySecretName(),
				Labels: map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
			},
			Data: map[string][]byte{smaregiv1alpha1.DefaultReceiverParameterName: []byte(durableKey)},
		}
		if err := kube.Create(ctx, secret); err != nil {
			b.Fatal(err)
		}
	}
	opts := controllers.CacheOptions()
	opts.Scheme = testenv.Scheme()
	c, err := cache.New(cfg, opts)
	if err != nil {
		b.Fatal(err)
	}
	if err := webhookserver.SetupIndexes(ctx, c); err != nil {
		b.Fatal(err)
	}
	// The receiver's reads start the informers they need; start them now,
	// so that no timed send waits for a first List.
	for _, obj := range []client.Object{&smaregiv1alpha1.SmaregiStore{}, &corev1.Secret{}} {
		if _, err := c.GetInformer(ctx, obj); err != nil {
			b.Fatal(err)
		}
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		b.Fatal("the informer cache did not sync")
	}
	return c
}
