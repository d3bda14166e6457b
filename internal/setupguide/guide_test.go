package setupguide

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

const (
	receiverURL = "https://stock.example.test/smaregi/v1/3f0c1a52-9d7e-4b8e-a1c2-5e6f7a8b9c0d"
	receiverKey = "rk_Zp4Qw8Xn2Lm6Vt0Hs3Jd"
)

var now = time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)

func readyStore() *smaregiv1alpha1.SmaregiStore {
	return &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "shibuya"},
		Spec: smaregiv1alpha1.SmaregiStoreSpec{
			ContractID:     "sb_abc123",
			StoreID:        "1",
			CredentialsRef: smaregiv1alpha1.SecretKeyReference{Name: "shibuya-smaregi", Key: "token"},
		},
		Status: smaregiv1alpha1.SmaregiStoreStatus{
			Receiver: &smaregiv1alpha1.ReceiverStatus{
				URL:           receiverURL,
				RouteID:       "3f0c1a52-9d7e-4b8e-a1c2-5e6f7a8b9c0d",
				ParameterName: "goqsystem_key",
				KeySecretRef:  &smaregiv1alpha1.SecretKeyReference{Name: "shibuya-receiver-key", Key: "goqsystem_key"},
			},
			Conditions: []metav1.Condition{{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: "Succeeded"}},
		},
	}
}

func keySecret() *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "shibuya-receiver-key",
			Labels: map[string]string{smaregiv1alpha1.ManagedByLabel: smaregiv1alpha1.ManagedByValue}},
		Data: map[string][]byte{"goqsystem_key": []byte(receiverKey)},
	}
}

// assertInOrder checks each fragment appears, after the previous one.
func assertInOrder(t *testing.T, out string, fragments ...string) {
	t.Helper()
	pos := 0
	for _, f := range fragments {
		i := strings.Index(out[pos:], f)
		if i < 0 {
			t.Fatalf("%q missing (or out of order) after offset %d in:\n%s", f, pos, out)
		}
		pos += i + len(f)
	}
}

