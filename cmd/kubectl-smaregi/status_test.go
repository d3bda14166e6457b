package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

var statusNow = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)

func statusObjects() []client.Object {
	at := func(ago time.Duration) *metav1.Time { t := metav1.NewTime(statusNow.Add(-ago)); return &t }
	ready := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "shibuya"},
		Status: smaregiv1alpha1.SmaregiStoreStatus{
			Conditions: []metav1.Condition{{Type: smaregiv1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: smaregiv1alpha1.ReasonSucceeded}},
			Inventory: &smaregiv1alpha1.InventoryStatus{SKUs: 1200, Drift: 3, LastPullTime: at(40 * time.Second),
				LastSendTime: at(5 * time.Minute), PendingAdjustments: 2, OldestPendingAdjustmentTime: at(90 * time.Second)},
		},
	}
	broken := &smaregiv1alpha1.SmaregiStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shops", Name: "umeda"},
		Status: smaregiv1alpha1.SmaregiStoreStatus{Conditions: []metav1.Condition{{Type: smaregiv1alpha1.ReadyCondition,
			Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonInvalidAccessToken}}},
	}
	other := &smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: "outlet", Name: "namba"}}
	return []client.Object{ready, broken, other}
}

func TestStatusTable(t *testing.T) {
	conn, _ := fakeConnect(t, nil, statusObjects()...)
	flags := &kubeFlags{namespace: "shops"}
	var out bytes.Buffer
	cmd := newStatusCommand(&out, conn, flags, func() time.Time { return statusNow })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	want := `NAME      READY   REASON               SKUS   DRIFT   MIRROR AGE   LAST SEND   PENDING   OLDEST PENDING
shibuya   True    Succeeded            1200   3       40s          5m          2         90s
umeda     False   InvalidAccessToken   0      0       -            -           0         -
`
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestStatusAllNamespacesJSONAndYAML(t *testing.T) {
	conn, _ := fakeConnect(t, nil, statusObjects()...)
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "-A", "-o", "json"}, &out, &errOut, conn); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var list statusList
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	var names []string
	for _, s := range list.Items {
		names = append(names, s.Namespace+"/"+s.Name)
	}
	if got := strings.Join(names, " "); got != "outlet/namba shops/shibuya shops/umeda" {
		t.Fatalf("items %s, want every namespace's stores in order", got)
	}
	if s := list.Items[1]; s.SKUs != 1200 || s.PendingAdjustments != 2 || s.OldestPendingAdjustmentTime == nil ||
		!s.OldestPendingAdjustmentTime.Time.Equal(statusNow.Add(-90*time.Second)) {
		t.Fatalf("shops/shibuya: %+v", s)
	}

	out.Reset()
	if code := run([]string{"status", "-n", "outlet", "-o", "yaml"}, &out, &errOut, conn); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var ylist statusList
	if err := yaml.Unmarshal(out.Bytes(), &ylist); err != nil || len(ylist.Items) != 1 || ylist.Items[0].Name != "namba" {
		t.Fatalf("yaml for namespace outlet: %v\n%s", err, out.String())
	}

	errOut.Reset()
	if code := run([]string{"status", "-o", "wide"}, &out, &errOut, conn); code != exitError ||
		!strings.Contains(errOut.String(), "json or yaml") {
		t.Fatalf("-o wide: exit %d, stderr %q", code, errOut.String())
	}
}

func TestStatusSaysWhenThereAreNoStores(t *testing.T) {
	conn, _ := fakeConnect(t, nil)
	var out, errOut bytes.Buffer
	if code := run([]string{"status", "-n", "empty"}, &out, &errOut, conn); code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "No SmaregiStores found.") {
		t.Fatalf("output %q", out.String())
	}
}
