package pgstore

import (
	"context"
	"time"
)

// PruneAdjustmentsSQL lets the external tests EXPLAIN the retention query.
const PruneAdjustmentsSQL = pruneAdjustmentsSQL

// SetListenHooks makes the first Subscribe wait at most wait for LISTEN, and
// runs before ahead of every LISTEN connect. Call it before any Subscribe.
func SetListenHooks(s *Store, wait time.Duration, before func(context.Context) error) {
	s.listenWait, s.beforeListen = wait, before
}
