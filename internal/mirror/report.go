package mirror

import (
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeregistry"
)

func (e *Engine) reportFull(log logr.Logger, cfg storeregistry.StoreConfig, res pullResult, initial bool, resync string) {
	if resync != "" {
		// A person asked for this reconcile (resync-requested-at): tell them
		// it is done, drift or not.
		e.event(cfg, "Normal", "ResyncFinished", fmt.Sprintf(
			"Requested full reconcile %q finished in %s: %d stock rows, %d corrected.",
			resync, res.Duration.Round(time.Millisecond), res.Drift.SKUs, res.Drift.Total()))
	}
	if initial {
		log.Info("initial import finished", "skus", res.Drift.SKUs, "rows", res.Rows, "duration", res.Duration)
		e.event(cfg, "Normal", "InitialImport", fmt.Sprintf("Imported %d stock rows from Smaregi store %s in %s.", res.Drift.SKUs, cfg.StoreID, res.Duration.Round(time.Millisecond)))
		return
	}
	d := res.Drift
	if d.Total() == 0 {
		log.Info("full reconcile found no drift", "skus", d.SKUs, "duration", res.Duration)
		return
	}
	sample := driftSample(d, 5)
	log.Info("full reconcile corrected drift", "drift", d.Total(), "changed", d.Changed, "added", d.Added,
		"removed", d.Removed, "skus", d.SKUs, "duration", res.Duration, "sample", sample)
	e.event(cfg, "Warning", "DriftCorrected", fmt.Sprintf(
		"Full reconcile corrected %d rows that no send or pull had brought in (changed %d, added %d, removed %d): %s",
		d.Total(), d.Changed, d.Added, d.Removed, sample))
}

// driftSample renders the first n drifted products, e.g.
// "8000001 5→3, 8000007 added 2, …".
func driftSample(d inventory.Drift, n int) string {
	var b strings.Builder
	for i, s := range d.Sample {
		if i == n {
			fmt.Fprintf(&b, ", …")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		switch s.Kind {
		case inventory.DriftAdded:
			fmt.Fprintf(&b, "%s added %d", s.ProductID, s.After.StockAmount)
		case inventory.DriftRemoved:
			fmt.Fprintf(&b, "%s removed (was %d)", s.ProductID, s.Before.StockAmount)
		default:
			fmt.Fprintf(&b, "%s %d→%d", s.ProductID, s.Before.StockAmount, s.After.StockAmount)
		}
	}
	return b.String()
}

func (e *Engine) event(cfg storeregistry.StoreConfig, typ, reason, note string) {
	if e.opts.Recorder == nil {
		return
	}
	obj := &v1alpha1.SmaregiStore{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: "SmaregiStore"},
		ObjectMeta: metav1.ObjectMeta{Namespace: cfg.Key.Namespace, Name: cfg.Key.Name, UID: cfg.UID},
	}
	e.opts.Recorder.Eventf(obj, nil, typ, reason, "Sync", "%s", note)
}
