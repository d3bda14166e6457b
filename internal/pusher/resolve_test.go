package pusher

import (
	"context"
	"errors"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregisim"
)

var rt0 = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func att(id string, sec int, state inventory.AttemptState, rows ...inventory.AttemptRow) inventory.Attempt {
	return inventory.Attempt{ID: id, StartedAt: rt0.Add(time.Duration(sec) * time.Second), State: state, Rows: rows}
}

func ar(p string, n int64) inventory.AttemptRow { return inventory.AttemptRow{ProductID: p, Amount: n} }

func hr(id, p string, n int64, memo string) smaregi.HistoryRow {
	return smaregi.HistoryRow{ID: id, ProductID: p, Amount: n, StockDivision: "15", Memo: memo}
}

func TestDecideIdenticalRowsWithoutMemo(t *testing.T) {
	b := att("b", 0, inventory.AttemptApplied, ar("1", -1))
	a := att("a", 1, inventory.AttemptOpen, ar("1", -1))
	// Only b's row is there: a was not applied, although a row with its
	// exact product and amount is in the window.
	res, err := decideW(a, []inventory.Attempt{b}, []smaregi.HistoryRow{hr("10", "1", -1, "")})
	if err != nil || res.applied {
		t.Fatalf("one row for two identical attempts: applied %v, %v; want not applied", res.applied, err)
	}
	if !reflect.DeepEqual(res.earlier, map[string][]string{"b": {"1/10"}}) {
		t.Fatalf("earlier claims %v, want b's row claimed", res.earlier)
	}
	// Both rows there: a was applied, and takes the later one.
	res, err = decideW(a, []inventory.Attempt{b}, []smaregi.HistoryRow{hr("10", "1", -1, ""), hr("11", "1", -1, "")})
	if err != nil || !res.applied || !reflect.DeepEqual(res.claims, []string{"1/11"}) {
		t.Fatalf("two rows: %+v, %v; want applied claiming row 11", res, err)
	}
	// b's row already claimed by an earlier resolution: it is not b's again.
	b.Claims = []string{"1/10"}
	res, err = decideW(a, []inventory.Attempt{b}, []smaregi.HistoryRow{hr("10", "1", -1, "")})
	if err != nil || res.applied {
		t.Fatalf("claimed row taken again: %+v, %v", res, err)
	}
}

func TestDecideMixedAmountsAndPartialClaims(t *testing.T) {
	// b carries two products but has a claim for one only (a resolution of
	// another product set): its other row must still be matched.
	b := att("b", 0, inventory.AttemptApplied, ar("1", -2), ar("2", -1))
	b.Claims = []string{"1/10"}
	a := att("a", 1, inventory.AttemptOpen, ar("2", -1), ar("3", 4))
	rows := []smaregi.HistoryRow{hr("10", "1", -2, ""), hr("11", "2", -1, "")}
	res, err := decideW(a, []inventory.Attempt{b}, rows)
	if err != nil || res.applied {
		t.Fatalf("%+v, %v; want not applied (row 11 is b's)", res, err)
	}
	rows = append(rows, hr("12", "2", -1, ""), hr("13", "3", 4, ""))
	res, err = decideW(a, []inventory.Attempt{b}, rows)
	if err != nil || !res.applied || !reflect.DeepEqual(res.claims, []string{"2/12", "3/13"}) {
		t.Fatalf("%+v, %v; want applied with rows 12, 13", res, err)
	}
}

func TestDecideContradictionIsUndecidable(t *testing.T) {
	a := att("a", 1, inventory.AttemptOpen, ar("1", -1), ar("2", -1))
	// A manual division-15 change of product 1 by -1, and nothing for 2:
	// a call applies all or none, so this cannot be a's; do not guess.
	_, err := decideW(a, nil, []smaregi.HistoryRow{hr("10", "1", -1, "")})
	if !errors.Is(err, errUndecidable) {
		t.Fatalf("err %v, want errUndecidable", err)
	}
	// An applied attempt whose row is missing from the window.
	b := att("b", 0, inventory.AttemptApplied, ar("1", -5))
	if _, err := decideW(a, []inventory.Attempt{b}, nil); !errors.Is(err, errUndecidable) {
		t.Fatalf("missing earlier row: err %v, want errUndecidable", err)
	}
}

func TestDecideByMemo(t *testing.T) {
	b := att("b", 0, inventory.AttemptApplied, ar("1", -1))
	a := att("a", 1, inventory.AttemptOpen, ar("1", -1))
	mb, ma := inventory.AttemptMemo("b"), inventory.AttemptMemo("a")
	// Memos kept: another writer's identical row (no memo) and b's row do
	// not make a applied.
	rows := []smaregi.HistoryRow{hr("10", "1", -1, mb), hr("11", "1", -1, "")}
	res, err := decideW(a, []inventory.Attempt{b}, rows)
	if err != nil || res.applied {
		t.Fatalf("%+v, %v; want not applied", res, err)
	}
	res, err = decideW(a, []inventory.Attempt{b}, append(rows, hr("12", "1", -1, ma)))
	if err != nil || !res.applied || !reflect.DeepEqual(res.claims, []string{"1/12"}) {
		t.Fatalf("%+v, %v; want applied by row 12", res, err)
	}
	// A memo row with the wrong amount is a contradiction.
	if _, err := decideW(a, nil, []smaregi.HistoryRow{hr("13", "1", -7, ma)}); !errors.Is(err, errUndecidable) {
		t.Fatalf("err %v, want errUndecidable", err)
	}
}

