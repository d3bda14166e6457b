// Package smaregisim is a stateful simulator of Smaregi's legacy API
// (POST /access/) and of the shop behind it: it keeps stock, products and the
// stock history, rings up sales, and posts Smaregi's outgoing sends
// (transaction_send, stock_send) to a configured URL. A control API under
// /_sim/ (and the same operations as Go methods) drives the shop, the admin
// screen settings and injected faults.
package smaregisim

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Options configures a simulator. Zero values get the defaults described on
// each field.
type Options struct {
	// Contract is the contract ID (契約ID) accepted in X_contract_id.
	Contract string
	// Token is the access token accepted in X_access_token.
	Token string
	// Stores are the store IDs (digits, up to 5). Default: ["1"].
	Stores []string
	// Products is the number of products; IDs are 8000001, 8000002, ….
	Products int
	// InitialStock is every product's starting stock in every store. When it
	// is 0 no stock rows exist at start, which reproduces Smaregi's "a row
	// exists only after the first change" behaviour.
	InitialStock int64
	// Seed makes product codes and injected faults reproducible.
	Seed int64
	// Clock returns the current time; default time.Now. Times are rendered
	// in Asia/Tokyo at second resolution.
	Clock func() time.Time
	// Behaviour selects the answers to the protocol's open questions.
	Behaviour Behaviour
	// Logger receives one line per request and per send; never secrets.
	// Default: discard.
	Logger *slog.Logger
	// SendClient posts the outgoing sends, and the Platform webhooks and
	// bulk callbacks. Default: a client with a 10s timeout.
	SendClient *http.Client
	// Platform configures the Platform API served beside /access/.
	Platform PlatformOptions
}

// Limit handling when a query asks for more than MaxLimit rows.
const (
	LimitOverMaxError = "error" // answer error 41 (default)
	LimitOverMaxClamp = "clamp" // silently return at most MaxLimit rows
)

// How several objects in "conditions" combine.
const (
	ConditionsOr  = "or" // default: any object may match
	ConditionsAnd = "and"
)

// What stock_upd does with a row's memo (an optional field the protocol
// document marks as inferred).
const (
	// MemoKept: accepted and kept; StockHistory returns it (default).
	MemoKept = "kept"
	// MemoIgnored: accepted, but not kept: StockHistory rows carry an
	// empty memo.
	MemoIgnored = "ignored"
	// MemoRejected: a stock_upd row with a memo is error 41 (unknown
	// field), and StockHistory has no memo column.
	MemoRejected = "rejected"
)

// Behaviour holds the protocol points the reference document marks as
// inferred [I] or unknown [U]. Each zero value is the likeliest behaviour.
type Behaviour struct {
	// LimitOverMax: LimitOverMaxError (default) or LimitOverMaxClamp.
	LimitOverMax string `json:"limitOverMax,omitempty"`
	// ConditionObjects: ConditionsOr (default) or ConditionsAnd.
	ConditionObjects string `json:"conditionObjects,omitempty"`
	// ErrorStatus is the HTTP status of protocol errors; default 400.
	ErrorStatus int `json:"errorStatus,omitempty"`
	// ErrorCodeAsString renders error_code as "13" instead of 13.
	ErrorCodeAsString bool `json:"errorCodeAsString,omitempty"`
	// RawUnicode writes non-ASCII text as UTF-8; by default it is
	// \uXXXX-escaped the way PHP's json_encode does.
	RawUnicode bool `json:"rawUnicode,omitempty"`
	// EchoAPIWrites makes stock_upd changes produce stock_send like in-shop
	// changes do. Default false (no echo).
	EchoAPIWrites bool `json:"echoAPIWrites,omitempty"`
	// MaxUpdateRows is the most rows one stock_upd may carry; more is error
	// 41. Default 500; negative means unlimited.
	MaxUpdateRows int `json:"maxUpdateRows,omitempty"`
	// SendRetries is how many times a failed send is retried automatically.
	// Default 0: like Smaregi's admin screen, failures wait for a manual
	// resend.
	SendRetries int `json:"sendRetries,omitempty"`
	// SendRetryInterval is the pause before an automatic retry; default 1s.
	SendRetryInterval time.Duration `json:"sendRetryInterval,omitempty"`
	// ExtraParamsInQuery puts the send's extra parameters in the URL query
	// string instead of the form body.
	ExtraParamsInQuery bool `json:"extraParamsInQuery,omitempty"`
	// Memo: MemoKept (default), MemoIgnored or MemoRejected.
	Memo string `json:"memo,omitempty"`
}

