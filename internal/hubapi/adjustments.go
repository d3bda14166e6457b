package hubapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	smaregiv1alpha1 "github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// Limits of an adjustment request. They are part of the API (docs/hub-api.md).
const (
	MaxAdjustmentIDLen  = 128
	MaxReasonLen        = 256 // characters
	MaxLines            = 500 // one stock_upd call's worth of rows
	MaxAbsQuantity      = 1_000_000
	MaxProductCodeLen   = 20
	fingerprintVersion  = "v1"
	adjustmentsLocation = "/api/v1/namespaces/%s/smaregistores/%s/adjustments/%s"
)

// AdjustmentRequest is the body of POST …/adjustments.
type AdjustmentRequest struct {
	ID     string        `json:"id"`
	Reason string        `json:"reason,omitempty"`
	Lines  []RequestLine `json:"lines"`
}

// RequestLine names a product by exactly one of ProductID and ProductCode.
type RequestLine struct {
	ProductID   string `json:"productId,omitempty"`
	ProductCode string `json:"productCode,omitempty"`
	Quantity    int64  `json:"quantity"`
}

// AdjustmentResponse is an adjustment as the API shows it.
type AdjustmentResponse struct {
	ID            string          `json:"id"`
	Namespace     string          `json:"namespace"`
	Store         string          `json:"store"`
	State         AdjustmentState `json:"state"`
	Reason        string          `json:"reason"`
	Lines         []ResponseLine  `json:"lines"`
	CreatedAt     time.Time       `json:"createdAt"`
	AppliedAt     *time.Time      `json:"appliedAt,omitempty"`
	FailureReason string          `json:"failureReason,omitempty"`
	// AwaitingConfirmation: pending, and sent to Smaregi (or being sent)
	// without a confirmed outcome yet; the operator reads Smaregi's stock
	// history until it knows. Do not resubmit under a new id.
	AwaitingConfirmation bool `json:"awaitingConfirmation,omitempty"`
}

// ResponseLine is a stored line: always the resolved productId.
type ResponseLine struct {
	ProductID string `json:"productId"`
	Quantity  int64  `json:"quantity"`
}

func responseOf(a Adjustment) AdjustmentResponse {
	out := AdjustmentResponse{
		ID: a.ID, Namespace: a.Key.Namespace, Store: a.Key.Name, State: a.State, Reason: a.Reason,
		Lines: make([]ResponseLine, len(a.Lines)), CreatedAt: a.CreatedAt.UTC(), FailureReason: a.FailureReason,
		AwaitingConfirmation: a.State == AdjustmentPending && a.AwaitingConfirmation,
	}
	for i, l := range a.Lines {
		out.Lines[i] = ResponseLine{ProductID: l.ProductID, Quantity: l.Quantity}
	}
	if !a.AppliedAt.IsZero() {
		t := a.AppliedAt.UTC()
		out.AppliedAt = &t
	}
	return out
}

// validID reports whether s may be an adjustment ID: 1–128 characters of
// letters, digits and . _ - : so that it is safe in a URL path, a log line
// and a database key without escaping.
func validID(s string) bool {
	if s == "" || len(s) > MaxAdjustmentIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-', c == ':':
		default:
			return false
		}
	}
	return true
}

