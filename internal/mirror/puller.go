package mirror

import (
	"context"
	"fmt"
	"time"

	"github.com/stocksync/smaregi-operator/internal/inventory"
)

// Pull kinds, also the "kind" label of the pull duration histogram.
const (
	KindIncremental = "incremental"
	KindFull        = "full"
)

// puller is the pull and reconcile core: one store, one StockReader, one
// inventory. It holds no per-store state of its own (the inventory keeps the
// watermark), so the engine's scheduling and the Kubernetes glue stay apart
// from it and it can be driven directly against the simulator.
type puller struct {
	inv inventory.Store
	// overlap is subtracted from the watermark before each incremental
	// query. Smaregi's times have whole seconds and a row may be committed
	// late within (or after) the second the watermark names, so re-reading
	// a window is what keeps such rows from being missed; re-read rows that
	// did not change cost nothing in ApplyPull.
	overlap time.Duration
	now     func() time.Time
}

// pullResult is what one pull did.
type pullResult struct {
	Kind string
	// Since is the lower updDateTime bound of an incremental query (zero:
	// everything).
	Since time.Time
	// Rows is the number of rows Smaregi returned; Changed how many of them
	// an incremental pull had to write.
	Rows, Changed int
	// Watermark is the newest updDateTime Smaregi returned in this pull
	// (zero when it returned none). It comes from the rows, never from the
	// local clock, so clock skew between us and Smaregi cannot open a gap.
	Watermark time.Time
	// Drift is what a full reconcile corrected.
	Drift inventory.Drift
	// Duration is local wall time of the pull.
	Duration time.Duration
}

// incremental reads the rows changed since the store's watermark minus the
// overlap (and minus widen, which the engine sets after a long full
// reconcile), applies them, and then advances the watermark.
func (p *puller) incremental(ctx context.Context, key inventory.StoreKey, storeID string, r StockReader, widen time.Duration) (pullResult, error) {
	start := p.now()
	res := pullResult{Kind: KindIncremental}
	sum, err := p.inv.Summary(ctx, key)
	if err != nil {
		return res, fmt.Errorf("reading the mirror summary of %s: %w", key, err)
	}
	if !sum.Watermark.IsZero() {
		res.Since = sum.Watermark.Add(-p.overlap - widen)
	}
	err = r.ReadStock(ctx, StockQuery{StoreID: storeID, UpdatedSince: res.Since}, func(page []inventory.Row) error {
		for _, row := range page {
			if row.UpdDateTime.After(res.Watermark) {
				res.Watermark = row.UpdDateTime
			}
		}
		// Pages are applied without moving the watermark: if a later page
		// fails, the next pull must start from the old watermark, whatever
		// order the pages came in.
		n, err := p.inv.ApplyPull(ctx, key, page, time.Time{})
		if err != nil {
			return fmt.Errorf("applying %d rows to the mirror of %s: %w", len(page), key, err)
		}
		res.Rows += len(page)
		res.Changed += n
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("incremental pull of %s (Smaregi store %s): %w", key, storeID, err)
	}
	if res.Watermark.After(sum.Watermark) {
		if _, err := p.inv.ApplyPull(ctx, key, nil, res.Watermark); err != nil {
			return res, fmt.Errorf("advancing the watermark of %s: %w", key, err)
		}
	}
	res.Duration = p.now().Sub(start)
	return res, nil
}

// full reads every stock row of the store into a full-sync session and
// commits it: the mirror then equals Smaregi's listing, and the drift says
// which rows no send and no incremental pull had brought in.
func (p *puller) full(ctx context.Context, key inventory.StoreKey, storeID string, r StockReader) (pullResult, error) {
	start := p.now()
	res := pullResult{Kind: KindFull}
	fs, err := p.inv.BeginFullSync(ctx, key)
	if err != nil {
		return res, fmt.Errorf("starting a full sync of %s: %w", key, err)
	}
	// Abort is a no-op after Commit; on any failure the mirror stays as it
	// was rather than half-replaced.
	defer func() { _ = fs.Abort() }()
	err = r.ReadStock(ctx, StockQuery{StoreID: storeID}, func(page []inventory.Row) error {
		for _, row := range page {
			if row.UpdDateTime.After(res.Watermark) {
				res.Watermark = row.UpdDateTime
			}
		}
		if err := fs.Add(ctx, page); err != nil {
			return fmt.Errorf("staging %d rows for the full sync of %s: %w", len(page), key, err)
		}
		res.Rows += len(page)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("full reconcile of %s (Smaregi store %s): %w", key, storeID, err)
	}
	res.Drift, err = fs.Commit(ctx, res.Watermark)
	if err != nil {
		return res, fmt.Errorf("committing the full sync of %s: %w", key, err)
	}
	res.Duration = p.now().Sub(start)
	return res, nil
}
