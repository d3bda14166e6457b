package smaregi

import (
	"errors"
	"fmt"
	"testing"
)

func TestOutcomeOf(t *testing.T) {
	cases := []struct {
		err  error
		want string
	}{
		{nil, OutcomeSuccess},
		{fmt.Errorf("pull: %w", &APIError{ProcName: ProcStockRef, HTTPStatus: 429, Code: 0}), OutcomeThrottled},
		{&APIError{ProcName: ProcStockUpd, HTTPStatus: 429, Code: 43}, OutcomeThrottled},
		{&APIError{ProcName: ProcStockRef, HTTPStatus: 400, Code: CodeInvalidAccessToken}, OutcomeConfigError},
		{&APIError{ProcName: ProcStockRef, HTTPStatus: 503}, OutcomeTransient},
		{&APIError{ProcName: ProcStockUpd, HTTPStatus: 503}, OutcomeAmbiguous},
		{&APIError{ProcName: ProcStockRef, HTTPStatus: 400, Code: CodeInvalidInputData}, OutcomeAPIError},
		{&TransportError{ProcName: ProcStockRef, Err: errors.New("reset")}, OutcomeTransient},
	}
	for _, c := range cases {
		if got := outcomeOf(c.err); got != c.want {
			t.Errorf("outcomeOf(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}
