package webhookserver

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/statusapply"
)

// FieldManager is the receiver's server-side apply field manager: it owns
// only the SendsHealthy condition.
const FieldManager = "smaregi-operator-receiver"

// DefaultReportInterval is how often a continuing bad verdict (wrong or
// previous key) is repeated as an event, per contract and replica, and how
// long a good send keeps wrong-key sends from being reported.
const DefaultReportInterval = 5 * time.Minute

// verdict is what one send says about the contract's send settings.
type verdict int

const (
	verdictCurrent  verdict = iota // authenticated with the current key
	verdictPrevious                // with the rotated-out key, in its grace
	verdictWrong                   // missing or wrong key
)

// minWrongSends is how many wrong-key sends in a row (no good one between)
// it takes to report a wrong key: one proves nothing.
const minWrongSends = 2

// sendHealth turns the verdicts of sends on a contract's route into the
// SendsHealthy condition and Warning events on the contract's stores: a
// misconfigured Smaregi otherwise only shows as 401s in its own send
// history. Reports run off the request path.
//
// The route is public, and the default parameter name too, so anyone can
// post wrong keys: the receiver is only told about sends that name the
// parameter (authenticate), and a wrong key is reported only once
// minWrongSends of them came in a row, only while no send with a good key
// arrived for an interval (a shop whose sends work is not asked to re-enter
// its key because of someone else's posts), and at most once per interval
// per contract. A good key after a reported bad one is reported at once;
// as only the shop's Smaregi has the key, that too happens at most once per
// wrong report. So a storm of refused sends costs a few writes.
type sendHealth struct {
	status   client.Client
	recorder events.EventRecorder
	interval time.Duration
	log      logr.Logger
	now      func() time.Time
	// retryPause is the pause before a failed write's second attempt,
	// doubled before the third (default one second; tests shorten it).
	retryPause time.Duration

	mu   sync.Mutex
	last map[string]healthRecord // by namespace/contract
	wg   sync.WaitGroup
}

type healthRecord struct {
	verdict       verdict   // last reported; the zero value (current) needs no report
	reported      time.Time // of verdict
	wrongReported time.Time // last report of a wrong key
	lastGood      time.Time // last send with the current or previous key
	refused       int       // wrong-key sends since the last good one
}

// note records one send's verdict for the route's stores. It is called
// only for sends that carry the key parameter.
func (h *sendHealth) note(rt route, v verdict) {
	if h == nil || (h.status == nil && h.recorder == nil) {
		return
	}
	store := &rt.stores[0]
	key := store.Namespace + "/" + store.Spec.ContractID
	now := h.now()
	h.mu.Lock()
	rec := h.last[key]
	var due bool
	if v == verdictWrong {
		rec.refused++
		due = rec.refused >= minWrongSends &&
			(rec.lastGood.IsZero() || now.Sub(rec.lastGood) >= h.interval) &&
			(rec.wrongReported.IsZero() || now.Sub(rec.wrongReported) >= h.interval)
		if due {
			rec.wrongReported = now
		}
	} else {
		rec.lastGood, rec.refused = now, 0
		due = rec.verdict != v || v == verdictPrevious && now.Sub(rec.reported) >= h.interval
	}
	if due {
		rec.verdict, rec.reported = v, now
	}
	h.last[key] = rec
	h.mu.Unlock()
	if !due {
		return
	}
	stores := append([]smaregiv1alpha1.SmaregiStore(nil), rt.stores...)
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.report(stores, v, rec.refused)
	}()
}

// reportAttempts bounds the writes of one store's condition per report: a
// report is made once per verdict change (or interval), so a write lost to
// a slow or restarting API server would otherwise leave the condition
// stale until the next change.
const reportAttempts = 3

