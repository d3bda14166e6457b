package pgstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/stocksync/smaregi-operator/internal/inventory/pgstore"
)

// TestPruneAdjustmentsUsesIndexes checks that the retention query reaches
// what it deletes through the partial indexes of migration 3 and deletes by
// primary key, instead of reading the store's whole history. The table gets
// a realistic history (ten stores, mostly settled) and statistics, and
// sequential scans are priced out so that a missing index shows.
func TestPruneAdjustmentsUsesIndexes(t *testing.T) {
	dsn := freshDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := pgstore.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, q := range []string{
		`INSERT INTO inventory_stores (namespace, name) SELECT 'shops', 's' || g FROM generate_series(1, 10) g`,
		`INSERT INTO inventory_adjustments (store_id, id, reason, lines, fingerprint, state, created_at, applied_at, reflected)
		 SELECT s.id, 'order-' || g, 'order', '[{"p":"8000001","q":-1}]', 'fp',
		        CASE WHEN g % 50 = 0 THEN 'pending' WHEN g % 7 = 0 THEN 'failed' ELSE 'applied' END,
		        now() - g * interval '1 minute',
		        CASE WHEN g % 50 <> 0 AND g % 7 <> 0 THEN now() - g * interval '1 minute' END,
		        g % 50 <> 0 AND g % 7 <> 0
		 FROM inventory_stores s, generate_series(1, 5000) g`,
		`ANALYZE inventory_adjustments`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Nothing due (the common case of a sweep) and some due.
	for _, cutoff := range []time.Time{time.Now().Add(-30 * 24 * time.Hour), time.Now().Add(-24 * time.Hour)} {
		plan := explain(t, ctx, conn, cutoff)
		text := strings.Join(plan, "\n")
		for _, want := range []string{"inventory_adjustments_reflected", "inventory_adjustments_failed"} {
			if !strings.Contains(text, want) {
				t.Errorf("cutoff %v: the plan does not use %s:\n%s", cutoff, want, text)
			}
		}
		if strings.Contains(text, "Seq Scan on inventory_adjustments") {
			t.Errorf("cutoff %v: the plan reads the whole table:\n%s", cutoff, text)
		}
		// The primary key may find the rows to delete, but only by ID:
		// by store_id alone it would read the store's whole history.
		for i, l := range plan {
			if strings.Contains(l, "inventory_adjustments_pkey") {
				if i+1 >= len(plan) || !strings.Contains(plan[i+1], "Index Cond:") || !strings.Contains(plan[i+1], "id = ANY") {
					t.Errorf("cutoff %v: the plan scans the primary key without the IDs:\n%s", cutoff, text)
				}
			}
		}
	}
}

func explain(t *testing.T, ctx context.Context, conn *pgx.Conn, cutoff time.Time) []string {
	t.Helper()
	var plan []string
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `EXPLAIN `+pgstore.PruneAdjustmentsSQL, int64(1), cutoff, 1000)
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatalf("EXPLAIN: %v", err)
	}
	return plan
}
