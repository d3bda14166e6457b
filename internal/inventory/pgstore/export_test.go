package pgstore

// PruneAdjustmentsSQL lets the external tests EXPLAIN the retention query.
const PruneAdjustmentsSQL = pruneAdjustmentsSQL