// validCode accepts printable ASCII without spaces: Smaregi's product codes
// are JANs or shop-chosen codes of up to 20 such characters.
func validCode(s string) bool {
	if s == "" || len(s) > MaxProductCodeLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// validate checks everything that does not need Smaregi and returns the
// problems, all of them, so a caller can fix a request in one round.
func (req *AdjustmentRequest) validate() []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	if !validID(req.ID) {
		add("id", "must be 1 to %d characters of letters, digits, '.', '_', '-' and ':'", MaxAdjustmentIDLen)
	}
	if !utf8.ValidString(req.Reason) || utf8.RuneCountInString(req.Reason) > MaxReasonLen {
		add("reason", "must be valid text of at most %d characters", MaxReasonLen)
	} else if strings.IndexFunc(req.Reason, unicode.IsControl) >= 0 {
		add("reason", "must not contain control characters")
	}
	switch {
	case len(req.Lines) == 0:
		add("lines", "must have at least one line")
	case len(req.Lines) > MaxLines:
		add("lines", "must have at most %d lines (split larger changes into several adjustments)", MaxLines)
	}
	if len(errs) > 0 && len(req.Lines) > MaxLines {
		return errs
	}
	seen := make(map[string]int, len(req.Lines))
	for i, l := range req.Lines {
		f := "lines[" + strconv.Itoa(i) + "]"
		var ref string
		switch {
		case l.ProductID != "" && l.ProductCode != "":
			add(f, "give productId or productCode, not both")
		case l.ProductID != "":
			if !validProductID(l.ProductID) {
				add(f+".productId", "must be 1 to %d digits", maxProductIDLen)
			}
			ref = "id:" + l.ProductID
		case l.ProductCode != "":
			if !validCode(l.ProductCode) {
				add(f+".productCode", "must be 1 to %d printable ASCII characters without spaces", MaxProductCodeLen)
			}
			ref = "code:" + l.ProductCode
		default:
			add(f, "give productId or productCode")
		}
		switch {
		case l.Quantity == 0:
			add(f+".quantity", "must not be 0 (negative takes stock away, positive adds it)")
		case l.Quantity > MaxAbsQuantity || l.Quantity < -MaxAbsQuantity:
			add(f+".quantity", "must be between -%d and %d", MaxAbsQuantity, MaxAbsQuantity)
		}
		if ref != "" {
			if j, dup := seen[ref]; dup {
				add(f, "names the same product as lines[%d]; put one line per product", j)
			} else {
				seen[ref] = i
			}
		}
	}
	return errs
}

// fingerprint hashes the request's meaning: the reason and the set of lines
// as sent (productId or productCode), in a canonical order. Two requests with
// the same ID are the same adjustment exactly when their fingerprints match;
// line order and JSON spelling do not matter. Lines naming codes are
// fingerprinted by code, so a replay is recognised without asking Smaregi.
func (req *AdjustmentRequest) fingerprint() string {
	refs := make([]string, len(req.Lines))
	for i, l := range req.Lines {
		if l.ProductID != "" {
			refs[i] = "id:" + l.ProductID + "=" + strconv.FormatInt(l.Quantity, 10)
		} else {
			refs[i] = "code:" + l.ProductCode + "=" + strconv.FormatInt(l.Quantity, 10)
		}
	}
	sort.Strings(refs)
	h := sha256.New()
	// Lengths first, so that no choice of reason can collide with lines.
	fmt.Fprintf(h, "%s\n%d:%s\n%d\n", fingerprintVersion, len(req.Reason), req.Reason, len(refs))
	for _, r := range refs {
		fmt.Fprintf(h, "%d:%s\n", len(r), r)
	}
	return fingerprintVersion + ":" + hex.EncodeToString(h.Sum(nil))
}

