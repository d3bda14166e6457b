package mirror

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregisim"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

func newPuller(h *harness, overlap time.Duration) *puller {
	return &puller{inv: h.inv, overlap: overlap, now: time.Now}
}

func sale(t *testing.T, h *harness, store, product string, qty int64) {
	t.Helper()
	if _, err := h.sim.Sale(store, []smaregisim.SaleLine{{ProductID: product, Quantity: qty}}); err != nil {
		t.Fatalf("sale: %v", err)
	}
}

func TestSalesThenIncrementalPullMatchSimulator(t *testing.T) {
	h := newHarness(t, nil)
	p := newPuller(h, DefaultOverlap)
	ctx := context.Background()
	r := h.reader(t)

	res, err := p.full(ctx, testKey, "1", r)
	if err != nil {
		t.Fatalf("initial import: %v", err)
	}
	if res.Drift.SKUs != 50 || res.Rows != 50 {
		t.Fatalf("initial import: got %d SKUs from %d rows, want 50", res.Drift.SKUs, res.Rows)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatalf("after import: %s", d)
	}

	for i := range 12 {
		h.clk.Advance(7 * time.Second)
		sale(t, h, "1", fmt.Sprint(8000001+i%5), int64(1+i%3))
		sale(t, h, "2", "8000010", 1) // another store of the contract
	}
	res, err = p.incremental(ctx, testKey, "1", r, 0)
	if err != nil {
		t.Fatalf("incremental: %v", err)
	}
	if res.Changed != 5 {
		t.Errorf("incremental changed %d rows, want 5 (the products sold in store 1)", res.Changed)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatalf("after sales and an incremental pull: %s", d)
	}
	if got := mirrorRows(t, h.inv, testKey)["8000010"].StockAmount; got != 10 {
		t.Errorf("store 2's sale leaked into store 1's mirror: product 8000010 = %d, want 10", got)
	}
}

