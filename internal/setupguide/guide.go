// Package setupguide renders what a shop owner must enter in Smaregi's admin
// screens so that Smaregi talks to this operator: the steps of the setup
// guide shops know from GoQSystem, in the same order, with this store's
// values filled in; for a Platform store, the app in Smaregi's developer
// console, its installation and its webhook (platform.go). kubectl-smaregi
// prints it.
package setupguide

import (
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// Input is what the guide is rendered from.
type Input struct {
	// Store is the SmaregiStore as read from the cluster, status included.
	Store *smaregiv1alpha1.SmaregiStore
	// KeySecret is the store's receiver key Secret, nil if it does not
	// exist yet (and always for a Platform store, which has none).
	KeySecret *corev1.Secret
	// ContractStores are the other SmaregiStores of the same contract in
	// the store's namespace: they share its send URL and key.
	ContractStores []smaregiv1alpha1.SmaregiStore
	// Now dates the key rotation notice; zero means time.Now().
	Now time.Time
}

// setUpBy returns a store of the contract that already receives sends
// through url, and when it last did: the contract is set up in Smaregi.
func setUpBy(stores []smaregiv1alpha1.SmaregiStore, url string) (string, time.Time) {
	for _, s := range stores {
		if s.Status.Receiver == nil || s.Status.Receiver.URL != url || s.Status.Inventory == nil || s.Status.Inventory.LastSendTime == nil {
			continue
		}
		return s.Name, s.Status.Inventory.LastSendTime.Time
	}
	return "", time.Time{}
}

// NotReadyError says which values the shop cannot be given yet. Render
// returns it after writing every step that does not need them, so the shop
// can do the receive settings while the operator catches up.
type NotReadyError struct {
	Store   string   // namespace/name
	Missing []string // one sentence each
	// Ready is the Ready condition as "Status (Reason): message", or a
	// sentence saying there is none.
	Ready string
}

func (e *NotReadyError) Error() string {
	return fmt.Sprintf("SmaregiStore %s is not ready for Smaregi's send settings: %s; Ready: %s",
		e.Store, strings.Join(e.Missing, "; "), e.Ready)
}

// Render writes the guide to w. It returns a *NotReadyError when the store
// has no receiver URL or key yet (the send settings are then replaced by
// what is missing and why), or a write error.
func Render(w io.Writer, in Input) error {
	if in.Store == nil {
		return fmt.Errorf("render setup guide: no SmaregiStore given")
	}
	now := in.Now
	if now.IsZero() {
		now = time.Now()
	}
	st := in.Store
	g := &guide{w: w}
	if st.IsPlatform() {
		return renderPlatform(g, in)
	}
	param, secretName, secretKey := st.ReceiverKeyLocation()
	url := ""
	if st.Status.Receiver != nil {
		url = st.Status.Receiver.URL
	}
	var key string
	var missing []string
	if url == "" {
		missing = append(missing, "the receiver URL is not published yet (status.receiver.url is empty)")
	}
	switch {
	case in.KeySecret == nil:
		missing = append(missing, fmt.Sprintf("the receiver key Secret %s does not exist yet", secretName))
	case len(in.KeySecret.Data[secretKey]) == 0:
		missing = append(missing, fmt.Sprintf("the receiver key Secret %s holds no key %q yet", secretName, secretKey))
	default:
		key = string(in.KeySecret.Data[secretKey])
	}
	storeRef := st.Namespace + "/" + st.Name

	g.line("Smaregi setup for SmaregiStore %s (契約ID contract %s, 店舗ID store %s)", storeRef, st.Spec.ContractID, st.Spec.StoreID)
	g.line("This replaces GoQSystem in Smaregi's stock link guide (【スマレジ】在庫連携設定方法); the step numbers are the guide's.")
	g.line("スマレジAPI needs the Premium plan (プレミアムプラン) or above.")
	g.blank()

	g.line("A. Let the operator read and update stock: API受信設定 (API receive settings)")
	g.step(1, "Log in to Smaregi's admin screen (管理画面) and click [設定] (Settings).")
	g.step(2, "Point at [システム連携] (System integration).")
	g.step(3, "Click [スマレジAPI設定] (Smaregi API settings).")
	g.step(4, "On the [API受信設定] tab (API receive settings), at 「1.受信機能を利用する」 (use the receive function), choose [利用する] (use).")
	g.step(5, "At 「4.アクセストークン」 (access token), click [アクセストークン発行] (issue access token).")
	g.step(6, "The pop-up asks 「アクセストークンを発行します。よろしいですか?」 (issue an access token?): click [OK].")
	g.step(7, "Copy the three values shown: 契約ID (contract ID), URL and アクセストークン (access token).")
	g.more("契約ID must be   %s   (spec.contractID of this SmaregiStore)", st.Spec.ContractID)
	g.more("URL must be      %s   (spec.endpoint)", st.EndpointURL())
	g.more("If either differs, the SmaregiStore is wrong: tell whoever manages it, do not go on.")
	g.more("Put the access token into the Secret this store reads (spec.credentialsRef), replacing the placeholder:")
	g.more("  kubectl create secret generic %s -n %s --from-literal=%s='<アクセストークン>' --dry-run=client -o yaml | kubectl apply -f -",
		st.Spec.CredentialsRef.Name, st.Namespace, st.CredentialsKey())
	g.more("  kubectl label secret %s -n %s %s=true --overwrite   # the operator reads only Secrets that opt in",
		st.Spec.CredentialsRef.Name, st.Namespace, smaregiv1alpha1.CredentialsLabel)
	g.more("To keep the token out of your shell history, run  read -rs SMAREGI_TOKEN  (paste, Enter) and use")
	g.more("--from-literal=%s=\"$SMAREGI_TOKEN\" instead. Never put the token in chat, tickets or git.", st.CredentialsKey())
	g.more("Issuing a token again replaces this one at once: update the Secret right after.")
	if c := meta.FindStatusCondition(st.Status.Conditions, smaregiv1alpha1.CredentialsValidCondition); c != nil && c.Status != metav1.ConditionTrue {
		g.more("The operator reports now: CredentialsValid %s", describe(c))
	}
	g.step(8, "Scroll down to 「機能設定」 (function settings) and set these to [利用する] (use):")
	g.more("4   在庫情報更新 (stock update: the operator applies other channels' orders)")
	g.more("15  在庫情報参照 (stock reference: the operator reads stock)")
	g.step(9, "Scroll to the bottom and click [更新] (Update).")
	g.line("     Steps 10 to 13 of the GoQSystem guide (entering these values in GoQSystem and copying its send URL")
	g.line("     and parameter) are not needed: the operator gives you both below.")
	g.blank()

	g.line("B. Tell the operator about every sale within seconds: API送信設定 (API send settings)")
	if len(missing) > 0 {
		g.line("NOT READY: the values for this part do not exist yet.")
		for _, m := range missing {
			g.more("- %s", m)
		}
		ready := readySummary(st)
		g.more("Ready: %s", ready)
		g.more("Run this command again once the operator has published them; until then Smaregi's sends cannot be received.")
		if err := g.err; err != nil {
			return fmt.Errorf("write setup guide: %w", err)
		}
		return &NotReadyError{Store: storeRef, Missing: missing, Ready: ready}
	}
	if other, at := setUpBy(in.ContractStores, url); other != "" {
		g.line("Contract %s is already set up in Smaregi: SmaregiStore %s received a send through this URL at %s.",
			st.Spec.ContractID, other, at.UTC().Format(time.RFC3339))
		g.line("Nothing more is needed in Smaregi for this store: sends for 店舗ID %s arrive through the same URL and value.", st.Spec.StoreID)
		g.more("送信URL                %s", url)
		g.more("パラメータ情報  キー %s  値 %s", param, key)
		if notice := rotationNotice(in.KeySecret, secretKey, now); notice != "" {
			g.line("%s", notice)
		}
		g.line("Check: kubectl get smaregistore %s -n %s  (READY should become True; LAST-SYNC moves after the next sale).", st.Name, st.Namespace)
		if g.err != nil {
			return fmt.Errorf("write setup guide: %w", g.err)
		}
		return nil
	}
	g.step(14, "Back on スマレジAPI設定, click the [API送信設定] tab (API send settings).")
	g.step(15, "At 「1.送信機能を利用する」 (use the send function), click [利用する] (use).")
	g.step(16, "At 「2.送信URL」 (send URL), enter:")
	g.more("%s", url)
	g.step(17, "At 「4.パラメータ情報」 (parameters), click [+追加] (add).")
	g.step(18, "Enter キー (key) and 値 (value):")
	g.more("キー  %s", param)
	g.more("値    %s", key)
	g.more("The value is a secret: it is the only proof that a send comes from your Smaregi.")
	g.step(19, "Click [追加] (add).")
	g.step(20, "Scroll a little; at 「5.取引情報送信」 (transaction send), choose [利用する] (use), then click [>個別設定] (individual settings) next to it.")
	g.step(21, "In the pop-up, at 「送信URL」 (send URL), enter the same URL as in 16:")
	g.more("%s", url)
	g.step(22, "Click [+追加] (add) next to 「パラメータ情報」 (parameters).")
	g.step(23, "Enter on the left (key) %s and on the right (value) the same value as in 18.", param)
	g.step(24, "Click [設定] (set).")
	g.line("     Optional: if 機能設定 lists 在庫情報送信 (stock send), set it to [利用する] (use) as well, with the same")
	g.line("     URL and parameter in its [>個別設定]. Stock changes that are not sales (receiving, stocktakes) then reach")
	g.line("     the operator within seconds instead of at the next poll.")
	g.step(25, "Scroll to the bottom and click [更新] (Update). Done.")
	g.blank()
	names := []string{st.Name}
	for _, o := range in.ContractStores {
		names = append(names, o.Name)
	}
	g.line("Smaregi uses one send URL and parameter for the whole contract %s: this URL and value serve every", st.Spec.ContractID)
	g.line("SmaregiStore of the contract in %s (%s), and stores added later; do part B once.", st.Namespace, strings.Join(names, ", "))
	if notice := rotationNotice(in.KeySecret, secretKey, now); notice != "" {
		g.line("%s", notice)
	}
	g.line("Check: kubectl get smaregistore %s -n %s  (READY should become True; LAST-SYNC moves after the next sale).", st.Name, st.Namespace)
	if g.err != nil {
		return fmt.Errorf("write setup guide: %w", g.err)
	}
	return nil
}

// rotationNotice tells the shop a rotated key is pending, so it knows the
// value above is new and until when the one it has still works.
func rotationNotice(secret *corev1.Secret, secretKey string, now time.Time) string {
	if secret == nil || len(secret.Data[secretKey+smaregiv1alpha1.PreviousKeySuffix]) == 0 {
		return ""
	}
	raw := secret.Annotations[smaregiv1alpha1.PreviousKeyExpiresAnnotation]
	expires, err := time.Parse(time.RFC3339, raw)
	if err != nil || !now.Before(expires) {
		return ""
	}
	return fmt.Sprintf("The key was rotated: enter the new value above (18 and 23) before %s; the previous value stops working then.",
		expires.Format(time.RFC3339))
}

func readySummary(st *smaregiv1alpha1.SmaregiStore) string {
	c := meta.FindStatusCondition(st.Status.Conditions, smaregiv1alpha1.ReadyCondition)
	if c == nil {
		return "no Ready condition: the operator has not reported on this store yet (is it running, and watching this namespace?)"
	}
	return describe(c)
}

func describe(c *metav1.Condition) string {
	s := string(c.Status)
	if c.Reason != "" {
		s += " (" + c.Reason + ")"
	}
	if c.Message != "" {
		s += ": " + c.Message
	}
	return s
}

// guide writes numbered lines and keeps the first write error, so Render
// reads as the list of steps it prints.
type guide struct {
	w   io.Writer
	err error
}

func (g *guide) line(format string, args ...any) {
	if g.err != nil {
		return
	}
	_, g.err = fmt.Fprintf(g.w, format+"\n", args...)
}

func (g *guide) blank() { g.line("") }

func (g *guide) step(n int, format string, args ...any) {
	g.line("%-5s"+format, append([]any{fmt.Sprintf("%d.", n)}, args...)...)
}

func (g *guide) more(format string, args ...any) {
	g.line("       "+format, args...)
}
