package setupguide

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

const platformURL = "https://stock.example.test" + smaregiv1alpha1.PlatformWebhookPath

func platformStore() *smaregiv1alpha1.SmaregiStore {
	st := readyStore()
	st.Spec.API = smaregiv1alpha1.APIPlatform
	st.Spec.CredentialsRef = smaregiv1alpha1.SecretKeyReference{Name: "smaregi-app"}
	st.Status.Receiver = &smaregiv1alpha1.ReceiverStatus{
		URL: platformURL,
		WebhookKey: &smaregiv1alpha1.WebhookKeyReference{Namespace: "smaregi-system", Name: "smaregi-platform-webhook-key",
			Key: smaregiv1alpha1.PlatformWebhookKeyKey, Header: "X-Smaregi-Operator-Key", InPath: true},
	}
	return st
}

func TestRenderPlatformStore(t *testing.T) {
	var buf bytes.Buffer
	if err := Render(&buf, Input{Store: platformStore(), Now: now}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	out := buf.String()
	assertInOrder(t, out,
		"Platform API", "sb_abc123", smaregiv1alpha1.DefaultPlatformEndpoint, smaregiv1alpha1.DefaultPlatformTokenEndpoint,
		"1.", "private app", "production",
		"2.", "pos.stock:read", "pos.stock:write", "pos.stock-changes:read", "pos.products:read",
		"3.", "client ID and client secret",
		"4.", "Install", "contract sb_abc123", smaregiv1alpha1.ReasonAppNotInstalled,
		"5.", "kubectl create secret generic smaregi-app -n shops --from-literal=clientID='<client ID>' --from-literal=clientSecret='<client secret>'",
		"kubectl label secret smaregi-app -n shops smaregi.stocksync.io/credentials=true --overwrite",
		"6.", "Webhook", platformURL,
		"7.", "X-Smaregi-Operator-Key",
		"kubectl get secret smaregi-platform-webhook-key -n smaregi-system -o jsonpath='{.data.key}' | base64 -d",
		platformURL+"/<webhook key>",
		"8.", "pos:stock", "pos:transactions",
		"9.", "every Platform SmaregiStore",
	)
	for _, legacy := range []string{"API送信設定", "goqsystem_key", "アクセストークン"} {
		if strings.Contains(out, legacy) {
			t.Errorf("the Platform guide prints the legacy %q", legacy)
		}
	}
}

func TestRenderPlatformSandboxKeyInPathOnly(t *testing.T) {
	st := platformStore()
	st.Spec.Endpoint = "https://api.smaregi.dev/"
	st.Spec.TokenEndpoint = "https://id.smaregi.dev/"
	st.Status.Receiver.WebhookKey.Header = ""
	var buf bytes.Buffer
	if err := Render(&buf, Input{Store: st, Now: now}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	out := buf.String()
	assertInOrder(t, out, "sandbox", "https://api.smaregi.dev/", "https://id.smaregi.dev/", "6.", platformURL+"/<webhook key>", "No custom header")
	if strings.Contains(out, "X-Smaregi-Operator-Key") {
		t.Error("a header is printed although the operator does not accept one")
	}
}

func TestRenderPlatformNotReady(t *testing.T) {
	st := platformStore()
	st.Status.Receiver = nil
	st.Status.Conditions = []metav1.Condition{{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionUnknown, Reason: "Progressing"}}
	var buf bytes.Buffer
	err := Render(&buf, Input{Store: st, Now: now})
	var nr *NotReadyError
	if !errors.As(err, &nr) || len(nr.Missing) != 1 || !strings.Contains(nr.Missing[0], "status.receiver.url is empty") {
		t.Fatalf("Render: %v, want a NotReadyError naming the URL", err)
	}
	// The app, installation and Secret steps are printed all the same.
	assertInOrder(t, buf.String(), "1.", "2.", "pos.stock:write", "5.", "clientSecret", "NOT READY", "Unknown (Progressing)")
}
