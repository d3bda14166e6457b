package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/stocksync/smaregi-operator/internal/smaregi"
	"github.com/stocksync/smaregi-operator/internal/storeaccess"
)

// SmaregiChecker is the production CredentialChecker: a one-row stock
// listing through the store's backend, whichever API it speaks. Backends are
// cheap (they share one connection pool and, for the Platform API, one token
// cache), so one is built per check from the current credentials; the
// limiters are shared with the sync engine so that checks count against the
// same per-contract budget as pulls.
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

// errFirstPage stops a stock stream after its first page.
var errFirstPage = errors.New("first page read")

// CheckCredentials implements CredentialChecker with a one-row stock listing
// of the store. The legacy API has no store list among the functions a shop
// enables (only stock_ref and stock_upd), and the Platform app is not
// given pos.stores:read, so whether Smaregi holds stock rows for the store
// ID is all it can tell about the store's existence. For a Platform store
// the listing also proves the token request (client credentials, the app
// installed for the contract, the scopes).
func (c *SmaregiChecker) CheckCredentials(ctx context.Context, t storeaccess.Target) (bool, error) {
	cl, err := c.Clients.Backend(t, storeaccess.Tune{MaxReadAttempts: checkAttempts, RequestTimeout: checkRequestTimeout, PageSize: 1})
	if err != nil {
		return false, err // never carries the token
	}
	var rows bool
	err = cl.ListStock(ctx, smaregi.StockQuery{StoreID: t.StoreID}, func(page []smaregi.StockRow) error {
		rows = rows || len(page) > 0
		return errFirstPage
	})
	if err != nil && !errors.Is(err, errFirstPage) {
		return false, fmt.Errorf("check credentials for store %s: %w", t.StoreID, err)
	}
	return rows, nil
}
