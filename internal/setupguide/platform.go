package setupguide

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// PlatformScopes are the scopes the operator's app needs: read and write
// stock, read the stock change history (to settle an ambiguous write), and
// read products (product codes).
var PlatformScopes = []string{"pos.stock:read", "pos.stock:write", "pos.stock-changes:read", "pos.products:read"}

// Platform webhook events the app must send.
var platformEvents = []string{"pos:stock", "pos:transactions"}

// renderPlatform writes the guide of a Platform store: the app in Smaregi's
// developer console, its installation for the contract, the credentials
// Secret, and the app's webhook setting (the operator-wide URL and key). The
// key itself is not printed: it is the operator's, in its namespace, and
// the command to read it is (for whoever may).
func renderPlatform(g *guide, in Input) error {
	st := in.Store
	storeRef := st.Namespace + "/" + st.Name
	sandbox := strings.Contains(st.EndpointURL(), "smaregi.dev")
	env := "production"
	if sandbox {
		env = "sandbox"
	}

	g.line("Smaregi Platform API setup for SmaregiStore %s (契約ID contract %s, 店舗ID store %s)", storeRef, st.Spec.ContractID, st.Spec.StoreID)
	g.line("The store is reached through an app in Smaregi's developer console (Smaregi Developers), %s environment:", env)
	g.more("API   %s   (spec.endpoint)", st.EndpointURL())
	g.more("ID    %s   (spec.tokenEndpoint)", st.TokenEndpointURL())
	g.line("Stock through the Platform API needs the Standard plan or above.")
	g.blank()

	g.line("A. The app (once for all stores and contracts of this operator; skip the steps already done)")
	g.step(1, "Log in to Smaregi Developers and create a private app (プライベートアプリ) in the %s environment.", env)
	g.step(2, "In the app's scopes (スコープ), grant:")
	for _, s := range PlatformScopes {
		g.more("%s", s)
	}
	g.step(3, "Note the app's client ID and client secret (%s ones: the sandbox and production have their own).", env)
	g.blank()

	g.line("B. Install the app for contract %s", st.Spec.ContractID)
	g.step(4, "Install (activate) the app for contract %s, signed in to that contract; until then the", st.Spec.ContractID)
	g.more("operator's token requests are refused (CredentialsValid False, reason %s).", smaregiv1alpha1.ReasonAppNotInstalled)
	g.step(5, "Put the client ID and secret into the Secret this store reads (spec.credentialsRef):")
	g.more("kubectl create secret generic %s -n %s --from-literal=%s='<client ID>' --from-literal=%s='<client secret>' --dry-run=client -o yaml | kubectl apply -f -",
		st.Spec.CredentialsRef.Name, st.Namespace, smaregiv1alpha1.PlatformClientIDKey, smaregiv1alpha1.PlatformClientSecretKey)
	g.more("kubectl label secret %s -n %s %s=true --overwrite   # the operator reads only Secrets that opt in",
		st.Spec.CredentialsRef.Name, st.Namespace, smaregiv1alpha1.CredentialsLabel)
	g.more("To keep the secret out of your shell history, run  read -rs SMAREGI_CLIENT_SECRET  (paste, Enter) and use")
	g.more("--from-literal=%s=\"$SMAREGI_CLIENT_SECRET\" instead. Never put it in chat, tickets or git.", smaregiv1alpha1.PlatformClientSecretKey)
	g.more("Platform stores of the same app in this namespace may name the same Secret.")
	if c := meta.FindStatusCondition(st.Status.Conditions, smaregiv1alpha1.CredentialsValidCondition); c != nil && c.Status != metav1.ConditionTrue {
		g.more("The operator reports now: CredentialsValid %s", describe(c))
	}
	g.blank()

	g.line("C. Tell the operator about every stock change within seconds: the app's webhook")
	rs := st.Status.Receiver
	var missing []string
	switch {
	case rs == nil || rs.URL == "":
		missing = append(missing, "the webhook URL is not published yet (status.receiver.url is empty)")
	case rs.WebhookKey == nil || rs.WebhookKey.Name == "":
		missing = append(missing, "the operator runs without a Platform webhook key (--platform-webhook-key-secret is empty): "+
			"stock is pulled on spec.sync's intervals only")
	}
	if len(missing) > 0 {
		g.line("NOT READY: the values for this part do not exist yet.")
		for _, m := range missing {
			g.more("- %s", m)
		}
		ready := readySummary(st)
		g.more("Ready: %s", ready)
		g.more("Run this command again once the operator has published them.")
		if g.err != nil {
			return fmt.Errorf("write setup guide: %w", g.err)
		}
		return &NotReadyError{Store: storeRef, Missing: missing, Ready: ready}
	}
	ref := rs.WebhookKey
	getKey := fmt.Sprintf("kubectl get secret %s -n %s -o jsonpath='{.data.%s}' | base64 -d", ref.Name, ref.Namespace, ref.Key)
	g.step(6, "In the app's webhook settings (Webhook), set the URL:")
	switch {
	case ref.Header != "":
		g.more("%s", rs.URL)
		g.step(7, "Add the custom header")
		g.more("name   %s", ref.Header)
		g.more("value  the webhook key:  %s", getKey)
		if ref.InPath {
			g.more("If the app cannot send a custom header, use instead the URL %s/<webhook key>.", rs.URL)
		}
	default:
		g.more("%s/<webhook key>   with the webhook key from:  %s", rs.URL, getKey)
		g.step(7, "No custom header is needed: the key is in the URL.")
	}
	g.more("The key is a secret: it is the only proof that a webhook comes from Smaregi.")
	g.step(8, "Subscribe to the events:")
	for _, e := range platformEvents {
		g.more("%s", e)
	}
	g.step(9, "Save. Done.")
	g.blank()
	g.line("Smaregi has one webhook URL per app: this URL and key serve every Platform SmaregiStore of this operator,")
	g.line("in every namespace; the operator routes each webhook by its contract (Smaregi-Contract-Id) and store IDs.")
	g.line("A webhook only makes the stores pull their stock with their own credentials.")
	g.line("Check: kubectl get smaregistore %s -n %s  (READY should become True; LAST-SYNC moves after the next sale).", st.Name, st.Namespace)
	if g.err != nil {
		return fmt.Errorf("write setup guide: %w", g.err)
	}
	return nil
}
