package webhookserver

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// Platform webhook events that trigger a pull. Every other event is answered
// 200 and counted as ignored, so that subscribing the app to more events in
// the developer console costs nothing.
const (
	EventStock        = "pos:stock"
	EventTransactions = "pos:transactions"
)

// Headers of a Platform webhook.
const (
	HeaderEvent      = "Smaregi-Event"
	HeaderContractID = "Smaregi-Contract-Id"
	HeaderEventID    = "Smaregi-Event-Id"
)

// DefaultPlatformKeyHeader is the custom header that carries the webhook
// key unless --platform-webhook-key-header says otherwise.
const DefaultPlatformKeyHeader = "X-Smaregi-Operator-Key"

// DefaultPlatformSinkTimeout bounds the durable record of one webhook.
// Smaregi is said to wait 3 s for an answer ([I] in the Platform API notes)
// and not to retry; 2 s leaves room for reading the request and answering.
const DefaultPlatformSinkTimeout = 2 * time.Second

// PlatformOptions configure the Platform webhook route
// (smaregiv1alpha1.PlatformWebhookPath). Keys nil switches it off (404).
type PlatformOptions struct {
	// Keys holds the operator-wide webhook key.
	Keys *PlatformKeys
	// KeyHeader is the custom header whose value must be the key; empty
	// means the key is not accepted in a header.
	KeyHeader string
	// KeyInPath accepts the key as one more path segment:
	// PlatformWebhookPath + "/" + key. For when the app's settings cannot
	// add a header; the key then shows in any access log of the URL.
	KeyInPath bool
	// SinkTimeout bounds one record; DefaultPlatformSinkTimeout if zero.
	SinkTimeout time.Duration
	// DedupeSize and DedupeTTL bound the set of event IDs remembered to
	// drop duplicates; DefaultPlatformDedupeSize and ...TTL if zero.
	DedupeSize int
	DedupeTTL  time.Duration
}

// platformReceiver is the Platform webhook route's state.
type platformReceiver struct {
	opts   PlatformOptions
	events *eventSet
}

func newPlatformReceiver(opts PlatformOptions) (*platformReceiver, error) {
	if opts.Keys == nil {
		return nil, nil
	}
	if opts.KeyHeader == "" && !opts.KeyInPath {
		return nil, errors.New("webhookserver: the Platform webhook key must be accepted in a header or in the path (or both)")
	}
	if opts.KeyHeader != "" {
		if !httpguts.ValidHeaderFieldName(opts.KeyHeader) {
			return nil, fmt.Errorf("webhookserver: Platform webhook key header %q is not a valid header name", opts.KeyHeader)
		}
		switch http.CanonicalHeaderKey(opts.KeyHeader) {
		case HeaderEvent, HeaderContractID, HeaderEventID, "User-Agent", "Content-Type", "Content-Length", "Authorization", "Host":
			return nil, fmt.Errorf("webhookserver: Platform webhook key header %q is a header Smaregi or HTTP already uses", opts.KeyHeader)
		}
	}
	if opts.DedupeSize < 0 || opts.DedupeTTL < 0 || opts.SinkTimeout < 0 {
		return nil, errors.New("webhookserver: negative Platform dedupe size, dedupe TTL or sink timeout")
	}
	if opts.DedupeSize == 0 {
		opts.DedupeSize = DefaultPlatformDedupeSize
	}
	defaultDuration(&opts.DedupeTTL, DefaultPlatformDedupeTTL)
	defaultDuration(&opts.SinkTimeout, DefaultPlatformSinkTimeout)
	return &platformReceiver{opts: opts, events: newEventSet(opts.DedupeSize, opts.DedupeTTL)}, nil
}

// isPlatformPath reports whether path belongs to the Platform route.
func isPlatformPath(path string) bool {
	return path == smaregiv1alpha1.PlatformWebhookPath || strings.HasPrefix(path, smaregiv1alpha1.PlatformWebhookPath+"/")
}

// servePlatform answers one Platform webhook.
func (s *Server) servePlatform(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	out := s.handlePlatform(w, r)
	platformRequestsTotal.WithLabelValues(out.result).Inc()
	platformRequestDuration.WithLabelValues(out.result).Observe(time.Since(start).Seconds())
	writeOutcome(w, out)
}

