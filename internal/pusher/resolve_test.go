package pusher

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
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
	res, err := decide(a, []inventory.Attempt{b}, []smaregi.HistoryRow{hr("10", "1", -1, "")})
	if err != nil || res.applied {
		t.Fatalf("one row for two identical attempts: applied %v, %v; want not applied", res.applied, err)
	}
	if !reflect.DeepEqual(res.earlier, map[string][]string{"b": {"1/10"}}) {
		t.Fatalf("earlier claims %v, want b's row claimed", res.earlier)
	}
	// Both rows there: a was applied, and takes the later one.
	res, err = decide(a, []inventory.Attempt{b}, []smaregi.HistoryRow{hr("10", "1", -1, ""), hr("11", "1", -1, "")})
	if err != nil || !res.applied || !reflect.DeepEqual(res.claims, []string{"1/11"}) {
		t.Fatalf("two rows: %+v, %v; want applied claiming row 11", res, err)
	}
	// b's row already claimed by an earlier resolution: it is not b's again.
	b.Claims = []string{"1/10"}
	res, err = decide(a, []inventory.Attempt{b}, []smaregi.HistoryRow{hr("10", "1", -1, "")})
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
	res, err := decide(a, []inventory.Attempt{b}, rows)
	if err != nil || res.applied {
		t.Fatalf("%+v, %v; want not applied (row 11 is b's)", res, err)
	}
	rows = append(rows, hr("12", "2", -1, ""), hr("13", "3", 4, ""))
	res, err = decide(a, []inventory.Attempt{b}, rows)
	if err != nil || !res.applied || !reflect.DeepEqual(res.claims, []string{"2/12", "3/13"}) {
		t.Fatalf("%+v, %v; want applied with rows 12, 13", res, err)
	}
}

func TestDecideContradictionIsUndecidable(t *testing.T) {
	a := att("a", 1, inventory.AttemptOpen, ar("1", -1), ar("2", -1))
	// A manual division-15 change of product 1 by -1, and nothing for 2:
	// a call applies all or none, so this cannot be a's; do not guess.
	_, err := decide(a, nil, []smaregi.HistoryRow{hr("10", "1", -1, "")})
	if !errors.Is(err, errUndecidable) {
		t.Fatalf("err %v, want errUndecidable", err)
	}
	// An applied attempt whose row is missing from the window.
	b := att("b", 0, inventory.AttemptApplied, ar("1", -5))
	if _, err := decide(a, []inventory.Attempt{b}, nil); !errors.Is(err, errUndecidable) {
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
	res, err := decide(a, []inventory.Attempt{b}, rows)
	if err != nil || res.applied {
		t.Fatalf("%+v, %v; want not applied", res, err)
	}
	res, err = decide(a, []inventory.Attempt{b}, append(rows, hr("12", "1", -1, ma)))
	if err != nil || !res.applied || !reflect.DeepEqual(res.claims, []string{"1/12"}) {
		t.Fatalf("%+v, %v; want applied by row 12", res, err)
	}
	// A memo row with the wrong amount is a contradiction.
	if _, err := decide(a, nil, []smaregi.HistoryRow{hr("13", "1", -7, ma)}); !errors.Is(err, errUndecidable) {
		t.Fatalf("err %v, want errUndecidable", err)
	}
}
