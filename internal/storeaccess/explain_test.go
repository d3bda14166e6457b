package storeaccess

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stocksync/smaregi-operator/api/v1alpha1"
	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/smaregiplatform"
)

func platformErr(e *smaregiplatform.APIError) error { return fmt.Errorf("pull: %w", e) }

func TestExplainIsOneTable(t *testing.T) {
	subject := func(call string) Subject {
		return Subject{Call: call, Endpoint: "https://example.test/access/", ContractID: "sk1", StoreID: "1",
			Credentials: CredentialsRef{Namespace: "shop", Secret: "shop-token", Key: "accessToken"}}
	}
	coded := func(call string, status, code int) error {
		return fmt.Errorf("pull: %w", &smaregi.APIError{ProcName: call, HTTPStatus: status, Code: code})
	}
	cases := []struct {
		name       string
		err        error
		call       string
		reason     string
		config     bool
		authFailed bool
		transient  bool
		hints      []string
	}{
		{"13", coded("stock_ref", 400, 13), "stock_ref", v1alpha1.ReasonInvalidAccessToken, true, true, false, []string{"アクセストークン", `"shop-token"`, `"accessToken"`, "API受信設定"}},
		{"21", coded("stock_ref", 400, 21), "stock_ref", v1alpha1.ReasonInvalidAccessToken, true, true, false, []string{"error_code 21"}},
		{"14", coded("stock_ref", 400, 14), "stock_ref", v1alpha1.ReasonInvalidContractID, true, true, false, []string{"契約ID", "immutable"}},
		{"22", coded("stock_ref", 400, 22), "stock_ref", v1alpha1.ReasonAccountLocked, true, false, false, []string{"locked"}},
		{"23 stock_ref", coded("stock_ref", 400, 23), "stock_ref", v1alpha1.ReasonFunctionDisabled, true, false, false, []string{"在庫情報参照 (stock_ref)", "機能設定", "15 在庫情報参照", "4 在庫情報更新", "利用する"}},
		{"23 stock_upd", coded("stock_upd", 400, 23), "stock_upd", v1alpha1.ReasonFunctionDisabled, true, false, false, []string{"在庫情報更新 (stock_upd)"}},
		{"23 product_ref", coded("product_ref", 400, 23), "product_ref", v1alpha1.ReasonFunctionDisabled, true, false, false, []string{"商品情報参照"}},
		{"24", coded("stock_ref", 400, 24), "stock_ref", v1alpha1.ReasonIPNotAllowed, true, false, false, []string{"IP"}},
		{"5xx", coded("stock_ref", 503, 0), "stock_ref", v1alpha1.ReasonUnreachable, false, false, true, []string{"https://example.test/access/"}},
		{"dial", &smaregi.TransportError{ProcName: "stock_ref", Err: errors.New("connection refused")}, "stock_ref", v1alpha1.ReasonUnreachable, false, false, true, []string{"connection refused"}},
		{"deadline", context.DeadlineExceeded, "stock_ref", v1alpha1.ReasonUnreachable, false, false, true, nil},
		{"43", coded("stock_ref", 400, 43), "stock_ref", v1alpha1.ReasonSmaregiError, false, false, false, []string{"error_code 43"}},
		{"platform invalid_client", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallToken, HTTPStatus: 401, Problem: true, OAuthError: "invalid_client"}),
			smaregiplatform.CallStockList, v1alpha1.ReasonInvalidClient, true, true, false, []string{"developer console", `"shop-token"`, "clientSecret", `"sk1"`}},
		{"platform 401 after refresh", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallStockAdd, HTTPStatus: 401, Problem: true, Refreshed: true}),
			smaregiplatform.CallStockAdd, v1alpha1.ReasonInvalidClient, true, true, false, []string{"client ID"}},
		{"platform not installed", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallToken, HTTPStatus: 400, Problem: true, OAuthError: "unauthorized_client"}),
			smaregiplatform.CallStockList, v1alpha1.ReasonAppNotInstalled, true, true, false, []string{"not installed", "app settings", "契約ID"}},
		{"platform invalid_scope", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallToken, HTTPStatus: 400, Problem: true, OAuthError: "invalid_scope"}),
			smaregiplatform.CallToken, v1alpha1.ReasonMissingScope, true, true, false, []string{"pos.stock-changes:read", "developer console"}},
		{"platform 403", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallProductList, HTTPStatus: 403, Problem: true}),
			smaregiplatform.CallProductList, v1alpha1.ReasonMissingScope, true, true, false, []string{"product lookups (pos.products:read)"}},
		{"platform 429", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallStockList, HTTPStatus: 429, Problem: true}),
			smaregiplatform.CallStockList, v1alpha1.ReasonRateLimited, false, false, true, []string{"429", "per app and contract"}},
		{"platform write 429", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallStockAdd, HTTPStatus: 429}),
			smaregiplatform.CallStockAdd, v1alpha1.ReasonRateLimited, false, false, true, []string{"stock writes"}},
		{"platform 5xx read", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallStockList, HTTPStatus: 503, Problem: true}),
			smaregiplatform.CallStockList, v1alpha1.ReasonUnreachable, false, false, true, nil},
		{"platform 5xx write (ambiguous)", platformErr(&smaregiplatform.APIError{Call: smaregiplatform.CallStockAdd, HTTPStatus: 503, Problem: true}),
			smaregiplatform.CallStockAdd, v1alpha1.ReasonSmaregiError, false, false, false, []string{"503"}},
		{"platform dial", &smaregiplatform.TransportError{Call: smaregiplatform.CallStockList, Err: errors.New("connection refused")},
			smaregiplatform.CallStockList, v1alpha1.ReasonUnreachable, false, false, true, []string{"connection refused"}},
		{"secret", &ConfigError{Reason: v1alpha1.ReasonSecretNotFound, Message: "create it"}, "stock_ref", v1alpha1.ReasonSecretNotFound, true, false, false, []string{"create it"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Explain(c.err, subject(c.call))
			if d.Reason != c.reason || d.Config != c.config || d.AuthFailed != c.authFailed || d.Transient != c.transient {
				t.Errorf("Explain = %+v; want reason %s config %v authFailed %v transient %v", d, c.reason, c.config, c.authFailed, c.transient)
			}
			for _, h := range c.hints {
				if !strings.Contains(d.Message, h) {
					t.Errorf("message %q lacks %q", d.Message, h)
				}
			}
		})
	}
	// Every configuration code of the legacy client has a row of its own,
	// and so has every Platform cause.
	for code := 1; code < 100; code++ {
		err := &smaregi.APIError{ProcName: "stock_ref", HTTPStatus: 400, Code: code}
		if _, ok := causeTable[legacyCause(code)]; smaregi.IsConfigError(err) && !ok {
			t.Errorf("configuration code %d has no row in the table", code)
		}
	}
	for _, c := range []string{smaregiplatform.CauseInvalidClient, smaregiplatform.CauseAppNotInstalled,
		smaregiplatform.CauseMissingScope, smaregiplatform.CauseRateLimited} {
		if _, ok := causeTable[platformCause(c)]; !ok {
			t.Errorf("Platform cause %s has no row in the table", c)
		}
	}
}

func TestRefusesStore(t *testing.T) {
	for reason, want := range map[string]bool{
		`smaregi stock_upd: error_code 41: invalid_input_data: row 1: storeId "99" does not exist`:  true,
		`smaregi stock_upd: error_code 41: invalid_input_data: row 1: productId "9" does not exist`: false,
		`smaregi stock_upd: error_code 41: storeId must be an integer`:                              false,
	} {
		if got := RefusesStore(reason); got != want {
			t.Errorf("RefusesStore(%q) = %v, want %v", reason, got, want)
		}
	}
	s := Subject{ContractID: "sk1", StoreID: "99"}
	for _, msg := range []string{NoStockRows(s), UnknownStore(s)} {
		if !strings.Contains(msg, `"99"`) || !strings.Contains(msg, "spec.storeID") {
			t.Errorf("message %q must name the store ID and spec.storeID", msg)
		}
	}
}