var (
	// contractIDPattern is spec.contractID's pattern: a header that cannot
	// be a contract ID names no store.
	contractIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	// eventIDPattern bounds the event ID (a UUID in practice) to printable
	// ASCII, so that the dedupe set and the logs hold nothing odd.
	eventIDPattern = regexp.MustCompile(`^[\x21-\x7e]{1,128}$`)
	eventPattern   = regexp.MustCompile(`^[a-z0-9:_.-]{1,64}$`)
)

// handlePlatform authenticates, parses and routes one webhook, and records
// it durably for the stores it concerns before answering 200.
//
// Why a durable record before the answer, rather than a pull triggered in
// memory: the record (the legacy receiver's Sink, inventory.RecordSend)
// marks the stores dirty in the same commit, and the leader's engine learns
// of the mark on whichever replica Smaregi reached, even across a restart;
// an in-memory trigger on a follower would be lost. The record takes
// milliseconds, bounded by PlatformOptions.SinkTimeout, so the answer stays
// inside Smaregi's 3 s.
func (s *Server) handlePlatform(w http.ResponseWriter, r *http.Request) outcome {
	p := s.platform
	if p == nil {
		return refuse(http.StatusNotFound, ResultNotFound, "Platform webhooks are not enabled on this receiver")
	}
	pathKey, hasPathKey := strings.CutPrefix(r.URL.Path, smaregiv1alpha1.PlatformWebhookPath+"/")
	if hasPathKey && (!p.opts.KeyInPath || pathKey == "" || strings.Contains(pathKey, "/")) {
		return refuse(http.StatusNotFound, ResultNotFound, "unknown route")
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return refuse(http.StatusMethodNotAllowed, ResultMethodNotAllowed, "only POST is accepted")
	}
	// The key is checked before the body is read, so that without it a
	// request costs no more than its headers.
	if out, ok := s.authenticatePlatform(r, pathKey, hasPathKey); !ok {
		return out
	}

	event, contractID, eventID := r.Header.Get(HeaderEvent), r.Header.Get(HeaderContractID), r.Header.Get(HeaderEventID)
	switch {
	case !eventPattern.MatchString(event):
		return refuse(http.StatusBadRequest, ResultBadRequest, "missing or malformed "+HeaderEvent+" header")
	case !contractIDPattern.MatchString(contractID):
		return refuse(http.StatusBadRequest, ResultBadRequest, "missing or malformed "+HeaderContractID+" header")
	case !eventIDPattern.MatchString(eventID):
		return refuse(http.StatusBadRequest, ResultBadRequest, "missing or malformed "+HeaderEventID+" header")
	}
	log := s.log.WithValues("contractID", contractID, "event", event, "eventID", eventID)
	if event != EventStock && event != EventTransactions {
		log.V(1).Info("ignored a Platform webhook of an event the operator does not use")
		return outcome{status: http.StatusOK, result: ResultIgnored, message: "event not used by this receiver"}
	}
	dedupeKey := platformEventKey(contractID, eventID)
	if p.events.contains(dedupeKey, s.clock.Now()) {
		log.V(1).Info("dropped a duplicate Platform webhook")
		return outcome{status: http.StatusOK, result: ResultDuplicate, message: "event already recorded"}
	}

	if r.ContentLength > s.opts.MaxBodyBytes {
		return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, "request body too large")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		if _, tooLarge := errors.AsType[*http.MaxBytesError](err); tooLarge {
			return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, "request body too large")
		}
		return refuse(http.StatusBadRequest, ResultBadRequest, "request body not readable")
	}
	parsed, err := parsePlatformBody(body, contractID, s.opts.MaxRows)
	if errors.Is(err, errTooManyRows) {
		return refuse(http.StatusRequestEntityTooLarge, ResultTooLarge, fmt.Sprintf(
			"more than %d ids in one webhook; the receiver's --receiver-max-rows limits it", s.opts.MaxRows))
	}
	if err != nil {
		log.V(1).Info("refused a Platform webhook: malformed body", "problem", err.Error())
		return refuse(http.StatusBadRequest, ResultBadRequest, err.Error())
	}

	targets, err := s.platformTargets(r.Context(), contractID, parsed.storeIDs)
	if err != nil {
		log.Error(err, "cannot route a Platform webhook")
		return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later")
	}
	if len(targets) == 0 {
		// An app installed for a contract no Platform store declares, or
		// store IDs nobody mirrors: nothing to pull. Counted apart so that
		// a contract set up in Smaregi but not here shows.
		p.events.add(dedupeKey, s.clock.Now())
		log.V(1).Info("a Platform webhook concerns no SmaregiStore", "storeIDs", parsed.storeIDs)
		return outcome{status: http.StatusOK, result: ResultNoStores, message: "no Platform SmaregiStore of this contract and store"}
	}

	// One record per namespace: a Send (and the inventory's send record)
	// belongs to one namespace, and a contract may be declared in several.
	byNS := map[string][]types.NamespacedName{}
	var namespaces []string
	for _, t := range targets {
		if _, ok := byNS[t.Namespace]; !ok {
			namespaces = append(namespaces, t.Namespace)
		}
		byNS[t.Namespace] = append(byNS[t.Namespace], t)
	}
	// Like a legacy send, the record goes on if Smaregi hangs up.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), p.opts.SinkTimeout)
	defer cancel()
	received := s.clock.Now()
	for _, ns := range namespaces {
		send := Send{
			ID:         platformSendID(ns, contractID, eventID),
			Namespace:  ns,
			ContractID: contractID,
			ProcName:   event,
			StoreIDs:   parsed.storeIDs,
			Targets:    byNS[ns],
			Rows:       parsed.ids,
			ReceivedAt: received,
		}
		if err := s.opts.Sink.Accept(sctx, send); err != nil {
			// Records already made stay: a resend is deduplicated by ID.
			log.Error(err, "cannot record a Platform webhook", "namespace", ns)
			return refuse(http.StatusServiceUnavailable, ResultSinkError, "webhook not recorded, resend later")
		}
	}
	p.events.add(dedupeKey, s.clock.Now())
	log.V(1).Info("accepted a Platform webhook", "targets", len(targets))
	return outcome{status: http.StatusOK, result: ResultAccepted, targets: len(targets)}
}