func TestWatermarkComesFromRowsNotTheLocalClock(t *testing.T) {
	// Smaregi's clock is years away from ours: a watermark taken from the
	// local clock would skip every change (or re-read everything).
	smaregiNow := time.Date(2019, 4, 1, 3, 0, 0, 0, time.UTC)
	h := newHarnessAt(t, smaregiNow, nil)
	p := newPuller(h, 30*time.Second)
	ctx := context.Background()
	r := h.reader(t)
	if _, err := p.full(ctx, testKey, "1", r); err != nil {
		t.Fatal(err)
	}
	sum, err := h.inv.Summary(ctx, testKey)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.Watermark.Equal(smaregiNow) {
		t.Fatalf("watermark after import = %s, want the rows' newest updDateTime %s", sum.Watermark, smaregiNow)
	}

	h.clk.Advance(10 * time.Minute)
	sale(t, h, "1", "8000003", 2)
	res, err := p.incremental(ctx, testKey, "1", r, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := smaregiNow.Add(-30 * time.Second); !res.Since.Equal(want) {
		t.Errorf("query since %s, want watermark minus overlap %s", res.Since, want)
	}
	saleAt := smaregiNow.Add(10 * time.Minute)
	if !res.Watermark.Equal(saleAt) {
		t.Errorf("pull watermark %s, want the sale's updDateTime %s", res.Watermark, saleAt)
	}
	sum, _ = h.inv.Summary(ctx, testKey)
	if !sum.Watermark.Equal(saleAt) {
		t.Errorf("stored watermark %s, want %s", sum.Watermark, saleAt)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatal(d)
	}

	// A pull that finds nothing keeps the watermark where the rows put it.
	if _, err := p.incremental(ctx, testKey, "1", r, 0); err != nil {
		t.Fatal(err)
	}
	sum, _ = h.inv.Summary(ctx, testKey)
	if !sum.Watermark.Equal(saleAt) {
		t.Errorf("empty pull moved the watermark to %s", sum.Watermark)
	}
}

func TestChangesInTheWatermarkSecondAndLateRowsAreNotMissed(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	r := h.reader(t)
	p := newPuller(h, DefaultOverlap)
	if _, err := p.full(ctx, testKey, "1", r); err != nil {
		t.Fatal(err)
	}
	h.clk.Advance(time.Minute)
	sale(t, h, "1", "8000001", 1)
	if _, err := p.incremental(ctx, testKey, "1", r, 0); err != nil {
		t.Fatal(err)
	}
	// Same second as the watermark: the clock has not moved.
	sale(t, h, "1", "8000002", 3)
	if _, err := p.incremental(ctx, testKey, "1", r, 0); err != nil {
		t.Fatal(err)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatalf("a change in the watermark's second was missed: %s", d)
	}

	// A row committed late, stamped 30 s before the watermark (Smaregi's
	// clock or a slow transaction): the overlap window re-reads it.
	h.clk.Advance(-30 * time.Second)
	sale(t, h, "1", "8000004", 2)
	h.clk.Advance(30 * time.Second)

	// Without an overlap the same pull misses it; this is what the window
	// is for.
	noOverlap := newPuller(h, 0)
	if _, err := noOverlap.incremental(ctx, testKey, "1", r, 0); err != nil {
		t.Fatal(err)
	}
	if got := mirrorRows(t, h.inv, testKey)["8000004"].StockAmount; got != 10 {
		t.Fatalf("control: a pull without overlap saw the late row (stock %d); the test no longer exercises the overlap", got)
	}
	if _, err := p.incremental(ctx, testKey, "1", r, 0); err != nil {
		t.Fatal(err)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatalf("a late row within the overlap window was missed: %s", d)
	}
}

func TestFullReconcileFindsBackOfficeDrift(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	r := h.reader(t)
	p := newPuller(h, DefaultOverlap)
	if _, err := p.full(ctx, testKey, "1", r); err != nil {
		t.Fatal(err)
	}
	// Back-office movements with no send switched on and stamped before
	// the watermark's overlap (an admin correction dated in the past), so
	// no incremental pull can see them: only a full reconcile can.
	h.clk.Advance(-time.Hour)
	for _, m := range []smaregisim.StockMovement{
		{StoreID: "1", ProductID: "8000007", Amount: 4, StockDivision: "05"},                 // 入庫
		{StoreID: "1", ProductID: "8000003", Amount: 2, Absolute: true, StockDivision: "08"}, // 棚卸
		{StoreID: "1", ProductID: "8000042", Amount: -1, StockDivision: "14"},                // ロス
	} {
		if _, err := h.sim.StockMovement(m); err != nil {
			t.Fatalf("stock movement: %v", err)
		}
	}
	h.clk.Advance(time.Hour)
	if _, err := p.incremental(ctx, testKey, "1", r, 0); err != nil {
		t.Fatal(err)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d == "" {
		t.Fatal("control: an incremental pull already found the back-dated movements")
	}

	res, err := p.full(ctx, testKey, "1", r)
	if err != nil {
		t.Fatal(err)
	}
	if res.Drift.Changed != 3 || res.Drift.Total() != 3 {
		t.Fatalf("drift = %+v, want 3 changed rows", res.Drift)
	}
	var ids []string
	for _, s := range res.Drift.Sample {
		ids = append(ids, s.ProductID)
	}
	if fmt.Sprint(ids) != "[8000003 8000007 8000042]" {
		t.Errorf("drift sample products = %v", ids)
	}
	if s := driftSample(res.Drift, 5); s != "8000003 10→2, 8000007 10→14, 8000042 10→9" {
		t.Errorf("drift sample text = %q", s)
	}
	if d := mirrorDiff(t, h, testKey, "1"); d != "" {
		t.Fatalf("after the full reconcile: %s", d)
	}
}

func TestUnreachableSmaregiIsTransient(t *testing.T) {
	h := newHarness(t, nil)
	cfg := h.config()
	cfg.Endpoint = "http://127.0.0.1:1/access/" // nothing listens on port 1
	r, err := h.readers()(storeaccess.Target{Endpoint: cfg.Endpoint, ContractID: testContract, Credentials: storeaccess.Credentials{AccessToken: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = newPuller(h, DefaultOverlap).incremental(context.Background(), testKey, "1", r, 0)
	if err == nil {
		t.Fatal("pull from a closed port succeeded")
	}
	f := classify(err, cfg)
	if f.reason != "Unreachable" || f.config || f.outcome != OutcomeTransientError {
		t.Errorf("classified as %+v (%v)", f, err)
	}
	if strings.Contains(f.message, testToken) || strings.Contains(err.Error(), testToken) {
		t.Error("the token leaked into the error or the message")
	}
}
