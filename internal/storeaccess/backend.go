package storeaccess

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
)

// Backend is one store's Smaregi, whichever API it speaks: what the sync
// engine, the pusher, the credential check and the hub API call. Nothing
// above it knows which API a store speaks; the two implementations below
// are the only places that do. Rows and history entries come in the legacy
// client's types, which both APIs fill alike.
type Backend interface {
	// ListStock reads the store's stock rows page by page: all of them
	// when q.UpdatedSince is zero (a full reconcile), else those updated
	// since then. fn must not keep the slice; its error stops the read and
	// is returned. A watermark older than the API can list incrementally
	// is an error for which NeedsFullReconcile is true.
	ListStock(ctx context.Context, q smaregi.StockQuery, fn func(page []smaregi.StockRow) error) error
	// AddStock applies relative changes (each with its memo) as one call
	// that applies all of them or none: at most MaxRowsPerWrite rows. On
	// failure, IsAmbiguous says whether it may have been applied; then
	// only History can tell.
	AddStock(ctx context.Context, rows []smaregi.StockUpdate) error
	// MaxRowsPerWrite is the most rows AddStock takes in one all-or-none
	// call.
	MaxRowsPerWrite() int
	// History reads the stock change history of q's store and products
	// since q.Since, in order, page by page.
	History(ctx context.Context, q smaregi.HistoryQuery, fn func(page []smaregi.HistoryRow) error) error
	// ProductIDsByCode maps product codes to IDs; unknown codes are absent.
	ProductIDsByCode(ctx context.Context, codes []string) (map[string]string, error)
}

// MaxRowsPerWrite is what one all-or-none write of api carries: a legacy
// stock_upd up to smaregi.MaxBatchSize rows; a Platform add one product
// (the bulk endpoint applies its rows each on its own, so it is not one
// all-or-none call, and is not used for that).
func MaxRowsPerWrite(api v1alpha1.StoreAPI) int {
	if api == v1alpha1.APIPlatform {
		return 1
	}
	return smaregi.MaxBatchSize
}

// Calls named for diagnoses (Subject.Call) whatever the API: mostly the
// legacy procs' names (the legacy history is read with stock_ref, so it has
// a name of its own); platformCallName maps each to the Platform's call.
const (
	CallStockList   = smaregi.ProcStockRef
	CallStockWrite  = smaregi.ProcStockUpd
	CallHistory     = "stock_history"
	CallProductList = smaregi.ProcProductRef
)

// IsAmbiguous reports whether a failed write may have been applied.
func IsAmbiguous(err error) bool {
	return smaregi.IsAmbiguous(err) || smaregiplatform.IsAmbiguous(err)
}

// IsTransient reports whether the same call may succeed later unchanged.
func IsTransient(err error) bool {
	return smaregi.IsTransient(err) || smaregiplatform.IsTransient(err)
}

// IsRefusedConfig reports whether Smaregi refused a call because of the
// shop's or the app's configuration (a rejected token or client, a
// function switched off, a missing scope, an app not installed): a person
// must act, so callers back off long. Kubernetes-side configuration
// problems are *ConfigError (IsConfigError).
func IsRefusedConfig(err error) bool {
	return smaregi.IsConfigError(err) || smaregiplatform.IsConfigError(err)
}

// IsSmaregiAnswer reports whether err is Smaregi's answer or the failure
// to get one (an API error or a transport error of either API), as opposed
// to a failure of the operator's own parts.
func IsSmaregiAnswer(err error) bool {
	return errors.As(err, new(*smaregi.APIError)) || errors.As(err, new(*smaregi.TransportError)) ||
		errors.As(err, new(*smaregiplatform.APIError)) || errors.As(err, new(*smaregiplatform.TransportError))
}

