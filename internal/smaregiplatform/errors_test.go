package smaregiplatform

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestClassification pins IsTransient, IsAmbiguous, IsConfigError and
// Cause for each kind of failure; transient and ambiguous never both hold.
func TestClassification(t *testing.T) {
	problem := func(call string, status int) *APIError {
		return &APIError{Call: call, HTTPStatus: status, Problem: true, Title: "x"}
	}
	oauth := func(code string, status int) *APIError {
		return &APIError{Call: CallToken, HTTPStatus: status, Problem: true, OAuthError: code}
	}
	page := func(call string, status int) *APIError { return &APIError{Call: call, HTTPStatus: status} }
	cases := []struct {
		name                         string
		err                          error
		transient, ambiguous, config bool
		cause                        string
	}{
		{"read 5xx", problem(CallStockList, 503), true, false, false, ""},
		{"read proxy page", page(CallStockList, 502), true, false, false, ""},
		{"read 429", problem(CallStockList, 429), true, false, false, CauseRateLimited},
		{"read 400", problem(CallStockList, 400), false, false, false, ""},
		{"read 404", problem(CallChangesList, 404), false, false, false, ""},
		{"read transport", &TransportError{Call: CallStockList, MaybeSent: true}, true, false, false, ""},
		{"write 5xx", problem(CallStockAdd, 503), false, true, false, ""},
		{"write proxy page", page(CallStockAdd, 502), false, true, false, ""},
		{"write redirect", page(CallStockAdd, 302), false, true, false, ""},
		{"write 429", problem(CallStockAdd, 429), true, false, false, CauseRateLimited},
		{"bulk 429", page(CallStockBulk, 429), true, false, false, CauseRateLimited},
		{"write 400", problem(CallStockAdd, 400), false, false, false, ""},
		{"write cut after sending", &TransportError{Call: CallStockAdd, MaybeSent: true}, false, true, false, ""},
		{"write not sent", &TransportError{Call: CallStockBulk}, true, false, false, ""},
		{"write 403", problem(CallStockAdd, 403), false, false, true, CauseMissingScope},
		{"write 401 refreshed", &APIError{Call: CallStockAdd, HTTPStatus: 401, Problem: true, Refreshed: true}, false, false, true, CauseInvalidClient},
		{"token invalid_client", oauth(OAuthInvalidClient, 401), false, false, true, CauseInvalidClient},
		{"token unauthorized_client", oauth(OAuthUnauthorizedClient, 400), false, false, true, CauseAppNotInstalled},
		{"token invalid_scope", oauth(OAuthInvalidScope, 400), false, false, true, CauseMissingScope},
		{"token unsupported_grant_type", oauth("unsupported_grant_type", 400), false, false, false, ""},
		{"token 429", oauth("too_many_requests", 429), true, false, false, CauseRateLimited},
		{"token 5xx page", page(CallToken, 502), true, false, false, ""},
		{"watermark", &WatermarkTooOldError{Watermark: time.Unix(0, 0)}, false, false, false, ""},
	}
	for _, c := range cases {
		err := fmt.Errorf("wrapped: %w", c.err)
		if IsTransient(err) != c.transient || IsAmbiguous(err) != c.ambiguous || IsConfigError(err) != c.config || Cause(err) != c.cause {
			t.Errorf("%s: transient %v ambiguous %v config %v cause %q; want %v %v %v %q", c.name,
				IsTransient(err), IsAmbiguous(err), IsConfigError(err), Cause(err), c.transient, c.ambiguous, c.config, c.cause)
		}
	}
	if !errors.Is(&WatermarkTooOldError{}, ErrFullReconcileNeeded) {
		t.Error("WatermarkTooOldError does not match ErrFullReconcileNeeded")
	}
}

func TestLinkHeaderParsing(t *testing.T) {
	for v, want := range map[string]bool{
		`<https://a/x?cursor=1,2>; rel="next"`:                 true,
		`<https://a/p>; rel="prev", <https://a/x>; rel="next"`: true,
		`<https://a/x>; rel="prev next"`:                       true,
		`<https://a/x>; rel=next`:                              true,
		`<https://a/x>; rel="prev"`:                            false,
		`https://a/x; rel="next"`:                              false,
	} {
		found := false
		for _, part := range splitLinks(v) {
			_, params, ok := cutLink(part)
			found = found || (ok && hasRelNext(params))
		}
		if found != want {
			t.Errorf("%s: next %v, want %v", v, found, want)
		}
	}
}
