package controllers

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// reconcilePlatformReceiver owns ReceiverReady and status.receiver of a
// Platform store. Smaregi posts the webhooks of an app to one URL for every
// contract that installed it, so the store has no route and no key Secret
// of its own: status shows the operator-wide webhook URL and where its key
// is (in the operator's namespace; the receiver's PlatformKeys creates and
// rotates it). Nothing here calls the API server.
func (r *SmaregiStoreReconciler) reconcilePlatformReceiver(store *smaregiv1alpha1.SmaregiStore) (stepResult, *smaregiv1alpha1.ReceiverStatus) {
	status := &smaregiv1alpha1.ReceiverStatus{
		URL: strings.TrimRight(r.ReceiverBaseURL, "/") + smaregiv1alpha1.PlatformWebhookPath,
	}
	res := stepResult{status: metav1.ConditionTrue, reason: smaregiv1alpha1.ReasonPlatformWebhook, outcome: outcomeOK}
	ref := r.PlatformWebhook
	if ref == nil {
		res.message = "this operator runs without a Platform webhook route: stock is pulled on spec.sync's intervals only"
		return res, status
	}
	status.WebhookKey = ref.DeepCopy()
	var how []string
	if ref.Header != "" {
		how = append(how, fmt.Sprintf("add the header %q", ref.Header))
	}
	if ref.InPath {
		how = append(how, "append \"/\" and the key to the URL")
	}
	res.message = fmt.Sprintf("in the app's webhook settings in Smaregi's developer console set the URL %s and %s, with the value of "+
		"key %q in Secret %s/%s, and subscribe to pos:stock and pos:transactions; one URL and key serve every Platform store "+
		"(contract %q is routed by the Smaregi-Contract-Id header)",
		status.URL, strings.Join(how, " or "), ref.Key, ref.Namespace, ref.Name, store.Spec.ContractID)
	return res, status
}
