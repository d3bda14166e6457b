package webhookserver

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/events"
)

// drain returns the events recorded so far.
func drain(rec *events.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// Wrong-key sends on a known route raise a Warning on every store of the
// contract at once, then at most once per interval; the current key again
// is reported once.
func TestWrongKeySendsAreReportedOnTheContractsStores(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	h := newHarness(t, func(o *Options) { o.Recorder = rec; o.ReportInterval = time.Minute }, contractFixture("x", "y")...)
	wrong := sendForm(ProcStockSend, stockParams, "goqsystem_key", "not-the-key")
	for range 3 {
		if got := postForm(t, h.url("contract-route-uid"), wrong); got.status != http.StatusUnauthorized {
			t.Fatalf("wrong key: status %d", got.status)
		}
	}
	h.srv.health.wait()
	got := drain(rec)
	if len(got) != 2 {
		t.Fatalf("events %q, want one Warning per store of the contract", got)
	}
	for _, e := range got {
		if !strings.HasPrefix(e, "Warning WrongKey") || !strings.Contains(e, "4.パラメータ情報") || strings.Contains(e, "contract-key") {
			t.Errorf("event %q: want a Warning naming 4.パラメータ情報 and no key", e)
		}
	}

	// Past the interval, a continuing wrong key is repeated with the count.
	h.clock.SetTime(testNow.Add(2 * time.Minute))
	postForm(t, h.url("contract-route-uid"), wrong)
	h.srv.health.wait()
	if got := drain(rec); len(got) != 2 || !strings.Contains(got[0], "4 refused") {
		t.Errorf("repeat events %q, want one per store counting 4 refused sends", got)
	}

	// Fixed in Smaregi: one Normal event per store, then silence.
	for range 2 {
		if got := postForm(t, h.url("contract-route-uid"), sendForm(ProcStockSend, stockParams, "goqsystem_key", "contract-key")); got.status != http.StatusOK {
			t.Fatalf("current key: status %d", got.status)
		}
	}
	h.srv.health.wait()
	if got := drain(rec); len(got) != 2 || !strings.HasPrefix(got[0], "Normal SendsAccepted") {
		t.Errorf("events after the fix %q, want one Normal SendsAccepted per store", got)
	}
}

// Anyone who knows the URL can post without the key or with a wrong one:
// sends without the parameter never count, and one wrong key alone is not
// reported (issue 20 §1); a second in a row is.
func TestKeylessAndLoneWrongSendsAreNotReported(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	h := newHarness(t, func(o *Options) { o.Recorder = rec; o.ReportInterval = time.Minute }, contractFixture("x", "y")...)
	for range 10 {
		if got := postForm(t, h.url("contract-route-uid"), sendForm(ProcStockSend, stockParams, "", "")); got.status != http.StatusUnauthorized {
			t.Fatalf("keyless: status %d", got.status)
		}
	}
	wrong := sendForm(ProcStockSend, stockParams, "goqsystem_key", "not-the-key")
	postForm(t, h.url("contract-route-uid"), wrong)
	h.srv.health.wait()
	if got := drain(rec); len(got) != 0 {
		t.Fatalf("events %q after keyless sends and one wrong key, want none", got)
	}
	postForm(t, h.url("contract-route-uid"), wrong)
	h.srv.health.wait()
	if got := drain(rec); len(got) != 2 || !strings.HasPrefix(got[0], "Warning WrongKey") || !strings.Contains(got[0], "2 refused") {
		t.Fatalf("events %q after two wrong keys in a row, want one Warning per store counting 2", got)
	}
	// Within the interval, more wrong keys are not reported again.
	for range 20 {
		postForm(t, h.url("contract-route-uid"), wrong)
	}
	h.srv.health.wait()
	if got := drain(rec); len(got) != 0 {
		t.Fatalf("events %q for wrong keys within the interval, want none", got)
	}
}

// While sends with the current key arrive, wrong keys are someone else's:
// they are not reported until no good send came for an interval, and the
// reports stay at most one per interval however the two alternate.
func TestWrongKeysAreNotReportedWhileGoodSendsArrive(t *testing.T) {
	rec := events.NewFakeRecorder(100)
	h := newHarness(t, func(o *Options) { o.Recorder = rec; o.ReportInterval = time.Minute }, contractFixture("x", "y")...)
	good := sendForm(ProcStockSend, stockParams, "goqsystem_key", "contract-key")
	wrong := sendForm(ProcStockSend, stockParams, "goqsystem_key", "not-the-key")
	if got := postForm(t, h.url("contract-route-uid"), good); got.status != http.StatusOK {
		t.Fatalf("current key: status %d", got.status)
	}
	for range 5 {
		postForm(t, h.url("contract-route-uid"), wrong)
	}
	h.srv.health.wait()
	if got := drain(rec); len(got) != 0 {
		t.Fatalf("events %q for wrong keys right after a good send, want none", got)
	}

	// An interval without good sends: the wrong keys are the shop's.
	h.clock.SetTime(testNow.Add(2 * time.Minute))
	postForm(t, h.url("contract-route-uid"), wrong)
	h.srv.health.wait()
	if got := drain(rec); len(got) != 2 || !strings.HasPrefix(got[0], "Warning WrongKey") {
		t.Fatalf("events %q after an interval of wrong keys only, want one Warning per store", got)
	}
	// Good and wrong alternating: the good one is reported once, the
	// wrong ones not again within the interval.
	for range 5 {
		postForm(t, h.url("contract-route-uid"), good)
		postForm(t, h.url("contract-route-uid"), wrong)
		postForm(t, h.url("contract-route-uid"), wrong)
	}
	h.srv.health.wait()
	if got := drain(rec); len(got) != 2 || !strings.HasPrefix(got[0], "Normal SendsAccepted") {
		t.Fatalf("events %q for alternating keys, want only one Normal per store", got)
	}
}