func TestRenderReadyStoreFollowsTheScreens(t *testing.T) {
	var buf bytes.Buffer
	if err := Render(&buf, Input{Store: readyStore(), KeySecret: keySecret(), Now: now}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	out := buf.String()
	assertInOrder(t, out,
		"1.", "[設定]", "2.", "[システム連携]", "3.", "[スマレジAPI設定]",
		"4.", "[API受信設定]", "受信機能を利用する", "[利用する]",
		"5.", "アクセストークン発行", "6.", "[OK]",
		"7.", "契約ID", "sb_abc123", smaregiv1alpha1.DefaultEndpoint,
		"kubectl create secret generic shibuya-smaregi -n shops --from-literal=token='<アクセストークン>'",
		"8.", "機能設定", "4   在庫情報更新", "15  在庫情報参照",
		"9.", "[更新]",
		"14.", "[API送信設定]", "15.", "送信機能を利用する", "16.", "送信URL", receiverURL,
		"17.", "パラメータ情報", "[+追加]", "18.", "goqsystem_key", receiverKey, "19.", "[追加]",
		"20.", "5.取引情報送信", "[>個別設定]", "21.", receiverURL, "22.", "23.", "goqsystem_key", "24.", "[設定]",
		"在庫情報送信", "25.", "[更新]",
	)
	if strings.Contains(out, "GoQSystemからコピー") {
		t.Error("the guide still sends the shop to GoQSystem")
	}
	for _, n := range []string{"\n10.", "\n11.", "\n12.", "\n13."} {
		if strings.Contains(out, n) {
			t.Errorf("GoQSystem-only step %s is printed", strings.TrimSpace(n))
		}
	}
	if strings.Contains(out, "rotated") {
		t.Error("a rotation notice without a rotation")
	}
}

func TestRenderCustomParameterAndRotation(t *testing.T) {
	st := readyStore()
	st.Spec.Receiver.ParameterName = "shop_key"
	st.Status.Receiver.ParameterName = "shop_key"
	st.Status.Receiver.KeySecretRef = nil // older status: fall back to the defaults
	sec := keySecret()
	sec.Data = map[string][]byte{"shop_key": []byte(receiverKey), "shop_key.previous": []byte("old-value")}
	sec.Annotations = map[string]string{smaregiv1alpha1.PreviousKeyExpiresAnnotation: now.Add(48 * time.Hour).Format(time.RFC3339)}
	var buf bytes.Buffer
	if err := Render(&buf, Input{Store: st, KeySecret: sec, Now: now}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	out := buf.String()
	assertInOrder(t, out, "キー  shop_key", "値    "+receiverKey, "left (key) shop_key", "rotated", "2026-11-28T09:00:00Z")
	if strings.Contains(out, "old-value") {
		t.Error("the previous key is printed")
	}
}

func TestRenderNotReady(t *testing.T) {
	cases := map[string]struct {
		store       func() *smaregiv1alpha1.SmaregiStore
		secret      *corev1.Secret
		wantMissing []string
		wantReady   string
	}{
		"nothing published": {
			store: func() *smaregiv1alpha1.SmaregiStore {
				st := readyStore()
				st.Status.Receiver = nil
				st.Status.Conditions = []metav1.Condition{
					{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonSecretNotFound,
						Message: "Secret shops/shibuya-smaregi not found"},
					{Type: smaregiv1alpha1.CredentialsValidCondition, Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonSecretNotFound,
						Message: "Secret shops/shibuya-smaregi not found"},
				}
				return st
			},
			wantMissing: []string{"status.receiver.url is empty", "Secret shibuya-receiver-key does not exist"},
			wantReady:   "False (SecretNotFound): Secret shops/shibuya-smaregi not found",
		},
		"key Secret empty, no conditions": {
			store: func() *smaregiv1alpha1.SmaregiStore {
				st := readyStore()
				st.Status.Conditions = nil
				return st
			},
			secret:      &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shibuya-receiver-key"}},
			wantMissing: []string{`holds no key "goqsystem_key"`},
			wantReady:   "no Ready condition",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Render(&buf, Input{Store: tc.store(), KeySecret: tc.secret, Now: now})
			var nre *NotReadyError
			if !errors.As(err, &nre) {
				t.Fatalf("Render = %v, want a *NotReadyError", err)
			}
			out := buf.String()
			// Part A is still given, so the shop can start.
			assertInOrder(t, out, "1.", "[設定]", "9.", "[更新]", "NOT READY")
			for _, m := range tc.wantMissing {
				if !strings.Contains(out, m) || !strings.Contains(err.Error(), m) {
					t.Errorf("%q not said in output and error:\n%s\n%v", m, out, err)
				}
			}
			if !strings.Contains(out, tc.wantReady) || !strings.Contains(nre.Ready, tc.wantReady) {
				t.Errorf("Ready %q not reported:\n%s", tc.wantReady, out)
			}
			if strings.Contains(out, "\n16.") || strings.Contains(out, "\n18.") {
				t.Errorf("send settings printed without their values:\n%s", out)
			}
		})
	}
}

func TestRenderReportsCredentialProblems(t *testing.T) {
	st := readyStore()
	st.Status.Conditions = append(st.Status.Conditions, metav1.Condition{
		Type: smaregiv1alpha1.CredentialsValidCondition, Status: metav1.ConditionFalse,
		Reason: smaregiv1alpha1.ReasonFunctionDisabled, Message: "Smaregi says 在庫情報参照 is switched off (error 23)",
	})
	var buf bytes.Buffer
	if err := Render(&buf, Input{Store: st, KeySecret: keySecret(), Now: now}); err != nil {
		t.Fatal(err)
	}
	assertInOrder(t, buf.String(), "7.", "CredentialsValid False (FunctionDisabled): Smaregi says 在庫情報参照 is switched off", "8.")
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestRenderWriteError(t *testing.T) {
	err := Render(failWriter{}, Input{Store: readyStore(), KeySecret: keySecret(), Now: now})
	var nre *NotReadyError
	if err == nil || errors.As(err, &nre) || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Render to a failing writer = %v", err)
	}
}

// A store added to a contract whose sends already arrive (another store of
// the contract received one through the same URL) needs nothing in Smaregi.
func TestRenderStoreJoiningASetUpContract(t *testing.T) {
	other := *readyStore()
	other.Name = "harajuku"
	other.Spec.StoreID = "2"
	sent := metav1.NewTime(now.Add(-time.Minute))
	other.Status.Inventory = &smaregiv1alpha1.InventoryStatus{LastSendTime: &sent}

	var buf bytes.Buffer
	if err := Render(&buf, Input{Store: readyStore(), KeySecret: keySecret(), Now: now, ContractStores: []smaregiv1alpha1.SmaregiStore{other}}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	out := buf.String()
	assertInOrder(t, out, "already set up in Smaregi", "harajuku", "Nothing more is needed in Smaregi", receiverURL, receiverKey)
	if strings.Contains(out, "\n14.") {
		t.Error("the send settings steps are printed for a contract already set up")
	}

	// Not set up yet (no send arrived): part B as usual, naming both stores.
	other.Status.Inventory = nil
	buf.Reset()
	if err := Render(&buf, Input{Store: readyStore(), KeySecret: keySecret(), Now: now, ContractStores: []smaregiv1alpha1.SmaregiStore{other}}); err != nil {
		t.Fatalf("Render: %v", err)
	}
	assertInOrder(t, buf.String(), "14.", "16.", receiverURL, "every", "shibuya, harajuku")
}
