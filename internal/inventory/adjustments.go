package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"time"
)

// AdjustmentState is where an adjustment is in its life.
type AdjustmentState string

// Adjustment states. An adjustment is pending from SubmitAdjustment until the
// pusher knows Smaregi applied it (applied) or Smaregi definitely rejected it
// (failed). Both later states are final.
const (
	AdjustmentPending AdjustmentState = "pending"
	AdjustmentApplied AdjustmentState = "applied"
	AdjustmentFailed  AdjustmentState = "failed"
)

// AdjustmentLine is one product's signed change.
type AdjustmentLine struct {
	ProductID string
	Quantity  int64
}

// Adjustment is a change from another channel (an online order, a return),
// to be applied to Smaregi exactly once (design principle 3).
type Adjustment struct {
	Key StoreKey
	// ID is the caller's idempotency key, unique per store.
	ID     string
	Reason string
	// Lines are resolved Smaregi product IDs with signed quantities.
	Lines []AdjustmentLine
	// Fingerprint is a hash of the canonical request: a resubmission with
	// the same ID and fingerprint is a replay, with another one a conflict.
	// SubmitAdjustment fills it with CanonicalFingerprint when empty.
	Fingerprint string
	State       AdjustmentState
	// CreatedAt is set by SubmitAdjustment (local clock) when zero.
	CreatedAt time.Time
	// AppliedAt is the local time the pusher learned Smaregi applied it,
	// which is after the change happened in Smaregi.
	AppliedAt time.Time
	// FailureReason is Smaregi's safe reason when failed.
	FailureReason string
	// AwaitingConfirmation: pending and carried by an open push attempt,
	// i.e. sent to Smaregi (or being sent) and not yet confirmed applied or
	// not applied. Filled by reads; ignored by SubmitAdjustment.
	AwaitingConfirmation bool `json:"-"`
}

// ErrAdjustmentConflict is returned by SubmitAdjustment when an adjustment
// with the same ID but another fingerprint exists.
var ErrAdjustmentConflict = errors.New("inventory: adjustment ID already used for a different request")

// ErrAttemptConflict is returned by BeginAttempt when one of the attempt's
// adjustments is not pending or is already carried by an open attempt, and
// by FinishAttempt when the attempt is not open.
var ErrAttemptConflict = errors.New("inventory: push attempt conflicts with the stored state")

// ErrAttemptOpen is returned by BeginAttempt when the store already has an
// open attempt and the new one has rows to send: one call per store at a
// time is what makes a resolution sound, and the store enforces it so that
// two pushers (a split brain) are fenced by the database. An attempt without
// rows (DiscardPending's) sends nothing and is not fenced. It is also an
// ErrAttemptConflict.
var ErrAttemptOpen = fmt.Errorf("%w: the store already has an open push attempt", ErrAttemptConflict)

// CanonicalFingerprint hashes what makes two submissions the same request:
// the reason and the lines in order.
func CanonicalFingerprint(reason string, lines []AdjustmentLine) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d:%s\n", len(reason), reason)
	for _, l := range lines {
		fmt.Fprintf(h, "%d:%s %d\n", len(l.ProductID), l.ProductID, l.Quantity)
	}
	return "inv1:" + hex.EncodeToString(h.Sum(nil))
}