// authenticatePlatform checks the key from the configured places: each
// place that carries a key must carry a valid one, and at least one must.
func (s *Server) authenticatePlatform(r *http.Request, pathKey string, hasPathKey bool) (outcome, bool) {
	p := s.platform
	unauthorized := refuse(http.StatusUnauthorized, ResultUnauthorized, "missing or wrong webhook key")
	var given []string
	if hasPathKey {
		given = append(given, pathKey)
	}
	if p.opts.KeyHeader != "" {
		if vs := r.Header.Values(p.opts.KeyHeader); len(vs) > 0 {
			if len(vs) > 1 {
				return unauthorized, false
			}
			given = append(given, vs[0])
		}
	}
	if len(given) == 0 {
		s.log.V(1).Info("refused a Platform webhook: no key")
		return unauthorized, false
	}
	for _, k := range given {
		v, ok := p.opts.Keys.match(sha256.Sum256([]byte(k)))
		if !ok {
			return refuse(http.StatusServiceUnavailable, ResultUnavailable, "receiver not ready, resend later"), false
		}
		if v == verdictWrong {
			s.log.V(1).Info("refused a Platform webhook: wrong key")
			return unauthorized, false
		}
		if v == verdictPrevious {
			s.log.V(1).Info("accepted the previous Platform webhook key; enter the rotated one in the app's webhook settings")
		}
	}
	return outcome{}, true
}

