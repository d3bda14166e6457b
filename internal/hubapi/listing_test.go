package hubapi

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
)

// TestStalledListingDoesNotBlockWriters: a client that stops reading a stock
// listing must not hold the inventory store. On bbolt a read transaction
// open while a writer grows the file makes that writer wait for it, and every
// transaction begun after the writer waits too, RecordSend (Smaregi's sends)
// and SubmitAdjustment included. The listing reads in pages, so the handler
// blocked on its client holds no transaction.
func TestStalledListingDoesNotBlockWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	inv, err := boltstore.Open(path)
	must(t, err)
	t.Cleanup(func() { _ = inv.Close() })
	f := newFixture(t, fixtureOpts{store: inv})
	ctx := context.Background()

	// Enough rows that the answer (about 13 MB) cannot fit in the socket
	// buffers of a client that reads none of it.
	const n = 100_000
	rows := make([]inventory.Row, n)
	for i := range rows {
		rows[i] = inventory.Row{ProductID: fmt.Sprint(10000000 + i), StockAmount: int64(i % 50), UpdDateTime: t0}
	}
	if _, err := inv.ApplyPull(ctx, f.key, rows, t0); err != nil {
		t.Fatal(err)
	}

	req, err := http.NewRequest("GET", f.path("/stock"), nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+f.viewer)
	resp, err := (&http.Client{}).Do(req)
	must(t, err)
	// The headers arrived, so the handler is writing rows; the client now
	// stalls: it reads nothing until the end of the test.
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("stock: %d", resp.StatusCode)
	}

	// A writer that grows the file past its current mapping (at most twice
	// the file size; each row takes at least 48 bytes of pages) (bbolt
	// then remaps, which waits for every open read transaction), then a
	// send and an adjustment, which must all complete.
	fi, err := os.Stat(path)
	must(t, err)
	var grow []inventory.Row
	for i := 0; int64(len(grow))*48 < 2*fi.Size(); i++ {
		grow = append(grow, inventory.Row{ProductID: fmt.Sprint(20000000 + i), StockAmount: 1, UpdDateTime: t0})
	}
	other := inventory.StoreKey{Namespace: f.ns, Name: "other"}
	done := make(chan error, 1)
	go func() {
		if _, err := inv.ApplyPull(ctx, other, grow, t0); err != nil {
			done <- fmt.Errorf("ApplyPull: %w", err)
			return
		}
		if _, err := inv.RecordSend(ctx, inventory.SendRecord{ID: "s1", Namespace: f.ns, ProcName: "transaction_send",
			Targets: []inventory.StoreKey{f.key}, Rows: 1, ReceivedAt: time.Now()}); err != nil {
			done <- fmt.Errorf("RecordSend: %w", err)
			return
		}
		_, _, err := inv.SubmitAdjustment(ctx, Adjustment{Key: f.key, ID: "a1", State: AdjustmentPending,
			Lines: []AdjustmentLine{{ProductID: "10000001", Quantity: -1}}, Fingerprint: "x", CreatedAt: t0})
		if err != nil {
			err = fmt.Errorf("SubmitAdjustment: %w", err)
		}
		done <- err
	}()
	// Not a timing assertion: the writes take well under a second; only a
	// writer stuck behind the stalled listing reaches this bound.
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(2 * time.Minute):
		t.Fatal("writers blocked while a stock listing's client stalled")
	}
	st, err := os.Stat(path)
	must(t, err)
	t.Logf("file grew from %d to %d bytes while the listing stalled", fi.Size(), st.Size())
}

// TestListingSpansPages: a listing read in pages has every row once, in
// product ID order, whether the row count is a multiple of the page size or
// not.
func TestListingSpansPages(t *testing.T) {
	for _, n := range []int{stockPageSize - 1, stockPageSize, 2*stockPageSize + 1} {
		f := newFixture(t, fixtureOpts{})
		rows := make([]inventory.Row, n)
		for i := range rows {
			rows[i] = inventory.Row{ProductID: fmt.Sprint(8000000 + i), StockAmount: int64(i), UpdDateTime: t0}
		}
		f.mem.put(f.key, rows...)
		d := decodeStock(t, f.do("GET", f.path("/stock"), f.viewer, nil))
		if len(d.Items) != n {
			t.Fatalf("%d rows listed as %d items", n, len(d.Items))
		}
		for i, it := range d.Items {
			if it.ProductID != rows[i].ProductID || it.StockAmount != int64(i) {
				t.Fatalf("%d rows: item %d is %+v, want %+v", n, i, it, rows[i])
			}
		}
	}
}
