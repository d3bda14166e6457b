package webhookserver

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
)

// flakyStatus is a status writer whose first failures writes fail, as a
// loaded API server's do; it records which stores were written.
type flakyStatus struct {
	client.Client // nil: only Status() is used
	mu            sync.Mutex
	failures      int
	written       []string
	transitions   []string // lastTransitionTime of each written condition
}

func (f *flakyStatus) Status() client.SubResourceWriter { return flakyWriter{f} }

type flakyWriter struct{ f *flakyStatus }

func (w flakyWriter) Create(context.Context, client.Object, client.Object, ...client.SubResourceCreateOption) error {
	return errors.New("unused")
}
func (w flakyWriter) Update(context.Context, client.Object, ...client.SubResourceUpdateOption) error {
	return errors.New("unused")
}
func (w flakyWriter) Patch(context.Context, client.Object, client.Patch, ...client.SubResourcePatchOption) error {
	return errors.New("unused")
}
func (w flakyWriter) Apply(_ context.Context, obj runtime.ApplyConfiguration, _ ...client.SubResourceApplyOption) error {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	if w.f.failures > 0 {
		w.f.failures--
		return errors.New("context deadline exceeded")
	}
	switch u := obj.(type) {
	case interface{ GetName() string }:
		w.f.written = append(w.f.written, u.GetName())
	case interface{ GetName() *string }:
		w.f.written = append(w.f.written, *u.GetName())
	default:
		return errors.New("no name")
	}
	if u, ok := obj.(interface{ UnstructuredContent() map[string]any }); ok {
		conds, _, _ := unstructured.NestedSlice(u.UnstructuredContent(), "status", "conditions")
		if len(conds) == 1 {
			ltt, _, _ := unstructured.NestedString(conds[0].(map[string]any), "lastTransitionTime")
			w.f.transitions = append(w.f.transitions, ltt)
		}
	}
	return nil
}

// TestReportRetriesAFailedWrite: a report is made once per verdict change,
// so a write that fails (a slow API server) is tried again, and one store's
// failure does not keep the next store from being written.
func TestReportRetriesAFailedWrite(t *testing.T) {
	f := &flakyStatus{failures: 2}
	h := &sendHealth{status: f, log: logr.Discard(), interval: time.Minute, now: time.Now, last: map[string]healthRecord{},
		retryPause: time.Millisecond}
	stores := []smaregiv1alpha1.SmaregiStore{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "store-1"}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "store-2"}},
	}
	h.report(stores, verdictWrong, 2)
	if len(f.written) != 2 || f.written[0] != "store-1" || f.written[1] != "store-2" {
		t.Fatalf("written %v, want both stores after two failed writes", f.written)
	}
}

// TestRepeatedReportKeepsTheTransitionTime: a verdict reported again (a
// continuing wrong key, once an interval) does not move lastTransitionTime;
// a changed status does.
func TestRepeatedReportKeepsTheTransitionTime(t *testing.T) {
	since := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	now := since.Add(time.Hour)
	f := &flakyStatus{}
	h := &sendHealth{status: f, log: logr.Discard(), interval: time.Minute, now: func() time.Time { return now },
		last: map[string]healthRecord{}, retryPause: time.Millisecond}
	store := smaregiv1alpha1.SmaregiStore{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "store-1"}}
	store.Status.Conditions = []metav1.Condition{{Type: smaregiv1alpha1.SendsHealthyCondition,
		Status: metav1.ConditionFalse, Reason: smaregiv1alpha1.ReasonWrongKey, LastTransitionTime: since}}
	h.report([]smaregiv1alpha1.SmaregiStore{store}, verdictWrong, 4)
	h.report([]smaregiv1alpha1.SmaregiStore{store}, verdictCurrent, 0)
	want := []string{since.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339)}
	if len(f.transitions) != 2 || f.transitions[0] != want[0] || f.transitions[1] != want[1] {
		t.Fatalf("lastTransitionTime written %v, want %v (kept while False, moved when True)", f.transitions, want)
	}
}
