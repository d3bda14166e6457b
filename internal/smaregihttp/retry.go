package smaregihttp

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Verdict is what a failed call means for sending it again. Each client
// turns its errors into one Verdict and answers IsTransient and IsAmbiguous
// from it, so that the two can never both hold.
type Verdict int

const (
	// Definite: the server's own verdict, or an error that is not the
	// client's; sending the same call again would fail the same way, and
	// nothing is in doubt.
	Definite Verdict = iota
	// Transient: safe to send unchanged later (a read, or a write that
	// certainly was not applied).
	Transient
	// Ambiguous: a write that may have been applied. Resolve it from the
	// stock history before anything is resent: a relative change is not
	// idempotent.
	Ambiguous
)

// Unanswered is the verdict on a call that got no usable answer (reset,
// timeout, a body that could not be read or decoded): a read may always be
// repeated; a write only when nothing left this process (maybeSent false,
// see Send), since the server may have applied it and only the answer was
// lost.
func Unanswered(write, maybeSent bool) Verdict {
	if write && maybeSent {
		return Ambiguous
	}
	return Transient
}

// Reached says how far a failed exchange got, in the words both clients'
// TransportError texts use, so an operator reads a lost call alike on
// either API.
func Reached(maybeSent bool) string {
	if maybeSent {
		return "request may have been received"
	}
	return "not sent"
}

// Judge is the verdict on a client's error: by the server's answer when one
// came (an A in err's chain), else by how far the exchange got (a T in
// err's chain, see Unanswered). Any other error is not the client's, so it
// is Definite. The answer is looked for first because, when an error
// chain holds both, what the server said is the firmer fact.
func Judge[A, T error](err error, answered func(A) Verdict, unanswered func(T) Verdict) Verdict {
	var a A
	if errors.As(err, &a) {
		return answered(a)
	}
	var t T
	if errors.As(err, &t) {
		return unanswered(t)
	}
	return Definite
}

// Backoff returns the wait before attempt+1 (attempt counts from 1): half
// of the exponential step from initial, capped at maxWait, plus a random
// half ("equal jitter"), so waits surely grow while the many stores of one
// contract still spread out instead of retrying in lockstep.
func Backoff(initial, maxWait time.Duration, attempt int) time.Duration {
	ceil := initial << min(attempt-1, 20)
	if ceil <= 0 || ceil > maxWait {
		ceil = maxWait
	}
	half := ceil / 2
	return half + time.Duration(rand.Int64N(int64(ceil-half)+1))
}

// Sleep waits d, or until ctx ends; then it returns ctx.Err().
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
