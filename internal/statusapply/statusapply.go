// Package statusapply writes a SmaregiStore's status with server-side apply,
// the one way every status writer of the operator does it.
//
// Why apply, and why an unstructured object: several writers share this
// status (the SmaregiStore controller, the sync engine). An Update or a
// merge patch of the whole conditions list would clobber the other writer's
// conditions; with apply, and conditions declared listType=map keyed on
// type, each field manager owns exactly the fields it sends. A typed
// SmaregiStore would also carry its non-omitempty spec fields, which a
// status writer must not claim, so each writer renders only its own fields
// as JSON-shaped maps. ForceOwnership takes over fields last written by an
// older manager name, so a rename or a kubectl edit cannot wedge a writer.
package statusapply

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// Apply applies status (the JSON-shaped fields fieldManager owns) to the
// status subresource of the SmaregiStore namespace/name.
func Apply(ctx context.Context, c client.Client, fieldManager, namespace, name string, status map[string]any) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "SmaregiStore",
		"metadata":   map[string]any{"namespace": namespace, "name": name},
		"status":     status,
	}}
	if err := c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
		client.FieldOwner(fieldManager), client.ForceOwnership); err != nil {
		return fmt.Errorf("apply status of SmaregiStore %s/%s as %s: %w", namespace, name, fieldManager, err)
	}
	return nil
}
