package controllers

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
)

// SmaregiChecker is the production CredentialChecker: a one-row stock_ref
// through an internal/smaregi client. Clients are cheap (they share one
// connection pool), so one is built per check from the current token; the
// LimiterRegistry is shared with the sync engine so that checks count
// against the same per-contract budget as pulls.
type SmaregiChecker struct {
	// Limiters is the process-wide registry; nil means unthrottled.
	Limiters *smaregi.LimiterRegistry
	// HTTPClient, if set, sends the calls (tests, proxies).
	HTTPClient *http.Client
}

// NewSmaregiChecker returns a checker drawing from limiters.
func NewSmaregiChecker(limiters *smaregi.LimiterRegistry) *SmaregiChecker {
	return &SmaregiChecker{Limiters: limiters}
}

// checkAttempts and checkRequestTimeout keep one check short: the
// controller has its own back-off, so the client only smooths over a
// single dropped connection.
const (
	checkAttempts       = 2
	checkRequestTimeout = 10 * time.Second
)

// CheckCredentials implements CredentialChecker.
func (c *SmaregiChecker) CheckCredentials(ctx context.Context, t Target) error {
	cl, err := smaregi.New(smaregi.Options{
		Endpoint:        t.Endpoint,
		ContractID:      t.ContractID,
		AccessToken:     t.AccessToken,
		HTTPClient:      c.HTTPClient,
		Limiters:        c.Limiters,
		MaxReadAttempts: checkAttempts,
		RequestTimeout:  checkRequestTimeout,
	})
	if err != nil {
		// smaregi.New never puts the token in its errors.
		return fmt.Errorf("build Smaregi client: %w", err)
	}
	return cl.CheckCredentials(ctx, t.StoreID)
}
