package hubapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/pgstore"
	"github.com/stocksync/smaregi-operator/pkg/hubclient"
)

// pgDatabase creates a database of its own for the test and drops it after.
func pgDatabase(t *testing.T) string {
	t.Helper()
	base := os.Getenv("SMAREGI_TEST_POSTGRES_URL")
	if base == "" {
		t.Skip("SMAREGI_TEST_POSTGRES_URL not set; run make test")
	}
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, base)
	must(t, err)
	defer admin.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "hubapi_test_" + hex.EncodeToString(b)
	_, err = admin.Exec(ctx, "CREATE DATABASE "+name)
	must(t, err)
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), base)
		if err != nil {
			t.Errorf("connecting to drop %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	must(t, err)
	u.Path = "/" + name
	return u.String()
}

// TestWatchOnAFollowerReplica: on PostgreSQL every replica serves watches.
// A replica that only serves the API sees changes another replica (the
// leader's pull, an adjustment accepted elsewhere) commits, through
// LISTEN/NOTIFY.
func TestWatchOnAFollowerReplica(t *testing.T) {
	dsn := pgDatabase(t)
	ctx := context.Background()
	leader, err := pgstore.Open(ctx, dsn)
	must(t, err)
	defer leader.Close()
	follower, err := pgstore.Open(ctx, dsn)
	must(t, err)
	defer follower.Close()
	f := newFixture(t, fixtureOpts{})
	_, err = leader.ApplyPull(ctx, f.key, []inventory.Row{{ProductID: "8000001", StockAmount: 5, UpdDateTime: t0}}, t0)
	must(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	_ = ln.Close()
	stop := serve(t, f, follower, addr)
	defer stop()
	c := &hubclient.Client{BaseURL: "http://" + addr, Token: f.viewer, Backoff: 50 * time.Millisecond}
	rec := newRecorder()
	sctx, cancel := context.WithCancel(ctx)
	synced := make(chan error, 1)
	go func() { synced <- c.Sync(sctx, f.ns, f.store.Name, rec) }()
	defer func() {
		cancel()
		<-synced
	}()
	waitFor(t, "the listing", func() bool { _, rv := rec.Snapshot(); return rv == 1 })

	_, err = leader.ApplyPull(ctx, f.key, []inventory.Row{{ProductID: "8000001", StockAmount: 3, UpdDateTime: t0.Add(time.Minute)}}, t0)
	must(t, err)
	_, _, err = leader.SubmitAdjustment(ctx, Adjustment{Key: f.key, ID: "o1", Lines: []AdjustmentLine{{ProductID: "8000001", Quantity: -1}}})
	must(t, err)
	waitFor(t, "the leader's changes on the follower", func() bool { _, rv := rec.Snapshot(); return rv == 3 })
	if it, _ := rec.Get("8000001"); it.StockAmount != 3 || it.PendingAdjustment != -1 || it.Available != 2 {
		t.Fatalf("the follower's watcher sees %+v", it)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.replaces != 1 || len(rec.problems) > 0 {
		t.Fatalf("listed %d times; version problems %v", rec.replaces, rec.problems)
	}
}
