package smaregihttp

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestUnanswered(t *testing.T) {
	cases := []struct {
		write, maybeSent bool
		want             Verdict
	}{
		{false, false, Transient},
		{false, true, Transient}, // a read may always be repeated
		{true, false, Transient}, // nothing left this process
		{true, true, Ambiguous},  // the answer, not the write, may be what was lost
	}
	for _, c := range cases {
		if got := Unanswered(c.write, c.maybeSent); got != c.want {
			t.Errorf("Unanswered(write %v, maybeSent %v) = %v, want %v", c.write, c.maybeSent, got, c.want)
		}
	}
}

// TestBackoffStaysWithinItsStep: each wait lies between half the capped
// exponential step and the whole step, including where the shift would
// overflow.
func TestBackoffStaysWithinItsStep(t *testing.T) {
	cases := []struct {
		initial, maxWait time.Duration
		attempt          int
		ceil             time.Duration
	}{
		{250 * time.Millisecond, 10 * time.Second, 1, 250 * time.Millisecond},
		{250 * time.Millisecond, 10 * time.Second, 3, time.Second},
		{250 * time.Millisecond, 10 * time.Second, 7, 10 * time.Second}, // 16s capped
		{250 * time.Millisecond, 10 * time.Second, 1000, 10 * time.Second},
		{10 * time.Hour, 20 * time.Hour, 30, 20 * time.Hour}, // 10h<<20 overflows
		{time.Millisecond, 0, 2, 0},
	}
	for _, c := range cases {
		for range 200 {
			got := Backoff(c.initial, c.maxWait, c.attempt)
			if got < c.ceil/2 || got > c.ceil {
				t.Fatalf("Backoff(%v, %v, %d) = %v, want within [%v, %v]", c.initial, c.maxWait, c.attempt, got, c.ceil/2, c.ceil)
			}
		}
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	if err := Sleep(context.Background(), 0); err != nil {
		t.Fatalf("Sleep(0) = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); err != context.Canceled {
		t.Fatalf("Sleep with an ended context = %v, want context.Canceled", err)
	}
}

type answerErr struct{ status int }

func (e *answerErr) Error() string { return "answer" }

type lostErr struct {
	maybeSent bool
	err       error
}

func (e *lostErr) Error() string { return "lost" }
func (e *lostErr) Unwrap() error { return e.err }

// TestJudgeLooksForTheAnswerFirst: an answer decides when one is in the
// chain (even inside an unanswered failure), an unanswered failure
// otherwise, and an error of neither kind is Definite.
func TestJudgeLooksForTheAnswerFirst(t *testing.T) {
	answered := func(e *answerErr) Verdict {
		if e.status >= 500 {
			return Transient
		}
		return Definite
	}
	unanswered := func(e *lostErr) Verdict { return Unanswered(true, e.maybeSent) }
	cases := []struct {
		name string
		err  error
		want Verdict
	}{
		{"answer", fmt.Errorf("ctx: %w", &answerErr{status: 503}), Transient},
		{"answer inside a lost exchange", &lostErr{maybeSent: true, err: &answerErr{status: 400}}, Definite},
		{"lost write", fmt.Errorf("ctx: %w", &lostErr{maybeSent: true}), Ambiguous},
		{"write never sent", &lostErr{}, Transient},
		{"other", errors.New("other"), Definite},
		{"nil", nil, Definite},
	}
	for _, c := range cases {
		if got := Judge(c.err, answered, unanswered); got != c.want {
			t.Errorf("%s: Judge = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestReached(t *testing.T) {
	if got := Reached(false); got != "not sent" {
		t.Errorf("Reached(false) = %q", got)
	}
	if got := Reached(true); got != "request may have been received" {
		t.Errorf("Reached(true) = %q", got)
	}
}
