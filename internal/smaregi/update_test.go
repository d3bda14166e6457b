package smaregi_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

func TestUpdateStockBatchesInOrder(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Products = 1300 })
	c := newClient(t, e.Endpoint(), nil)
	rows := make([]smaregi.StockUpdate, 1201)
	for i := range rows {
		rows[i] = smaregi.StockUpdate{StoreID: "1", ProductID: pid(i), Amount: int64(i % 97)}
	}
	res, err := c.UpdateStock(context.Background(), smaregi.Absolute, rows)
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches != 3 || res.Rows != 1201 {
		t.Fatalf("result = %+v, want 3 batches and 1201 rows", res)
	}
	calls := e.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	next := 0
	for i, call := range calls {
		var p struct {
			ProcInfo struct {
				Division string `json:"proc_division"`
				Detail   string `json:"proc_detail_division"`
			} `json:"proc_info"`
			Data []struct {
				Table string              `json:"table_name"`
				Rows  []map[string]string `json:"rows"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(call.params), &p); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if call.proc != smaregi.ProcStockUpd || p.ProcInfo.Division != "U" || p.ProcInfo.Detail != "1" || len(p.Data) != 1 || p.Data[0].Table != "Stock" {
			t.Fatalf("call %d: %s %s", i, call.proc, call.params[:min(200, len(call.params))])
		}
		want := []int{500, 500, 201}[i]
		if len(p.Data[0].Rows) != want {
			t.Fatalf("call %d carries %d rows, want %d", i, len(p.Data[0].Rows), want)
		}
		for _, r := range p.Data[0].Rows {
			if r["productId"] != pid(next) || r["stockDivision"] != "15" {
				t.Fatalf("call %d: row %v out of order or without division 15 (want product %s)", i, r, pid(next))
			}
			next++
		}
	}
	for _, i := range []int{0, 96, 499, 500, 1000, 1200} {
		if got, _ := e.sim.StockOf("1", pid(i)); got != int64(i%97) {
			t.Fatalf("product %d: stock %d, want %d", i, got, i%97)
		}
	}
}

func TestUpdateStockRelativeAcrossStores(t *testing.T) {
	e := startSim(t, nil)
	c := newClient(t, e.Endpoint(), func(o *smaregi.Options) { o.BatchSize = 2 })
	res, err := c.UpdateStock(context.Background(), smaregi.Relative, []smaregi.StockUpdate{
		{StoreID: "1", ProductID: pid(0), Amount: -4},
		{StoreID: "2", ProductID: pid(0), Amount: 6, StockDivision: "05"},
		{StoreID: "1", ProductID: pid(0), Amount: -1},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Batches != 2 || res.Rows != 3 {
		t.Fatalf("result = %+v", res)
	}
	s1, _ := e.sim.StockOf("1", pid(0))
	s2, _ := e.sim.StockOf("2", pid(0))
	if s1 != 5 || s2 != 16 {
		t.Fatalf("stock = %d, %d; want 5, 16", s1, s2)
	}
	h, _ := e.sim.History("2")
	if len(h) != 1 || h[0].StockDivision != "05" {
		t.Fatalf("history of store 2 = %+v", h)
	}
	if res, err := c.UpdateStock(context.Background(), smaregi.Relative, nil); err != nil || res.Batches != 0 || len(e.Calls()) != 2 {
		t.Fatalf("empty update: %+v, %v, %d calls", res, err, len(e.Calls()))
	}
}

func TestProductLookups(t *testing.T) {
	e := startSim(t, func(o *smaregisim.Options) { o.Products = 1500 })
	products := e.sim.Products()
	c := newClient(t, e.Endpoint(), nil)

	// A few codes: one exact call each.
	few := []string{products[0].ProductCode, products[1234].ProductCode, "4999999999999"}
	got, err := c.ProductIDsByCode(context.Background(), few)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[products[0].ProductCode] != products[0].ProductID || got[products[1234].ProductCode] != products[1234].ProductID {
		t.Fatalf("few: %v", got)
	}
	if n := len(e.Calls()); n != 3 {
		t.Fatalf("few: %d calls, want 3", n)
	}

	// Many codes: a scan of the product table (2 pages of 1000).
	var many []string
	for i := 0; i < 1500; i += 7 {
		many = append(many, products[i].ProductCode)
	}
	got, err = c.ProductIDsByCode(context.Background(), many)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(many) {
		t.Fatalf("many: %d of %d codes found", len(got), len(many))
	}
	for i := 0; i < 1500; i += 7 {
		if got[products[i].ProductCode] != products[i].ProductID {
			t.Fatalf("many: code %s -> %q, want %s", products[i].ProductCode, got[products[i].ProductCode], products[i].ProductID)
		}
	}
	if n := len(e.Calls()); n != 5 {
		t.Fatalf("many: %d calls in all, want 3+2", n)
	}

	back, err := c.ProductCodesByID(context.Background(), []string{products[5].ProductID})
	if err != nil || back[products[5].ProductID] != products[5].ProductCode {
		t.Fatalf("reverse: %v, %v", back, err)
	}

	// product_ref switched off in 機能設定: a config error.
	if err := e.sim.SetAccount(smaregisim.Account{DisabledFunctions: []string{"product_ref"}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.ProductIDsByCode(context.Background(), few[:1])
	if code, _ := smaregi.ErrorCode(err); code != smaregi.CodeFunctionDisabled || !smaregi.IsConfigError(err) {
		t.Fatalf("disabled product_ref: %v", err)
	}
}
