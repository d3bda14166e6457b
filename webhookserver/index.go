package webhookserver

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// Field indexes the receiver reads through, so that a send costs cache
// look-ups and no API call.
const (
	// RouteIDField indexes SmaregiStores by status.receiver.routeID, the last
	// segment of the receiver URL.
	RouteIDField = "status.receiver.routeID"
	// ContractIDField indexes SmaregiStores by spec.contractID, to find every
	// store a contract-wide send concerns.
	ContractIDField = "spec.contractID"
	// UIDField indexes SmaregiStores by metadata.uid: a store's UID was its
	// route before one route per contract, and that URL still reaches it.
	UIDField = "metadata.uid"
)

// SetupIndexes registers the field indexes the receiver needs. Call it once,
// before the manager starts, with mgr.GetFieldIndexer().
func SetupIndexes(ctx context.Context, indexer client.FieldIndexer) error {
	if err := indexer.IndexField(ctx, &smaregiv1alpha1.SmaregiStore{}, RouteIDField, routeIDOf); err != nil {
		return fmt.Errorf("index SmaregiStore by %s: %w", RouteIDField, err)
	}
	if err := indexer.IndexField(ctx, &smaregiv1alpha1.SmaregiStore{}, ContractIDField, contractIDOf); err != nil {
		return fmt.Errorf("index SmaregiStore by %s: %w", ContractIDField, err)
	}
	if err := indexer.IndexField(ctx, &smaregiv1alpha1.SmaregiStore{}, UIDField, uidOf); err != nil {
		return fmt.Errorf("index SmaregiStore by %s: %w", UIDField, err)
	}
	return nil
}

func uidOf(obj client.Object) []string {
	if obj.GetUID() == "" {
		return nil
	}
	return []string{string(obj.GetUID())}
}

// routeIDOf leaves stores without a published route out of the index: until
// the controller publishes one, no URL exists that could reach them.
func routeIDOf(obj client.Object) []string {
	s, ok := obj.(*smaregiv1alpha1.SmaregiStore)
	if !ok || s.Status.Receiver == nil || s.Status.Receiver.RouteID == "" {
		return nil
	}
	return []string{s.Status.Receiver.RouteID}
}

func contractIDOf(obj client.Object) []string {
	s, ok := obj.(*smaregiv1alpha1.SmaregiStore)
	if !ok || s.Spec.ContractID == "" {
		return nil
	}
	return []string{s.Spec.ContractID}
}
