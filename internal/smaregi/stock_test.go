package smaregi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

// simStock returns the simulator's view of a store, keyed by productId.
func simStock(t *testing.T, e *env, store string) map[string]smaregisim.StockRow {
	t.Helper()
	rows, err := e.sim.Stock(store)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]smaregisim.StockRow, len(rows))
	for _, r := range rows {
		m[r.ProductID] = r
	}
	return m
}

func pid(i int) string { return strconv.Itoa(smaregisim.FirstProductID + i) }

func TestStreamStockReadsEveryRowAcrossPages(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Products = 2500 })
	// Some rows change later so the order is not the product order.
	for i := 0; i < 30; i++ {
		e.clock.Advance(time.Second)
		if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: pid(i * 83), Amount: int64(i + 1), StockDivision: "05"}); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, e.Endpoint(), nil)
	rows, pages, err := collectStock(t, c, smaregi.StockQuery{StoreID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 || e.CallCount(smaregi.ProcStockRef) != 3 {
		t.Fatalf("pages = %d, calls = %d, want 3 and 3", pages, e.CallCount(smaregi.ProcStockRef))
	}
	want := simStock(t, e, "1")
	if len(rows) != len(want) {
		t.Fatalf("got %d rows, want %d", len(rows), len(want))
	}
	seen := map[string]bool{}
	for i, r := range rows {
		w, ok := want[r.ProductID]
		if !ok || seen[r.ProductID] {
			t.Fatalf("row %d: product %s unexpected or repeated", i, r.ProductID)
		}
		seen[r.ProductID] = true
		if r.StoreID != "1" || r.StockAmount != w.StockAmount || r.LayawayStockAmount != w.LayawayStockAmount ||
			smaregi.FormatTime(r.UpdDateTime) != w.UpdDateTime {
			t.Fatalf("row %d = %+v, simulator has %+v", i, r, w)
		}
		if i > 0 && r.UpdDateTime.Before(rows[i-1].UpdDateTime) {
			t.Fatalf("row %d is older than row %d", i, i-1)
		}
	}
	// The moved rows come last, in change order.
	for i := 0; i < 30; i++ {
		r := rows[len(rows)-30+i]
		if r.ProductID != pid(i*83) || r.StockAmount != 10+int64(i+1) {
			t.Fatalf("late row %d = %+v, want product %s with %d", i, r, pid(i*83), 11+i)
		}
	}
	// All conditions go in one object, ordered for a stable tie order.
	p := decodeParams(t, e.Calls()[0])
	var conds []map[string]string
	var order []string
	if err := json.Unmarshal(p["conditions"], &conds); err != nil || len(conds) != 1 {
		t.Fatalf("conditions = %s, want one object", p["conditions"])
	}
	if err := json.Unmarshal(p["order"], &order); err != nil || fmt.Sprint(order) != "[updDateTime asc productId asc]" {
		t.Fatalf("order = %s", p["order"])
	}
}

func TestStreamStockUpdatedSinceAndTimeZone(t *testing.T) {
	e := startSim(t, nil)
	e.clock.Advance(time.Hour)
	watermark := e.clock.Now() // 10:00:00 JST
	e.clock.Advance(90 * time.Second)
	if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "2", ProductID: pid(3), Amount: 4, Absolute: true, StockDivision: "08"}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.sim.Sale("2", []smaregisim.SaleLine{{ProductID: pid(7), Quantity: 2}}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, e.Endpoint(), nil)
	rows, _, err := collectStock(t, c, smaregi.StockQuery{StoreID: "2", UpdatedSince: watermark})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2: %+v", len(rows), rows)
	}
	if rows[0].ProductID != pid(3) || rows[0].StockAmount != 4 || rows[1].ProductID != pid(7) || rows[1].StockAmount != 8 {
		t.Fatalf("rows = %+v", rows)
	}
	// 2026-11-26 10:01:30 in Tokyo is 01:01:30 UTC.
	if got, want := rows[0].UpdDateTime.UTC(), time.Date(2026, 11, 26, 1, 1, 30, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("updDateTime = %v, want %v", got, want)
	}
	if got := decodeParams(t, e.Calls()[0])["conditions"]; string(got) != `[{"storeId":"2","updDateTime \u003e=":"2026-11-26 10:00:00"}]` {
		t.Fatalf("conditions = %s", got)
	}
}

