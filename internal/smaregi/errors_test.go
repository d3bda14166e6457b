package smaregi

import (
	"context"
	"fmt"
	"testing"
)

func TestErrorClassification(t *testing.T) {
	cases := []struct {
		name                         string
		err                          error
		config, transient, ambiguous bool
		code                         int
	}{
		{"bad token", &APIError{ProcName: ProcStockRef, HTTPStatus: 400, Code: CodeInvalidAccessToken}, true, false, false, 13},
		{"function disabled on write", &APIError{ProcName: ProcStockUpd, HTTPStatus: 400, Code: CodeFunctionDisabled}, true, false, false, 23},
		{"invalid input", &APIError{ProcName: ProcStockUpd, HTTPStatus: 400, Code: CodeInvalidInputData}, false, false, false, 41},
		{"html 502 read", &APIError{ProcName: ProcStockRef, HTTPStatus: 502}, false, true, false, 0},
		{"html 502 write", &APIError{ProcName: ProcStockUpd, HTTPStatus: 502}, false, false, true, 0},
		{"json 500 read", &APIError{ProcName: ProcStockRef, HTTPStatus: 500, Code: CodeQueryFailed}, false, true, false, 43},
		// A coded 5xx is no proof that nothing was applied: a server can
		// commit and then fail.
		{"json 503 write", &APIError{ProcName: ProcStockUpd, HTTPStatus: 503, Code: CodeQueryFailed}, false, false, true, 43},
		{"json 500 write", &APIError{ProcName: ProcStockUpd, HTTPStatus: 500, Code: CodeInvalidInputData}, false, false, true, 41},
		{"json 503 write with a config code", &APIError{ProcName: ProcStockUpd, HTTPStatus: 503, Code: CodeAccountLocked}, true, false, true, 22},
		{"opaque 429 write", &APIError{ProcName: ProcStockUpd, HTTPStatus: 429}, false, false, true, 0},
		{"coded 429 write", &APIError{ProcName: ProcStockUpd, HTTPStatus: 429, Code: CodeQueryFailed}, false, true, false, 43},
		{"html 404 write", &APIError{ProcName: ProcStockUpd, HTTPStatus: 404}, false, false, true, 0},
		{"429 read", &APIError{ProcName: ProcStockRef, HTTPStatus: 429}, false, true, false, 0},
		{"html 404 read", &APIError{ProcName: ProcStockRef, HTTPStatus: 404}, false, true, false, 0},
		{"refused write", &TransportError{ProcName: ProcStockUpd, Err: fmt.Errorf("dial: refused")}, false, true, false, 0},
		{"lost write", &TransportError{ProcName: ProcStockUpd, MaybeSent: true, Err: context.DeadlineExceeded}, false, false, true, 0},
		{"lost read", &TransportError{ProcName: ProcStockRef, MaybeSent: true, Err: context.DeadlineExceeded}, false, true, false, 0},
		{"wrapped lost write", &UpdateError{Batch: 1, Applied: 1, Batches: 3, Err: &TransportError{ProcName: ProcStockUpd, MaybeSent: true, Err: context.DeadlineExceeded}}, false, false, true, 0},
		{"wrapped config", fmt.Errorf("ctx: %w", &APIError{ProcName: ProcStockRef, HTTPStatus: 400, Code: CodeIPNotAllowed}), true, false, false, 24},
		{"plain", fmt.Errorf("other"), false, false, false, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := IsConfigError(c.err); got != c.config {
				t.Errorf("IsConfigError = %v, want %v", got, c.config)
			}
			if got := IsTransient(c.err); got != c.transient {
				t.Errorf("IsTransient = %v, want %v", got, c.transient)
			}
			if got := IsAmbiguous(c.err); got != c.ambiguous {
				t.Errorf("IsAmbiguous = %v, want %v", got, c.ambiguous)
			}
			code, ok := ErrorCode(c.err)
			if code != c.code || ok != (c.code != 0) {
				t.Errorf("ErrorCode = %d,%v, want %d", code, ok, c.code)
			}
		})
	}
}

func TestAPIErrorText(t *testing.T) {
	e := &APIError{ProcName: ProcStockRef, HTTPStatus: 400, Code: CodeFunctionDisabled, Message: "disabled"}
	want := "smaregi stock_ref: HTTP 400 Bad Request, error_code 23 (function disabled in Smaregi's API settings): disabled"
	if e.Error() != want {
		t.Fatalf("Error() = %q, want %q", e.Error(), want)
	}
}