// serveAdjustments accepts POST …/adjustments.
func (s *Server) serveAdjustments(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	store, ok := s.access(w, r, SubresourceAdjustments, "create")
	if !ok {
		return
	}
	if store.DeletionTimestamp != nil {
		// The operator removes a deleted store's inventory data, pending
		// adjustments included: accepting one now would promise a push that
		// never happens. Reads stay allowed while the deletion finishes.
		writeError(w, http.StatusConflict, reasonConflict, fmt.Sprintf(
			"SmaregiStore %s/%s is being deleted; its adjustments could not be applied, so none are accepted (nothing was stored); "+
				"GET .../adjustments/<id> still shows one accepted earlier", store.Namespace, store.Name), nil)
		return
	}
	req, ok := s.decodeAdjustment(w, r)
	if !ok {
		return
	}
	errs := req.validate()
	if reservedStoreID(req.ID) {
		errs = append(errs, FieldError{Field: "id", Message: "ids starting with spool: are reserved for the parts of StockPool orders"})
	}
	if len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, reasonInvalid, "the adjustment is invalid; nothing was stored", errs)
		return
	}
	if most := storeaccess.MaxRowsPerWrite(store.APIName()); len(req.Lines) > most {
		// The pusher applies an adjustment all or none, in one call; a store
		// whose API has no such call for several products (the Platform
		// API adds one product per call) cannot promise that for more.
		writeError(w, http.StatusUnprocessableEntity, reasonInvalid, "the adjustment is invalid; nothing was stored",
			[]FieldError{{Field: "lines", Message: fmt.Sprintf(
				"SmaregiStore %s/%s speaks the %s API, which applies at most %d product(s) in one all-or-none change: "+
					"send one adjustment per product", store.Namespace, store.Name, store.APIName(), most)}})
		return
	}
	ctx := r.Context()
	key := storeKey(store)
	fp := req.fingerprint()

	// A replay is answered from the store before anything else, so that
	// retrying a request that already succeeded never depends on Smaregi.
	existing, found, err := s.opts.Store.GetAdjustment(ctx, key, req.ID)
	if err != nil {
		s.storeFailure(w, err, "reading the adjustment", key)
		return
	}
	if found {
		s.answerExisting(w, existing, fp)
		return
	}

	lines, ok := s.resolveLines(w, r, store, req)
	if !ok {
		return
	}
	stored, created, err := s.opts.Store.SubmitAdjustment(ctx, Adjustment{
		Key: key, ID: req.ID, Reason: req.Reason, Lines: lines, Fingerprint: fp,
		State: AdjustmentPending, CreatedAt: s.clock.Now().UTC(),
	})
	switch {
	case errors.Is(err, ErrAdjustmentConflict):
		conflict(w, req.ID)
		return
	case err != nil:
		s.storeFailure(w, err, "storing the adjustment", key)
		return
	case !created:
		// Another request with the same ID won a race with this one.
		s.answerExisting(w, stored, fp)
		return
	}
	w.Header().Set("Location", fmt.Sprintf(adjustmentsLocation, url.PathEscape(key.Namespace), url.PathEscape(key.Name), url.PathEscape(stored.ID)))
	writeJSON(w, http.StatusAccepted, responseOf(stored))
}

// answerExisting answers a request whose ID is taken: 200 with the stored
// adjustment for a replay, 409 for a different request.
func (s *Server) answerExisting(w http.ResponseWriter, a Adjustment, fp string) {
	if a.Fingerprint != fp {
		conflict(w, a.ID)
		return
	}
	writeJSON(w, http.StatusOK, responseOf(a))
}

func conflict(w http.ResponseWriter, id string) {
	writeError(w, http.StatusConflict, reasonConflict, fmt.Sprintf(
		"adjustment %q already exists with a different body; an id may be used for one adjustment only", id), nil)
}

// decodeAdjustment reads and parses the body strictly: one JSON object, no
// unknown fields, no trailing data, at most MaxBodyBytes.
func (s *Server) decodeAdjustment(w http.ResponseWriter, r *http.Request) (*AdjustmentRequest, bool) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			writeError(w, http.StatusUnsupportedMediaType, reasonUnsupportedMedia, "send the adjustment as application/json", nil)
			return nil, false
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, reasonTooLarge,
				fmt.Sprintf("the body is larger than %d bytes; nothing was stored", s.opts.MaxBodyBytes), nil)
			return nil, false
		}
		writeError(w, http.StatusBadRequest, reasonBadRequest, "reading the body failed", nil)
		return nil, false
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req AdjustmentRequest
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, reasonBadRequest, "the body is not a valid adjustment: "+jsonProblem(err)+"; nothing was stored", nil)
		return nil, false
	}
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, reasonBadRequest, "the body must hold exactly one JSON object; nothing was stored", nil)
		return nil, false
	}
	return &req, true
}