// NormalizeAdjustment validates a submission and returns it as backends store
// it: state pending, times normalised, a fingerprint, CreatedAt set to now
// when zero, AppliedAt and FailureReason cleared.
func NormalizeAdjustment(a Adjustment, now time.Time) (Adjustment, error) {
	if a.Key.Namespace == "" || a.Key.Name == "" {
		return a, errors.New("inventory: adjustment without a store key")
	}
	if a.ID == "" {
		return a, errors.New("inventory: adjustment without an ID")
	}
	if len(a.Lines) == 0 {
		return a, fmt.Errorf("inventory: adjustment %s has no lines", a.ID)
	}
	for i, l := range a.Lines {
		if l.ProductID == "" {
			return a, fmt.Errorf("inventory: adjustment %s line %d has no product ID", a.ID, i)
		}
	}
	a.Lines = append([]AdjustmentLine(nil), a.Lines...)
	if a.Fingerprint == "" {
		a.Fingerprint = CanonicalFingerprint(a.Reason, a.Lines)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	a.CreatedAt = NormalizeTime(a.CreatedAt)
	a.State = AdjustmentPending
	a.AppliedAt = time.Time{}
	a.FailureReason = ""
	a.AwaitingConfirmation = false
	return a, nil
}

// AttemptState is where a push attempt is.
type AttemptState string

const (
	// AttemptOpen: recorded before sending; the outcome is not known yet.
	AttemptOpen AttemptState = "open"
	// AttemptApplied: Smaregi applied the call (said so, or its stock
	// history shows it); its adjustments are applied.
	AttemptApplied AttemptState = "applied"
	// AttemptVoid: Smaregi did not apply the call; its adjustments are
	// free to be sent again (or were marked failed).
	AttemptVoid AttemptState = "void"
)

// AttemptRow is one row of a stock_upd call: the merged change of one
// product over the attempt's adjustments.
type AttemptRow struct {
	ProductID string
	Amount    int64
}

// Attempt is one stock_upd call of the pusher, recorded durably before it is
// sent so that a crash or a lost answer can be resolved from Smaregi's stock
// history instead of resending blindly.
type Attempt struct {
	Key StoreKey
	// ID is unique per store; the pusher also writes it into each row's
	// memo so that history rows can be attributed where Smaregi keeps memos.
	ID            string
	AdjustmentIDs []string
	// Rows are sorted by product ID, one per product, no zero amount.
	Rows []AttemptRow
	// StartedAt is the local time just before sending.
	StartedAt time.Time
	// RequestDeadline is the latest time the call's request can have ended:
	// the pusher sends under this deadline (StartedAt plus its request
	// timeout). A server may still apply the call after the request ended,
	// so an attempt is never concluded not applied before a settle period
	// after it, by whichever replica resolves it. Zero in attempts recorded
	// before it existed (the resolver then derives it from StartedAt).
	RequestDeadline time.Time
	// Leader identifies the pusher (process) that made the attempt, for
	// diagnosis after a change of leader.
	Leader string
	// FinishedAt is the local time the outcome became known; zero while open.
	FinishedAt time.Time
	State      AttemptState
	// Claims name the stock history rows attributed to this attempt (opaque
	// to the store; the pusher writes "<productID>/<history row ID>"); a
	// later resolution never attributes them to another attempt.
	Claims []string
}

// AttemptResult settles an open attempt.
type AttemptResult struct {
	// Applied: mark the attempt's adjustments applied at At. Otherwise the
	// attempt is void and its adjustments stay pending (unless Failed says
	// otherwise).
	Applied bool
	At      time.Time
	// Claims are history row IDs attributed to this attempt.
	Claims []string
	// EarlierClaims attributes history rows to earlier applied attempts
	// (by attempt ID), found while resolving this one. It only adds.
	EarlierClaims map[string][]string
	// Failed marks adjustments (which must belong to the attempt) failed
	// with a reason, in the same transaction; only for a void attempt.
	Failed map[string]string
}

// AdjustmentStore is the adjustment part of Store: the hub API submits, the
// mirror engine reports reflection, the pusher drains the outbox.
type AdjustmentStore interface {
	// SubmitAdjustment stores a new pending adjustment durably before it
	// returns (created true), or returns the stored one (created false)
	// when the ID exists for the store with the same fingerprint, or
	// ErrAdjustmentConflict when it exists with another. A created
	// adjustment wakes SubscribeAdjustments on every replica.
	SubmitAdjustment(ctx context.Context, a Adjustment) (stored Adjustment, created bool, err error)
	GetAdjustment(ctx context.Context, key StoreKey, id string) (Adjustment, bool, error)
	// PendingDeltas sums per product the NEGATIVE quantities of the
	// adjustments not yet reflected in the mirror: pending (in flight
	// included), or applied but not yet seen by a pull that started after
	// AppliedAt. Positive quantities are left out so that availability is
	// never overstated. Products with no such quantity are absent.
	PendingDeltas(ctx context.Context, key StoreKey) (map[string]int64, error)
	// PendingAdjustments counts pending adjustments and gives the oldest
	// one's CreatedAt (zero when none), for status.
	PendingAdjustments(ctx context.Context, key StoreKey) (count int64, oldest time.Time, err error)
	// MarkAdjustmentsReflected marks applied adjustments with AppliedAt
	// before pullStartedAt as reflected in the mirror. The mirror engine
	// calls it after each successful pull with the pull's local start time.
	MarkAdjustmentsReflected(ctx context.Context, key StoreKey, pullStartedAt time.Time) (marked int, err error)
	// SubscribeAdjustments delivers the keys of stores that got a new
	// adjustment (on any replica, on PostgreSQL) until ctx ends, coalescing
	// like Subscribe.
	SubscribeAdjustments(ctx context.Context) <-chan StoreKey

	// StoresWithPendingAdjustments lists stores that have pending
	// adjustments or open attempts: the pusher's start-up and sweep work.
	StoresWithPendingAdjustments(ctx context.Context) ([]StoreKey, error)
	// ReadyAdjustments returns up to limit pending adjustments not carried by
	// an open attempt, oldest first.
	ReadyAdjustments(ctx context.Context, key StoreKey, limit int) ([]Adjustment, error)
	// BeginAttempt durably records an open attempt before it is sent. It
	// fails with ErrAttemptOpen if the store has an open attempt, and with
	// ErrAttemptConflict if an adjustment is not pending or is carried by
	// another open attempt, or if the ID is taken.
	BeginAttempt(ctx context.Context, at Attempt) error
	// OpenAttempts lists the store's open attempts, oldest first.
	OpenAttempts(ctx context.Context, key StoreKey) ([]Attempt, error)
	// AppliedAttempts lists the store's applied attempts that finished at
	// or after since, in StartedAt order: what a resolution must tell apart
	// from the attempt it resolves.
	AppliedAttempts(ctx context.Context, key StoreKey, since time.Time) ([]Attempt, error)
	// FinishAttempt settles an open attempt and its adjustments in one
	// transaction; ErrAttemptConflict if it is not open.
	FinishAttempt(ctx context.Context, key StoreKey, attemptID string, res AttemptResult) error
	// PruneAttempts deletes settled attempts that finished before cutoff.
	PruneAttempts(ctx context.Context, key StoreKey, cutoff time.Time) (int, error)
	// PruneAdjustments deletes the store's settled adjustments that no
	// longer matter to availability: applied ones already reflected in the
	// mirror whose AppliedAt is before cutoff, and failed ones created
	// before cutoff. It never deletes a pending adjustment (carried by an
	// open attempt or not) nor an applied one not yet reflected. It reads
	// only what it deletes (an index ordered by time), so a call with
	// nothing to delete is cheap. A deleted adjustment's ID is free again:
	// a later submission with it creates a new adjustment, so the retention
	// is the idempotency window.
	PruneAdjustments(ctx context.Context, key StoreKey, cutoff time.Time) (int, error)
}

// MergeAttemptRows merges adjustment lines into one row per product, sorted
// by product ID, dropping products whose changes cancel out.
func MergeAttemptRows(adjs []Adjustment) []AttemptRow {
	sum := map[string]int64{}
	for _, a := range adjs {
		for _, l := range a.Lines {
			sum[l.ProductID] += l.Quantity
		}
	}
	rows := make([]AttemptRow, 0, len(sum))
	for p, n := range sum {
		if n != 0 {
			rows = append(rows, AttemptRow{ProductID: p, Amount: n})
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].ProductID < rows[j].ProductID })
	return rows
}

