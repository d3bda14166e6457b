package webhookserver_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
	"github.com/stocksync/smaregi-operator/internal/inventory/pgstore"
	"github.com/stocksync/smaregi-operator/webhookserver"
)

// The durable benchmark's shape. Each benchmark op is one burst of
// durableBurst distinct stock_sends spread over durableSenders concurrent
// HTTP clients, so that `make bench` (-benchtime 1x) still measures thousands
// of sends under contention rather than a single request; a longer
// -benchtime only runs more bursts. Figures are per send, over all bursts.
const (
	durableSenders = 64
	durableBurst   = 8192
	durableStores  = 10 // stores of one contract the sends are routed to
	durableRoute   = "d0d0beef-route-durable"
	durableKey     = "key-durable-4Gh7Jk2Lm9Np3Qr8"
	envPostgresDSN = "SMAREGI_TEST_POSTGRES_URL"
)

// BenchmarkReceiverDurable measures accepted sends per second, and the
// latency a sender sees, through the receiver over real HTTP on 127.0.0.1
// with the real durable Sink (webhookserver.DurableSink -> inventory.RecordSend,
// group-committed): a 200 is answered only after the send is committed to
// disk (bbolt fsync) or to PostgreSQL. SmaregiStores and key Secrets come from
// a controller-runtime fake client with the receiver's indexes, standing in
// for the manager's cache. Senders, receiver and (for /postgres) the database
// all share the machine, so this is a single-node figure.
func BenchmarkReceiverDurable(b *testing.B) {
	b.Run("bolt", func(b *testing.B) {
		st, err := boltstore.Open(filepath.Join(b.TempDir(), "inventory.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		benchReceiverDurable(b, st, durableReader(b))
	})
	b.Run("postgres", func(b *testing.B) {
		dsn := freshPostgres(b)
		st, err := pgstore.Open(context.Background(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = st.Close() })
		benchReceiverDurable(b, st, durableReader(b))
	})
}

func benchReceiverDurable(b *testing.B, inv inventory.Store, reader client.Reader) {
	srv, err := webhookserver.New(webhookserver.Options{
		Reader: reader,
		Sink:   webhookserver.NewDurableSink(inv, nil),
	})
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	b.Cleanup(hs.Close)
	target := hs.URL + smaregiv1alpha1.ReceiverPathPrefix + durableRoute
	tr := &http.Transport{MaxIdleConns: durableSenders, MaxIdleConnsPerHost: durableSenders}
	b.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: 30 * time.Second}

	// Every send differs in its params (so its ID differs): none is a
	// duplicate, each costs a real write.
	runID := time.Now().UnixNano()
	var seq atomic.Int64
	send := func() (time.Duration, error) {
		i := seq.Add(1)
		params := fmt.Sprintf(`{"data":[{"table_name":"Stock","rows":[`+
			`{"storeId":"%d","productId":"%d","amount":"-1","stockAmount":"%d","layawayStockAmount":"0",`+
			`"stockDivision":"02","updDateTime":"2026-11-26 09:01:21","memo":"bench %d"}]}]}`,
			1+i%durableStores, 8000000+i%100000, i%50, runID)
		form := url.Values{"proc_name": {webhookserver.ProcStockSend}, "params": {params}, smaregiv1alpha1.DefaultReceiverParameterName: {durableKey}}
		start := time.Now()
		resp, err := c.Post(target, "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			return d, fmt.Errorf("send %d: status %d", i, resp.StatusCode)
		}
		return d, nil
	}
	// Warm the connection pool and the store before timing.
	for range 16 {
		if _, err := send(); err != nil {
			b.Fatal(err)
		}
	}

	lat := make([]time.Duration, 0, b.N*durableBurst)
	var elapsed time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			left atomic.Int64
			fail atomic.Value
		)
		left.Store(durableBurst)
		start := time.Now()
		for range durableSenders {
			wg.Go(func() {
				mine := make([]time.Duration, 0, durableBurst/durableSenders+1)
				for left.Add(-1) >= 0 {
					d, err := send()
					if err != nil {
						fail.CompareAndSwap(nil, err)
						return
					}
					mine = append(mine, d)
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
		}
		wg.Wait()
		elapsed += time.Since(start)
		if err, _ := fail.Load().(error); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "sends/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(durableSenders, "senders")

	// Every timed send, and the warm-up ones, must be in the inventory.
	recent, err := inv.RecentSends(context.Background(), len(lat)+100)
	if err != nil {
		b.Fatal(err)
	}
	if want := len(lat) + 16; len(recent) < want {
		b.Fatalf("inventory holds %d sends, want at least %d", len(recent), want)
	}
}

// durableReader is a fake client holding durableStores SmaregiStores of
// contract C1 (storeIDs 1..durableStores); store 1 publishes the route and
// has the key Secret. It registers the receiver's real indexes.
func durableReader(b *testing.B) client.Reader {
	b.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		b.Fatal(err)
	}
	if err := smaregiv1alpha1.AddToScheme(s); err != nil {
		b.Fatal(err)
	}
	var objs []client.Object
	for i := 1; i <= durableStores; i++ {
		name := fmt.Sprintf("store-%d", i)
		st := &smaregiv1alpha1.SmaregiStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: name, UID: types.UID(fmt.Sprintf("uid-%d", i))},
			Spec: smaregiv1alpha1.SmaregiStoreSpec{
				ContractID:     "C1",
				StoreID:        fmt.Sprint(i),
				CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: name + "-token"},
			},
		}
		if i == 1 {
			st.Status.Receiver = &smaregiv1alpha1.ReceiverStatus{
				RouteID:       durableRoute,
				URL:           "https://receiver.example.test" + smaregiv1alpha1.ReceiverPathPrefix + durableRoute,
				ParameterName: smaregiv1alpha1.DefaultReceiverParameterName,
			}
			objs = append(objs, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{
					Namespace: "shops", Name: st.ReceiverKeySecretName(),
					Labels: map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue},
				},
				Data: map[string][]byte{smaregiv1alpha1.DefaultReceiverParameterName: []byte(durableKey)},
			})
		}
		objs = append(objs, st)
	}
	fb := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...)
	if err := webhookserver.SetupIndexes(context.Background(), builderIndexer{fb}); err != nil {
		b.Fatal(err)
	}
	return fb.Build()
}

// builderIndexer registers indexes on a fake client builder.
type builderIndexer struct{ b *fake.ClientBuilder }

func (i builderIndexer) IndexField(_ context.Context, obj client.Object, field string, fn client.IndexerFunc) error {
	i.b.WithIndex(obj, field, fn)
	return nil
}

// freshPostgres creates a database of its own on the server named by
// SMAREGI_TEST_POSTGRES_URL (skipping without it) and drops it afterwards,
// as internal/inventory/pgstore's tests do.
func freshPostgres(b *testing.B) string {
	b.Helper()
	base := os.Getenv(envPostgresDSN)
	if base == "" {
		b.Skip(envPostgresDSN + " not set; run make bench, or export it from hack/postgres.sh start")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		b.Fatalf("%s must be a postgres:// URL", envPostgresDSN)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		b.Fatalf("connecting to %s: %v", inventory.RedactURL(base), err)
	}
	defer admin.Close(context.Background())
	rb := make([]byte, 6)
	_, _ = rand.Read(rb)
	name := "receiver_bench_" + hex.EncodeToString(rb)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatalf("creating database: %v", err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			b.Errorf("connecting to drop %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			b.Errorf("dropping %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}