// MaxLimit is the largest page size of the ref functions.
const MaxLimit = 1000

// DefaultLimit is the page size when a query gives none.
const DefaultLimit = 100

func (b Behaviour) withDefaults() Behaviour {
	if b.LimitOverMax == "" {
		b.LimitOverMax = LimitOverMaxError
	}
	if b.ConditionObjects == "" {
		b.ConditionObjects = ConditionsOr
	}
	if b.ErrorStatus == 0 {
		b.ErrorStatus = http.StatusBadRequest
	}
	if b.MaxUpdateRows == 0 {
		b.MaxUpdateRows = 500
	}
	if b.Memo == "" {
		b.Memo = MemoKept
	}
	if b.SendRetryInterval == 0 {
		b.SendRetryInterval = time.Second
	}
	return b
}

// Account is the part of Smaregi's admin screen that decides whether API
// calls are accepted.
type Account struct {
	// DisabledFunctions are proc_names switched off in 機能設定 (error 23).
	DisabledFunctions []string `json:"disabledFunctions"`
	// Locked makes every call fail with error 22.
	Locked bool `json:"locked"`
	// AllowedIPs limits callers (exact IPs or CIDRs); empty allows all.
	// Others get error 24.
	AllowedIPs []string `json:"allowedIPs"`
}

// SendConfig is the admin screen's API送信設定: one URL per contract, extra
// form parameters, and the functions that send.
type SendConfig struct {
	URL string `json:"url"`
	// Params are added as further form fields (e.g. goqsystem_key). They
	// are secrets: never logged nor shown in the send history.
	Params map[string]string `json:"params,omitempty"`
	// Functions that send: "transaction_send", "stock_send", and the
	// stand-ins for other send functions that StockMovement.SendAs names
	// (any lower-case name ending in "_send").
	Functions []string `json:"functions"`
}

// Faults are injected failures. Rates are probabilities in [0,1], drawn from
// the seeded RNG.
type Faults struct {
	// ErrorRate answers /access/ with a 5xx JSON error; nothing is applied.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// AppliedErrorRate runs the call (a stock_upd is applied), then answers
	// a 5xx JSON error (code 43) as if it had failed: a server that
	// committed and then broke. Only calls that succeeded are affected.
	AppliedErrorRate float64 `json:"appliedErrorRate,omitempty"`
	// HTMLErrorRate answers /access/ with an HTML 502 page; nothing applied.
	HTMLErrorRate float64 `json:"htmlErrorRate,omitempty"`
	// LatencyMs delays every /access/ answer.
	LatencyMs int `json:"latencyMs,omitempty"`
	// LostResponseRate applies the call, then closes the connection
	// without answering.
	LostResponseRate float64 `json:"lostResponseRate,omitempty"`
	// LateCommitRate holds a valid stock_upd without answering until the
	// client gives up (its timeout or a closed connection), then applies it
	// LateCommitDelay after that: a slow server or gateway that finishes a
	// request its client abandoned. The client sees a timeout or a cut
	// connection; StockHistory shows the change only later.
	LateCommitRate float64 `json:"lateCommitRate,omitempty"`
	// LateCommitDelay is how long after the request ended a late commit is
	// applied (JSON: nanoseconds or a Go duration string such as "3s").
	LateCommitDelay Duration `json:"lateCommitDelay,omitempty"`
	// DropSendRate silently skips an outgoing send (recorded as dropped).
	DropSendRate float64 `json:"dropSendRate,omitempty"`
	// DuplicateSendRate posts an outgoing send twice.
	DuplicateSendRate float64 `json:"duplicateSendRate,omitempty"`
	// ReorderSends holds back sends at random so that a later one overtakes.
	ReorderSends bool `json:"reorderSends,omitempty"`
}

// Duration is a time.Duration that reads from JSON as a Go duration string
// ("3s", "250ms") or a number of nanoseconds, and is written as a string.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("duration: want a string such as \"3s\" or nanoseconds, got %s", b)
	}
	*d = Duration(n)
	return nil
}
