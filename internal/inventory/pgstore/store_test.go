package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/inventorytest"
	"github.com/stocksync/smaregi-operator/internal/inventory/pgstore"
)

const envDSN = "SMAREGI_TEST_POSTGRES_URL"

// freshDatabase creates a database of its own for one test (so runs and
// tests never collide, and LISTEN channels stay separate) and drops it after.
func freshDatabase(tb testing.TB) string {
	tb.Helper()
	base := os.Getenv(envDSN)
	if base == "" {
		tb.Skip(envDSN + " not set; run make test")
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("%s must be a postgres:// URL", envDSN)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		tb.Fatalf("connecting to %s: %v", inventory.RedactURL(base), err)
	}
	defer admin.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "inventory_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("creating database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			tb.Errorf("connecting to drop %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("dropping %s: %v", name, err)
		}
	})
	u.Path = "/" + name
	return u.String()
}

func TestConformance(t *testing.T) {
	inventorytest.Run(t, func(t *testing.T) inventorytest.Opener {
		dsn := freshDatabase(t)
		return func() (inventory.Store, error) { return pgstore.Open(context.Background(), dsn) }
	})
}

func TestMigrationsConcurrentAndIdempotent(t *testing.T) {
	dsn := freshDatabase(t)
	ctx := context.Background()
	// Several replicas starting at once: each must succeed, and every
	// migration must be applied exactly once.
	errs := make(chan error, 4)
	stores := make(chan *pgstore.Store, 4)
	for i := 0; i < 4; i++ {
		go func() {
			st, err := pgstore.Open(ctx, dsn)
			errs <- err
			stores <- st
		}()
	}
	for i := 0; i < 4; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Open: %v", err)
		}
		if st := <-stores; st != nil {
			defer st.Close()
		}
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, maxV int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM schema_migrations`).Scan(&n, &maxV); err != nil {
		t.Fatal(err)
	}
	if n != pgstore.SchemaVersion() || maxV != pgstore.SchemaVersion() {
		t.Fatalf("schema_migrations has %d rows up to %d, want %d", n, maxV, pgstore.SchemaVersion())
	}
	// A database migrated by a newer binary is refused, not silently used.
	if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, pgstore.SchemaVersion()+1); err != nil {
		t.Fatal(err)
	}
	if st, err := pgstore.Open(ctx, dsn); err == nil {
		st.Close()
		t.Fatal("opened a database with a newer schema")
	} else if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("unexpected error: %v", err)
	}
}

// TestNotifyAcrossReplicas: a send recorded through one Store (replica)
// wakes a subscriber of another Store on the same database.
func TestNotifyAcrossReplicas(t *testing.T) {
	dsn := freshDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leader, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	receiver, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer receiver.Close()
	ch := leader.Subscribe(ctx)
	key := inventory.StoreKey{Namespace: "shops", Name: "kyoto"}
	start := time.Now()
	if _, err := receiver.RecordSend(ctx, inventory.SendRecord{ID: "x1", Namespace: "shops", ProcName: "stock_send", Targets: []inventory.StoreKey{key}}); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-ch:
		if got != key {
			t.Fatalf("notified %v, want %v", got, key)
		}
		t.Logf("other replica notified %v after RecordSend started", time.Since(start))
	case <-ctx.Done():
		t.Fatal("no notification across replicas")
	}
}

// TestSubscribeBeforeListenMissesNothing: when the LISTEN connection is not
// up by the time Subscribe stops waiting for it, the sends and adjustments
// recorded before it is up (whose notifications nobody heard) still reach
// the subscribers once it is, because the first connect republishes the
// dirty stores and those with pending adjustments, as every reconnect does.
func TestSubscribeBeforeListenMissesNothing(t *testing.T) {
	dsn := freshDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	gate := make(chan struct{})
	// Subscribe gives up waiting at once; LISTEN connects only when the
	// gate opens.
	pgstore.SetListenHooks(st, 0, func(ctx context.Context) error {
		select {
		case <-gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	dirty := st.Subscribe(ctx)
	adjs := st.SubscribeAdjustments(ctx)
	sent := inventory.StoreKey{Namespace: "shops", Name: "kyoto"}
	adjusted := inventory.StoreKey{Namespace: "shops", Name: "osaka"}
	if _, err := st.RecordSend(ctx, inventory.SendRecord{ID: "early", Namespace: "shops", ProcName: "stock_send", Targets: []inventory.StoreKey{sent}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.SubmitAdjustment(ctx, inventory.Adjustment{Key: adjusted, ID: "early", Lines: []inventory.AdjustmentLine{{ProductID: "8000001", Quantity: -1}}}); err != nil {
		t.Fatal(err)
	}
	close(gate)
	for name, c := range map[string]struct {
		ch   <-chan inventory.StoreKey
		want inventory.StoreKey
	}{"Subscribe": {dirty, sent}, "SubscribeAdjustments": {adjs, adjusted}} {
		select {
		case got := <-c.ch:
			if got != c.want {
				t.Fatalf("%s delivered %v, want %v", name, got, c.want)
			}
		case <-ctx.Done():
			t.Fatalf("%s never delivered %v, recorded before LISTEN was up", name, c.want)
		}
	}
}

func TestOpenErrorsRedactPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Nothing listens on port 1; the error must not carry the password.
	_, err := inventory.Open(ctx, "postgres://operator:s3cr3t-pw@127.0.0.1:1/inventory?connect_timeout=2")
	if err == nil {
		t.Fatal("connected to nothing")
	}
	if strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("error leaks the password: %v", err)
	}
	_, err = pgstore.Open(ctx, "postgres://operator:s3cr3t-pw@127.0.0.1:1/inventory?sslmode=bogus")
	if err == nil || strings.Contains(err.Error(), "s3cr3t-pw") {
		t.Fatalf("bad DSN error: %v", err)
	}
}

func BenchmarkRecordSend(b *testing.B) {
	st, err := pgstore.Open(context.Background(), freshDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	inventorytest.BenchmarkRecordSend(b, st, 64)
}

func BenchmarkFullSync100k(b *testing.B) {
	st, err := pgstore.Open(context.Background(), freshDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	inventorytest.BenchmarkFullSync(b, st, 100_000)
}