// platformTargets returns the Platform stores of the contract, in every
// namespace the cache holds, whose spec.storeID is in storeIDs (all of them
// when storeIDs is empty), sorted. Stores of another namespace are
// included on purpose: a webhook only makes each store pull with its own
// credentials (docs/security.md).
func (s *Server) platformTargets(ctx context.Context, contractID string, storeIDs []string) ([]types.NamespacedName, error) {
	var stores smaregiv1alpha1.SmaregiStoreList
	if err := s.opts.Reader.List(ctx, &stores, client.MatchingFields{ContractIDField: contractID}); err != nil {
		return nil, fmt.Errorf("list SmaregiStores of contract %s: %w", contractID, err)
	}
	wanted := make(map[string]struct{}, len(storeIDs))
	for _, id := range storeIDs {
		wanted[smaregi.CanonicalStoreID(id)] = struct{}{}
	}
	var out []types.NamespacedName
	for i := range stores.Items {
		st := &stores.Items[i]
		// The index is trusted for the contract, but it is checked again,
		// and legacy stores never take a webhook: their sends have a route.
		if st.Spec.ContractID != contractID || !st.IsPlatform() {
			continue
		}
		if len(wanted) > 0 {
			if _, ok := wanted[smaregi.CanonicalStoreID(st.Spec.StoreID)]; !ok {
				continue
			}
		}
		out = append(out, client.ObjectKeyFromObject(st))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, nil
}

// platformEventKey is the dedupe set's key of an event.
func platformEventKey(contractID, eventID string) [sha256.Size]byte {
	return sha256.Sum256([]byte("platform\n" + contractID + "\n" + eventID))
}

// platformSendID is the durable dedupe ID of a webhook's record for one
// namespace: the same event delivered twice, to any replica, records once.
func platformSendID(namespace, contractID, eventID string) string {
	sum := sha256.Sum256([]byte("platform\n" + namespace + "\n" + contractID + "\n" + eventID))
	return hex.EncodeToString(sum[:])
}

// platformBody is what the receiver reads of a webhook body: events carry
// IDs only, never amounts, and only the store IDs route.
type platformBody struct {
	storeIDs []string // distinct, sorted
	ids      int
}

// platformID is one element of "ids"; other fields are not read.
type platformID struct {
	StoreID flexID `json:"storeId"`
}

// flexID takes an ID given as a JSON string or number; null or absent is "".
type flexID string

func (f *flexID) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexID(s)
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return errors.New("an id is neither a string nor a number")
		}
		*f = flexID(n.String())
	}
	return nil
}

// parsePlatformBody reads the store IDs of a pos:stock or pos:transactions
// body ({"contractId","event","action","ids":[{…,"storeId"}]}). A body of
// another contract than the header's is refused: one of them is forged.
func parsePlatformBody(body []byte, contractID string, maxIDs int) (platformBody, error) {
	var raw struct {
		ContractID *string          `json:"contractId"`
		IDs        *json.RawMessage `json:"ids"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil {
		return platformBody{}, errors.New("body is not a JSON object")
	}
	if dec.More() {
		return platformBody{}, errors.New("body has data after the JSON object")
	}
	if raw.ContractID != nil && *raw.ContractID != contractID {
		return platformBody{}, errors.New("contractId in the body differs from the " + HeaderContractID + " header")
	}
	var out platformBody
	if raw.IDs == nil || bytes.Equal(bytes.TrimSpace(*raw.IDs), []byte("null")) {
		return out, nil
	}
	// Count before decoding into values: a body of tiny ids must not cost
	// a typed value each beyond the limit.
	n, err := countArray(*raw.IDs)
	if err != nil {
		return platformBody{}, errors.New("ids is not an array of objects")
	}
	if n > maxIDs {
		return platformBody{}, errTooManyRows
	}
	var ids []platformID
	if err := json.Unmarshal(*raw.IDs, &ids); err != nil {
		return platformBody{}, errors.New("ids is not an array of objects with string or number storeId")
	}
	seen := map[string]struct{}{}
	for _, id := range ids {
		if id.StoreID == "" {
			continue
		}
		if _, ok := seen[string(id.StoreID)]; !ok {
			seen[string(id.StoreID)] = struct{}{}
			out.storeIDs = append(out.storeIDs, string(id.StoreID))
		}
	}
	sort.Strings(out.storeIDs)
	out.ids = len(ids)
	return out, nil
}

// countArray counts the elements of a JSON array without building them.
func countArray(b []byte) (int, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('[') {
		return 0, errors.New("not an array")
	}
	n := 0
	for dec.More() {
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return 0, err
		}
		n++
	}
	return n, nil
}