// TestStreamStockWhileRowsChange changes rows between pages: one already
// delivered and one not yet reached. Page-number paging would skip a row at
// the shift; the keyed paging must deliver every product, and the last
// delivery of each must be its final value.
func TestStreamStockWhileRowsChange(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Products = 60; o.InitialStock = 0 })
	// Rows changed two per second, so pages end inside and between seconds.
	for i := 0; i < 60; i++ {
		if i%2 == 0 {
			e.clock.Advance(time.Second)
		}
		if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: pid(i), Amount: int64(100 + i), Absolute: true, StockDivision: "08"}); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, e.Endpoint(), func(o *smaregi.Options) { o.PageSize = 7 })
	last := map[string]int64{}
	pages := 0
	err := c.StreamStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func(page []smaregi.StockRow) error {
		pages++
		for _, r := range page {
			last[r.ProductID] = r.StockAmount
		}
		if pages == 2 || pages == 5 {
			e.clock.Advance(time.Second)
			// A delivered row and a row ahead move to the end.
			if _, err := e.sim.Sale("1", []smaregisim.SaleLine{{ProductID: page[0].ProductID, Quantity: 1}, {ProductID: pid(40 + pages), Quantity: 3}}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := simStock(t, e, "1")
	if len(last) != len(want) {
		t.Fatalf("delivered %d products, store has %d", len(last), len(want))
	}
	for id, w := range want {
		if last[id] != w.StockAmount {
			t.Errorf("product %s: last delivered %d, final stock %d", id, last[id], w.StockAmount)
		}
	}
}

func TestStreamStockCallbackErrorStops(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Products = 30 })
	c := newClient(t, e.Endpoint(), func(o *smaregi.Options) { o.PageSize = 10 })
	stop := fmt.Errorf("stop here")
	err := c.StreamStock(context.Background(), smaregi.StockQuery{StoreID: "1"}, func([]smaregi.StockRow) error { return stop })
	if err != stop {
		t.Fatalf("err = %v, want the callback's error", err)
	}
	if n := e.CallCount(smaregi.ProcStockRef); n != 1 {
		t.Fatalf("%d calls after the callback failed, want 1", n)
	}
}

func TestStreamStockEmptyStoreAndBadID(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.InitialStock = 0 })
	c := newClient(t, e.Endpoint(), nil)
	rows, pages, err := collectStock(t, c, smaregi.StockQuery{StoreID: "1"})
	if err != nil || len(rows) != 0 || pages != 0 {
		t.Fatalf("rows=%d pages=%d err=%v, want none", len(rows), pages, err)
	}
	if _, _, err := collectStock(t, c, smaregi.StockQuery{StoreID: "1 OR 1"}); err == nil {
		t.Fatal("a non-numeric store ID was accepted")
	}
}

func TestStreamStockHistory(t *testing.T) {
	e := startSim(t, nil)
	since := e.clock.Now().Add(time.Minute)
	if _, err := e.sim.Sale("1", []smaregisim.SaleLine{{ProductID: pid(1), Quantity: 1}}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	c := newClient(t, e.Endpoint(), func(o *smaregi.Options) { o.PageSize = 2 })
	if _, err := c.UpdateStock(context.Background(), smaregi.Relative, []smaregi.StockUpdate{
		{StoreID: "1", ProductID: pid(1), Amount: 5, Memo: "adj-1"},
		{StoreID: "1", ProductID: pid(2), Amount: -2, Memo: "adj-1"},
		{StoreID: "1", ProductID: pid(3), Amount: 1, Memo: "adj-1"},
		{StoreID: "2", ProductID: pid(1), Amount: 9},
	}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	if _, err := e.sim.StockMovement(smaregisim.StockMovement{StoreID: "1", ProductID: pid(2), Amount: 3, StockDivision: "05"}); err != nil {
		t.Fatal(err)
	}

	collect := func(q smaregi.HistoryQuery) []smaregi.HistoryRow {
		var out []smaregi.HistoryRow
		if err := c.StreamStockHistory(context.Background(), q, func(p []smaregi.HistoryRow) error {
			out = append(out, p...)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	all := collect(smaregi.HistoryQuery{StoreID: "1", Since: since})
	if len(all) != 4 {
		t.Fatalf("got %d entries since %v, want 4: %+v", len(all), since, all)
	}
	h := all[0]
	if h.ProductID != pid(1) || h.Amount != 5 || h.StockAmount != 14 || h.StockDivision != "15" || h.Memo != "adj-1" || h.StoreID != "1" || h.ID == "" {
		t.Fatalf("first entry = %+v", h)
	}
	if !h.UpdDateTime.Equal(clockStart.Add(time.Minute)) || !h.TargetDateTime.Equal(h.UpdDateTime) {
		t.Fatalf("times = %v / %v, want %v", h.UpdDateTime, h.TargetDateTime, clockStart.Add(time.Minute))
	}
	if got := collect(smaregi.HistoryQuery{StoreID: "1", Since: since, StockDivision: "15"}); len(got) != 3 {
		t.Fatalf("division 15: %d entries, want 3", len(got))
	}
	if got := collect(smaregi.HistoryQuery{StoreID: "1", ProductIDs: []string{pid(2)}}); len(got) != 2 || got[0].Amount != -2 || got[1].Amount != 3 {
		t.Fatalf("product 2: %+v", got)
	}
	got := collect(smaregi.HistoryQuery{StoreID: "1", ProductIDs: []string{pid(1), pid(3)}})
	ids := []string{}
	for _, r := range got {
		ids = append(ids, r.ProductID+":"+strconv.FormatInt(r.Amount, 10))
	}
	sort.Strings(ids)
	if fmt.Sprint(ids) != fmt.Sprintf("[%s:-1 %s:5 %s:1]", pid(1), pid(1), pid(3)) {
		t.Fatalf("products 1 and 3: %v", ids)
	}
}

func TestCheckCredentials(t *testing.T) {
	e := startSim(t, nil)
	c := newClient(t, e.Endpoint(), nil)
	if err := c.CheckCredentials(context.Background(), "1"); err != nil {
		t.Fatal(err)
	}
	p := decodeParams(t, e.Calls()[0])
	if string(p["limit"]) != "1" {
		t.Fatalf("limit = %s, want 1", p["limit"])
	}
}
