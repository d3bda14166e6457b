package controllers

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// NoteUnknownStore records that Smaregi refused an adjustment of the store
// because its store ID does not exist, and reconciles the store so that
// CredentialsValid (and Ready) turn False with the remedy.
func (r *SmaregiStoreReconciler) NoteUnknownStore(key inventory.StoreKey) {
	st := r.state(types.NamespacedName{Namespace: key.Namespace, Name: key.Name})
	st.mu.Lock()
	st.refusedStore = true
	st.mu.Unlock()
	if r.wake == nil {
		return
	}
	obj := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	select {
	case r.wake <- event.TypedGenericEvent[client.Object]{Object: obj}:
	default: // the queue is already full of wake-ups; the next re-check sees the flag
	}
}

// WatchRefusals wraps the outbox the pusher settles adjustments in, so
// that an adjustment Smaregi refuses for an unknown store ID reaches the
// store's conditions (NoteUnknownStore) instead of only the adjustment's
// failure reason.
func (r *SmaregiStoreReconciler) WatchRefusals(s inventory.Store) inventory.Store {
	return refusalWatch{Store: s, r: r}
}

type refusalWatch struct {
	inventory.Store
	r *SmaregiStoreReconciler
}

// FinishAttempt settles the attempt, then looks at why adjustments failed.
func (w refusalWatch) FinishAttempt(ctx context.Context, key inventory.StoreKey, attemptID string, res inventory.AttemptResult) error {
	if err := w.Store.FinishAttempt(ctx, key, attemptID, res); err != nil {
		return err
	}
	for _, reason := range res.Failed {
		if storeaccess.RefusesStore(reason) {
			w.r.NoteUnknownStore(key)
			break
		}
	}
	return nil
}