// decideW decides from the window alone (nothing known of the store).
func decideW(a inventory.Attempt, applied []inventory.Attempt, rows []smaregi.HistoryRow) (resolution, error) {
	return decide(a, applied, rows, false)
}

func TestDecideMemosKnownKept(t *testing.T) {
	a := att("a", 1, inventory.AttemptOpen, ar("1", -1))
	foreign := []smaregi.HistoryRow{hr("10", "1", -1, "")}
	// The window holds no memo, but the store is known to keep memos: a
	// foreign row with a's product and amount is not a's.
	res, err := decide(a, nil, foreign, true)
	if err != nil || res.applied {
		t.Fatalf("%+v, %v; want not applied", res, err)
	}
	// Not known: the window alone decides, by order (the weakness memos
	// remove).
	if res, err := decide(a, nil, foreign, false); err != nil || !res.applied {
		t.Fatalf("%+v, %v; want applied by order", res, err)
	}
	// An attempt sent without memos is decided by order whatever is known.
	n := att("n"+noMemoSuffix, 1, inventory.AttemptOpen, ar("1", -1))
	if res, err := decide(n, nil, foreign, true); err != nil || !res.applied {
		t.Fatalf("memo-less attempt: %+v, %v; want applied by order", res, err)
	}
	// A claimed row with our memo still shows that memos are kept.
	b := att("b", 0, inventory.AttemptApplied, ar("1", -1))
	b.Claims = []string{"1/9"}
	res, err = decide(a, []inventory.Attempt{b}, append([]smaregi.HistoryRow{hr("9", "1", -1, inventory.AttemptMemo("b"))}, foreign...), false)
	if err != nil || res.applied || !res.memosSeen {
		t.Fatalf("%+v, %v; want not applied, memos seen", res, err)
	}
}

// An attempt that never reached Smaregi, decided after a restart, with a
// foreign division-15 change of the same product and amount in its window
// and none of our rows there (our last push was an hour ago): Smaregi is
// known to keep memos from that older push, so the foreign row is not
// taken for ours; the attempt is void, re-sent and applied once.
func TestUnsentAttemptNotTakenForForeignRow(t *testing.T) {
	var offset atomic.Int64 // the simulator's clock minus ours
	h := newHarnessWith(t, 1, func(o *smaregisim.Options) {
		o.Clock = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	})
	ctx := context.Background()
	key, p := h.keys[0], product(0)
	line := []inventory.AdjustmentLine{{ProductID: p, Quantity: -1}}

	// An hour ago: a push applied with its memo, settled long since.
	offset.Store(int64(-time.Hour))
	first := inventory.Adjustment{Key: key, ID: "first", Lines: line}
	submitAll(t, h.inv, []inventory.Adjustment{first})
	old := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	atFirst := inventory.Attempt{Key: key, ID: "att-first", AdjustmentIDs: []string{"first"},
		Rows: inventory.MergeAttemptRows([]inventory.Adjustment{first}), StartedAt: old}
	if err := h.inv.BeginAttempt(ctx, atFirst); err != nil {
		t.Fatal(err)
	}
	c, err := smaregi.New(smaregi.Options{Endpoint: h.endpoint, ContractID: testContract, AccessToken: testToken})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UpdateStock(ctx, smaregi.Relative, []smaregi.StockUpdate{{StoreID: h.storeIDs[key], ProductID: p, Amount: -1,
		Memo: inventory.AttemptMemo(atFirst.ID)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.inv.FinishAttempt(ctx, key, atFirst.ID, inventory.AttemptResult{Applied: true, At: old.Add(time.Second)}); err != nil {
		t.Fatal(err)
	}

	// Now: an attempt recorded and never sent (the operator died), and
	// another writer's division-15 change of the same product and amount.
	offset.Store(0)
	unsent := inventory.Adjustment{Key: key, ID: "unsent", Lines: line}
	submitAll(t, h.inv, []inventory.Adjustment{unsent})
	atUnsent := inventory.Attempt{Key: key, ID: "att-unsent", AdjustmentIDs: []string{"unsent"},
		Rows: inventory.MergeAttemptRows([]inventory.Adjustment{unsent}), StartedAt: time.Now()}
	if err := h.inv.BeginAttempt(ctx, atUnsent); err != nil {
		t.Fatal(err)
	}
	if _, err := h.sim.StockMovement(smaregisim.StockMovement{StoreID: h.storeIDs[key], ProductID: p, Amount: -1, StockDivision: "15"}); err != nil {
		t.Fatal(err)
	}

	h.start(t, nil) // a fresh pusher: nothing known in memory
	waitSettled(t, h.inv, []inventory.Adjustment{unsent}, 20*time.Second)
	if got, _, _ := h.inv.GetAdjustment(ctx, key, "unsent"); got.State != inventory.AdjustmentApplied {
		t.Fatalf("unsent = %s (%s), want applied", got.State, got.FailureReason)
	}
	if stock, _ := h.sim.StockOf(h.storeIDs[key], p); stock != initialStock-3 {
		t.Fatalf("stock %d, want %d: first, the foreign change and unsent, once each", stock, initialStock-3)
	}
	hist, err := h.sim.History(h.storeIDs[key])
	if err != nil {
		t.Fatal(err)
	}
	ours := 0
	for _, r := range hist {
		if r.Memo != "" && r.Memo != inventory.AttemptMemo(atFirst.ID) {
			ours++
		}
	}
	if ours != 1 {
		t.Fatalf("%d history rows of re-sent attempts, want 1: %+v", ours, hist)
	}
}