// Refusal is what a refused call shows a person (an adjustment's failure
// reason): Smaregi's own answer when it gave one. The clients' errors never
// carry a secret.
func Refusal(err error) string {
	var ae *smaregi.APIError
	if errors.As(err, &ae) {
		return ae.Error()
	}
	var pe *smaregiplatform.APIError
	if errors.As(err, &pe) {
		return pe.Error()
	}
	return err.Error()
}

// NeedsFullReconcile reports whether an incremental listing was refused
// because its watermark is older than the API lists incrementally (the
// Platform's 31-day window): the caller must read every row instead.
func NeedsFullReconcile(err error) bool { return smaregiplatform.IsFullReconcileNeeded(err) }

// legacyBackend is the legacy API's Backend.
type legacyBackend struct{ c *smaregi.Client }

func (b legacyBackend) ListStock(ctx context.Context, q smaregi.StockQuery, fn func([]smaregi.StockRow) error) error {
	return b.c.StreamStock(ctx, q, fn)
}

func (b legacyBackend) AddStock(ctx context.Context, rows []smaregi.StockUpdate) error {
	_, err := b.c.UpdateStock(ctx, smaregi.Relative, rows)
	return err
}

func (b legacyBackend) MaxRowsPerWrite() int { return MaxRowsPerWrite(v1alpha1.APILegacy) }

func (b legacyBackend) History(ctx context.Context, q smaregi.HistoryQuery, fn func([]smaregi.HistoryRow) error) error {
	return b.c.StreamStockHistory(ctx, q, fn)
}

func (b legacyBackend) ProductIDsByCode(ctx context.Context, codes []string) (map[string]string, error) {
	return b.c.ProductIDsByCode(ctx, codes)
}

// platformBackend is the Platform API's Backend for one store.
type platformBackend struct {
	c       *smaregiplatform.Client
	storeID string
}

func (b platformBackend) ListStock(ctx context.Context, q smaregi.StockQuery, fn func([]smaregi.StockRow) error) error {
	return b.c.ListStock(ctx, q, fn)
}

func (b platformBackend) AddStock(ctx context.Context, rows []smaregi.StockUpdate) error {
	if len(rows) != 1 {
		return fmt.Errorf("smaregi platform: one all-or-none write carries one product, not %d", len(rows))
	}
	_, err := b.c.AddStock(ctx, rows[0])
	return err
}

func (b platformBackend) MaxRowsPerWrite() int { return MaxRowsPerWrite(v1alpha1.APIPlatform) }

// History reads the change history. The Platform API filters by one
// product at most and has no division filter, and bounds a window to 31
// days: several products, and the division, are filtered here. The
// division filter matters: the pusher decides an ambiguous write by the
// API writes (division 15) of its products, and a sale of the same amount
// (division 02) must never pass for one.
func (b platformBackend) History(ctx context.Context, q smaregi.HistoryQuery, fn func([]smaregi.HistoryRow) error) error {
	cq := smaregiplatform.ChangesQuery{StoreID: q.StoreID, From: q.Since}
	if cq.StoreID == "" {
		cq.StoreID = b.storeID
	}
	if len(q.ProductIDs) == 1 {
		cq.ProductID = q.ProductIDs[0]
	}
	if !cq.From.IsZero() {
		// A resolution window is minutes wide; the API wants whole seconds.
		cq.From = cq.From.Truncate(time.Second)
	}
	want := map[string]bool{}
	for _, id := range q.ProductIDs {
		want[id] = true
	}
	var kept []smaregi.HistoryRow
	return b.c.ListChanges(ctx, cq, func(page []smaregi.HistoryRow) error {
		kept = kept[:0]
		for _, r := range page {
			if (len(want) > 1 && !want[r.ProductID]) || (q.StockDivision != "" && r.StockDivision != q.StockDivision) {
				continue
			}
			kept = append(kept, r)
		}
		if len(kept) == 0 {
			return nil
		}
		return fn(kept)
	})
}

func (b platformBackend) ProductIDsByCode(ctx context.Context, codes []string) (map[string]string, error) {
	return b.c.ProductIDsByCode(ctx, codes)
}
