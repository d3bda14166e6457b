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