// NegativeDeltas adds an adjustment's negative quantities to sum, the rule
// PendingDeltas applies.
func NegativeDeltas(sum map[string]int64, lines []AdjustmentLine) {
	for _, l := range lines {
		if l.Quantity < 0 {
			sum[l.ProductID] += l.Quantity
		}
	}
}

// AttemptMemo is the memo the pusher writes on each row of an attempt.
func AttemptMemo(attemptID string) string { return "smaregi-operator " + attemptID }

// DiscardedOutbox is what DiscardPending did to a store's outbox.
type DiscardedOutbox struct {
	// Discarded are the IDs of the pending adjustments now marked failed.
	Discarded []string
	// InFlight are the IDs carried by open push attempts: they may or may
	// not have reached Smaregi, so they could not be discarded.
	InFlight []string
}

// DiscardPending marks every pending adjustment of the store that no open
// push attempt carries failed with reason, so that nothing sends it any more.
// It uses only the outbox's own transitions: the adjustments are carried by
// an attempt that is recorded and at once settled void without being sent
// (its ID starts with "discard-"), so the pusher can never pick them up in
// between, and a push attempt racing it makes BeginAttempt fail with
// ErrAttemptConflict (call again). The SmaregiStore controller calls it when
// a user asks to delete a store and drop its outbox on purpose.
func DiscardPending(ctx context.Context, s AdjustmentStore, key StoreKey, reason string, now time.Time) (DiscardedOutbox, error) {
	var out DiscardedOutbox
	for batch := 0; ; batch++ {
		adjs, err := s.ReadyAdjustments(ctx, key, 500)
		if err != nil {
			return out, fmt.Errorf("inventory: reading the outbox of %s: %w", key, err)
		}
		if len(adjs) == 0 {
			break
		}
		// No rows: a discard sends nothing to Smaregi, so the one open
		// attempt per store fence (two pushers must not both send) does not
		// hold it back behind a push in flight.
		at := Attempt{Key: key, ID: fmt.Sprintf("discard-%d-%d", now.UnixNano(), batch), StartedAt: now}
		failed := make(map[string]string, len(adjs))
		for _, a := range adjs {
			at.AdjustmentIDs = append(at.AdjustmentIDs, a.ID)
			failed[a.ID] = reason
		}
		if err := s.BeginAttempt(ctx, at); err != nil {
			return out, fmt.Errorf("inventory: setting aside the outbox of %s: %w", key, err)
		}
		if err := s.FinishAttempt(ctx, key, at.ID, AttemptResult{At: now, Failed: failed}); err != nil {
			return out, fmt.Errorf("inventory: discarding the outbox of %s: %w", key, err)
		}
		out.Discarded = append(out.Discarded, at.AdjustmentIDs...)
	}
	open, err := s.OpenAttempts(ctx, key)
	if err != nil {
		return out, fmt.Errorf("inventory: reading the open attempts of %s: %w", key, err)
	}
	for _, a := range open {
		out.InFlight = append(out.InFlight, a.AdjustmentIDs...)
	}
	sort.Strings(out.Discarded)
	sort.Strings(out.InFlight)
	return out, nil
}
