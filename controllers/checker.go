package controllers

import (
	"context"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// SmaregiChecker is the production CredentialChecker: a one-row stock_ref
// through an internal/smaregi client. Clients are cheap (they share one
// connection pool), so one is built per check from the current token; the
// LimiterRegistry is shared with the sync engine so that checks count
// against the same per-contract budget as pulls.
type SmaregiChecker struct {
	// Clients builds the clients, from the process's one limiter registry.
	Clients *storeaccess.Clients
}

// NewSmaregiChecker returns a checker building its clients with clients.
func NewSmaregiChecker(clients *storeaccess.Clients) *SmaregiChecker {
	return &SmaregiChecker{Clients: clients}
}

// checkAttempts and checkRequestTimeout keep one check short: the
// controller has its own back-off, so the client only smooths over a
// single dropped connection.
const (
	checkAttempts       = 2
	checkRequestTimeout = 10 * time.Second
)

// CheckCredentials implements CredentialChecker.
func (c *SmaregiChecker) CheckCredentials(ctx context.Context, t storeaccess.Target) error {
	cl, err := c.Clients.Client(t, smaregi.Options{MaxReadAttempts: checkAttempts, RequestTimeout: checkRequestTimeout})
	if err != nil {
		return err // never carries the token
	}
	return cl.CheckCredentials(ctx, t.StoreID)
}