// report writes the condition and the event on every store of the route.
// Each store's write has its own deadline, so one slow write does not use
// up the next store's.
func (h *sendHealth) report(stores []smaregiv1alpha1.SmaregiStore, v verdict, refused int) {
	for i := range stores {
		st := &stores[i]
		status, reason, msg := describeVerdict(st, v, refused)
		if h.status != nil {
			// lastTransitionTime moves only when the status does: a repeated
			// report of the same verdict keeps the time it first became so.
			transition := metav1.NewTime(h.now().UTC().Truncate(time.Second))
			if old := apimeta.FindStatusCondition(st.Status.Conditions, smaregiv1alpha1.SendsHealthyCondition); old != nil &&
				old.Status == status && !old.LastTransitionTime.IsZero() {
				transition = old.LastTransitionTime
			}
			cond := map[string]any{
				"type": smaregiv1alpha1.SendsHealthyCondition, "status": string(status), "reason": reason, "message": msg,
				"observedGeneration": st.Generation, "lastTransitionTime": transition.UTC().Format(time.RFC3339),
			}
			for attempt := 1; ; attempt++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				err := statusapply.Apply(ctx, h.status, FieldManager, st.Namespace, st.Name,
					map[string]any{"conditions": []any{cond}})
				cancel()
				if err == nil || apierrors.IsNotFound(err) {
					break
				}
				if attempt == reportAttempts {
					h.log.Error(err, "cannot write SendsHealthy", "smaregistore", client.ObjectKeyFromObject(st), "attempts", attempt)
					break
				}
				// Off the request path: a short pause before trying again.
				pause := h.retryPause
				if pause <= 0 {
					pause = time.Second
				}
				time.Sleep(time.Duration(attempt) * pause)
			}
		}
		if h.recorder != nil {
			typ := corev1.EventTypeWarning
			if v == verdictCurrent {
				typ = corev1.EventTypeNormal
			}
			h.recorder.Eventf(st, nil, typ, reason, "ReceiveSend", "%s", msg)
		}
	}
}

// describeVerdict words a verdict for one store. It names where the key
// is, never the key.
func describeVerdict(st *smaregiv1alpha1.SmaregiStore, v verdict, refused int) (metav1.ConditionStatus, string, string) {
	param, secretName, _ := st.ReceiverKeyLocation()
	switch v {
	case verdictWrong:
		msg := fmt.Sprintf("sends are arriving with a wrong key: update 4.パラメータ情報 in Smaregi's API送信設定 (キー %q, 値 from Secret %q; "+
			"kubectl smaregi setup %s prints both); %d refused so far", param, secretName, st.Name, refused)
		if rs := st.Status.Receiver; rs != nil && rs.LastRotation != "" {
			msg = fmt.Sprintf("sends are arriving with a wrong key, still the previous key after the rotation %q: update 4.パラメータ情報 "+
				"in Smaregi's API送信設定 with the new value (キー %q, Secret %q; kubectl smaregi setup %s); %d refused so far",
				rs.LastRotation, param, secretName, st.Name, refused)
		}
		return metav1.ConditionFalse, smaregiv1alpha1.ReasonWrongKey, msg
	case verdictPrevious:
		until := "its expiry"
		if rs := st.Status.Receiver; rs != nil && rs.PreviousKeyExpiresAt != nil {
			until = rs.PreviousKeyExpiresAt.UTC().Format(time.RFC3339)
		}
		return metav1.ConditionTrue, smaregiv1alpha1.ReasonPreviousKey, fmt.Sprintf(
			"sends are still arriving with the previous key, accepted only until %s: update 4.パラメータ情報 in Smaregi's "+
				"API送信設定 with the new value (キー %q, Secret %q; kubectl smaregi setup %s)", until, param, secretName, st.Name)
	default:
		return metav1.ConditionTrue, smaregiv1alpha1.ReasonSendsAccepted, "sends arrive with the current key"
	}
}

// wait blocks until reports in flight are done (tests and shutdown).
func (h *sendHealth) wait() {
	if h != nil {
		h.wg.Wait()
	}
}