// jsonProblem describes a decoding error without echoing the input.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %s must be %s", typ.Field, typ.Type)
		}
		return "the body must be a JSON object"
	case errors.Is(err, io.EOF):
		return "the body is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the JSON ends early"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed JSON"
}

// resolveLines turns request lines into stored lines, looking product codes
// up in Smaregi. Two lines that resolve to one product are refused like any
// other duplicate.
func (s *Server) resolveLines(w http.ResponseWriter, r *http.Request, store *smaregiv1alpha1.SmaregiStore, req *AdjustmentRequest) ([]AdjustmentLine, bool) {
	var codes []string
	for _, l := range req.Lines {
		if l.ProductCode != "" {
			codes = append(codes, l.ProductCode)
		}
	}
	var ids map[string]string
	if len(codes) > 0 {
		if s.opts.Resolver == nil {
			writeError(w, http.StatusUnprocessableEntity, reasonInvalid,
				"this operator cannot resolve productCode; send productId; nothing was stored", nil)
			return nil, false
		}
		var err error
		ids, err = s.opts.Resolver.ProductIDs(r.Context(), store, codes)
		if err != nil {
			s.resolveFailure(w, err, store)
			return nil, false
		}
	}
	lines := make([]AdjustmentLine, len(req.Lines))
	var errs []FieldError
	seen := make(map[string]int, len(req.Lines))
	for i, l := range req.Lines {
		f := "lines[" + strconv.Itoa(i) + "]"
		id := l.ProductID
		if l.ProductCode != "" {
			var ok bool
			if id, ok = ids[l.ProductCode]; !ok {
				errs = append(errs, FieldError{Field: f + ".productCode", Message: "Smaregi knows no product with this code"})
				continue
			}
		}
		if j, dup := seen[id]; dup {
			errs = append(errs, FieldError{Field: f, Message: fmt.Sprintf("names the same product (%s) as lines[%d]; put one line per product", id, j)})
			continue
		}
		seen[id] = i
		lines[i] = AdjustmentLine{ProductID: id, Quantity: l.Quantity}
	}
	if len(errs) > 0 {
		writeError(w, http.StatusUnprocessableEntity, reasonInvalid, "the adjustment is invalid; nothing was stored", errs)
		return nil, false
	}
	return lines, true
}

func (s *Server) resolveFailure(w http.ResponseWriter, err error, store *smaregiv1alpha1.SmaregiStore) {
	var re *ResolveError
	if !errors.As(err, &re) {
		s.log.Error(err, "resolving product codes", "store", store.Namespace+"/"+store.Name)
		writeError(w, http.StatusBadGateway, reasonBadGateway, "looking up product codes failed; nothing was stored", nil)
		return
	}
	switch re.Kind {
	case ResolveUnsupported:
		writeError(w, http.StatusUnprocessableEntity, reasonInvalid, re.Message+"; nothing was stored", nil)
	case ResolveMisconfigured:
		s.log.Error(err, "resolving product codes", "store", store.Namespace+"/"+store.Name)
		writeError(w, http.StatusBadGateway, reasonBadGateway, re.Message+"; nothing was stored", nil)
	default:
		s.log.Error(err, "resolving product codes", "store", store.Namespace+"/"+store.Name)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, reasonUnavailable, re.Message+"; nothing was stored", nil)
	}
}

// serveAdjustment answers GET …/adjustments/{id}.
func (s *Server) serveAdjustment(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET")
		return
	}
	store, ok := s.access(w, r, SubresourceAdjustments, "get")
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validID(id) {
		writeError(w, http.StatusNotFound, reasonNotFound, "not a valid adjustment id", nil)
		return
	}
	key := storeKey(store)
	a, found, err := s.opts.Store.GetAdjustment(r.Context(), key, id)
	if err != nil {
		s.storeFailure(w, err, "reading the adjustment", key)
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, reasonNotFound, fmt.Sprintf("adjustment %q not found in SmaregiStore %s", id, key), nil)
		return
	}
	writeJSON(w, http.StatusOK, responseOf(a))
}
