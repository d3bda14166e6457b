// Package inventory defines the operator's data store: the mirror of each
// shop's stock, the record of accepted sends (for dedupe and audit) and the
// dirty marks that wake the sync engine. Kubernetes holds configuration and
// status; this store holds the data (design principle 4).
//
// Two backends implement Store: boltstore (an embedded file; the default, for
// a single replica) and pgstore (PostgreSQL, for several replicas). Open picks
// one from a URL. Backends register themselves when their package is linked
// in, like database/sql drivers, because they import this package for its
// types and so cannot be imported by it:
//
//	import (
//		_ "github.com/stocksync/smaregi-operator/internal/inventory/boltstore"
//		_ "github.com/stocksync/smaregi-operator/internal/inventory/pgstore"
//	)
//	st, err := inventory.Open(ctx, "bolt:///var/lib/smaregi-operator/inventory.db")
//
// Adjustments (changes from other channels, pushed to Smaregi exactly once)
// are the AdjustmentStore method set, embedded in Store (adjustments.go).
package inventory

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// StoreKey names a SmaregiStore object.
type StoreKey struct {
	Namespace string
	Name      string
}

func (k StoreKey) String() string { return k.Namespace + "/" + k.Name }

// CompareStoreKeys orders keys by namespace, then name, in byte order: the
// order of Store.Stores.
func CompareStoreKeys(a, b StoreKey) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// ParseStoreKey is the inverse of StoreKey.String. Kubernetes namespaces and
// names never contain a slash, so the first slash splits them.
func ParseStoreKey(s string) (StoreKey, error) {
	ns, name, ok := strings.Cut(s, "/")
	if !ok || ns == "" || name == "" {
		return StoreKey{}, fmt.Errorf("inventory: malformed store key %q", s)
	}
	return StoreKey{Namespace: ns, Name: name}, nil
}

// Row is one product's stock in one shop, as Smaregi's stock_ref reports it.
type Row struct {
	ProductID          string
	StockAmount        int64
	LayawayStockAmount int64
	UpdDateTime        time.Time
}

// Normalize returns the row as every backend stores it: the time in UTC and
// truncated to microseconds, PostgreSQL's resolution, so that both backends
// compare rows identically (Smaregi's own times are whole seconds).
func (r Row) Normalize() Row {
	r.UpdDateTime = NormalizeTime(r.UpdDateTime)
	return r
}

// NormalizeTime is the time normalisation Row.Normalize applies.
func NormalizeTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// SameLevel reports whether two rows carry the same values, which is what
// decides "changed" in ApplyPull and drift in a full sync.
func (r Row) SameLevel(o Row) bool {
	return r.StockAmount == o.StockAmount && r.LayawayStockAmount == o.LayawayStockAmount &&
		NormalizeTime(r.UpdDateTime).Equal(NormalizeTime(o.UpdDateTime))
}

// Summary is what the controller copies into a SmaregiStore's status.
type Summary struct {
	SKUs int64
	// Watermark is the newest updDateTime seen from Smaregi (never the local
	// clock); zero before the first pull.
	Watermark time.Time
	// LastPull and LastFullSync are local times of the last ApplyPull and of
	// the last committed full sync; zero if never.
	LastPull     time.Time
	LastFullSync time.Time
	// LastDrift is the number of drifted rows the last full sync corrected
	// (Drift.Total).
	LastDrift int64
}

// DriftKind says how a drifted mirror row differed from Smaregi in a full
// sync.
type DriftKind string

const (
	DriftChanged DriftKind = "changed"
	DriftAdded   DriftKind = "added"   // in Smaregi, missing from the mirror
	DriftRemoved DriftKind = "removed" // in the mirror, missing from Smaregi
)

// DriftSampleSize bounds Drift.Sample.
const DriftSampleSize = 20

// DriftEntry is one drifted row. Before is zero for DriftAdded, After is zero
// for DriftRemoved.
type DriftEntry struct {
	ProductID string
	Kind      DriftKind
	Before    Row
	After     Row
}

// Drift is what a full sync found and corrected: the rows no send or pull had
// brought in. A listed row that differs from the mirror (changed or added)
// counts only if its UpdDateTime is not newer than the store's watermark as
// it was when BeginFullSync ran. A newer one changed after the last pull (a
// sale since then, or during the listing's pages): the next pull would have
// brought it, so it is news, not drift; the commit writes it all the same. A
// row missing from the listing always counts (removed).
type Drift struct {
	Changed, Added, Removed int
	// SKUs is the number of rows in the mirror after the commit.
	SKUs int64
	// Sample holds the drifted rows with the smallest product IDs (byte
	// order), at most DriftSampleSize of them.
	Sample []DriftEntry
}

// Total is the number of drifted rows.
func (d Drift) Total() int { return d.Changed + d.Added + d.Removed }

// Count records one difference a full sync found between the listing and
// the mirror: unless it is news (its listed row changed after since, the
// store's watermark when the sync began), it is counted by its kind and
// offered to the sample. It reports whether it counted. The one place of
// the rule above, for every backend.
func (d *Drift) Count(e DriftEntry, since time.Time) bool {
	if e.Kind != DriftRemoved && e.After.UpdDateTime.After(since) {
		return false
	}
	switch e.Kind {
	case DriftChanged:
		d.Changed++
	case DriftAdded:
		d.Added++
	default:
		d.Removed++
	}
	d.AddSample(e)
	return true
}

// AddSample offers an entry to the bounded sample; backends that discover
// drift in arbitrary order use it to keep the smallest product IDs.
func (d *Drift) AddSample(e DriftEntry) {
	if len(d.Sample) == DriftSampleSize && e.ProductID >= d.Sample[len(d.Sample)-1].ProductID {
		return
	}
	i := sort.Search(len(d.Sample), func(i int) bool { return d.Sample[i].ProductID > e.ProductID })
	d.Sample = append(d.Sample, DriftEntry{})
	copy(d.Sample[i+1:], d.Sample[i:])
	d.Sample[i] = e
	if len(d.Sample) > DriftSampleSize {
		d.Sample = d.Sample[:DriftSampleSize]
	}
}

// SendRecord is one send accepted from Smaregi's API送信.
type SendRecord struct {
	// ID is the dedupe key: a hash of the send's content, chosen by the
	// receiver.
	ID         string
	Namespace  string
	ProcName   string
	Targets    []StoreKey
	Rows       int
	ReceivedAt time.Time
}

// DirtyMark says a store needs a pull. Seq grows with every mark; a puller
// passes the Seq it saw to ClearDirty so that a mark made during its pull
// survives.
type DirtyMark struct {
	Key StoreKey
	Seq uint64
}

// FullSync stages a complete listing of a store's stock and then replaces the
// mirror with it atomically. Rows may arrive in any order and a product may
// appear more than once (paging by updDateTime while the shop sells can do
// that): the row with the newest UpdDateTime wins, the later Add on a tie.
// Rows an ApplyPull brings while the sync is open are staged too, so a commit
// never regresses a row fetched after the snapshot's page was read.
//
// BeginFullSync notes the store's watermark: Commit counts as drift only the
// rows that differ although no newer than it (see Drift).
//
// Only one full sync per store is open at a time: BeginFullSync supersedes an
// earlier one, whose Add and Commit then fail with ErrSuperseded.
type FullSync interface {
	Add(ctx context.Context, rows []Row) error
	// Commit replaces the mirror with the staged rows, advances the watermark
	// (only forward) and reports the drift, all in one transaction. Every
	// difference is written; only drift (see Drift) is counted and sampled.
	Commit(ctx context.Context, watermark time.Time) (Drift, error)
	// Abort discards the staged rows and leaves the mirror untouched. It is a
	// no-op after Commit, so `defer fs.Abort()` is the intended use.
	Abort() error
}

// Store is the inventory store. All methods are safe for concurrent use.
type Store interface {
	// ApplyPull upserts rows from an incremental pull and advances the
	// store's watermark (only forward), atomically. A row is written only if
	// it differs; the count of rows written is returned.
	ApplyPull(ctx context.Context, key StoreKey, rows []Row, watermark time.Time) (changed int, err error)
	BeginFullSync(ctx context.Context, key StoreKey) (FullSync, error)
	// Rows calls fn for each mirror row in product ID byte order. fn must not
	// call back into the Store, and it runs inside one read (a bbolt read
	// transaction, which a writer growing the file must wait for; a
	// PostgreSQL pool connection): it must be quick. A consumer that may
	// stall, such as a network client, uses RowsPage.
	Rows(ctx context.Context, key StoreKey, fn func(Row) error) error
	// RowsPage returns up to limit mirror rows whose product IDs come
	// strictly after afterProductID in byte order ("" starts at the first
	// row), in that order; fewer than limit means the listing is done. Each
	// call is one short read of its own and holds nothing once it returns,
	// so a caller may do slow work (write to a network client) between
	// pages without holding back writers, as it would inside Rows' fn. Pages
	// of one listing may come from different points in time. limit must be
	// positive.
	RowsPage(ctx context.Context, key StoreKey, afterProductID string, limit int) ([]Row, error)
	Row(ctx context.Context, key StoreKey, productID string) (Row, bool, error)
	Summary(ctx context.Context, key StoreKey) (Summary, error)
	// DeleteStore removes the store's mirror, summary, dirty mark,
	// adjustments, push attempts, change log and safety stock.
	DeleteStore(ctx context.Context, key StoreKey) error
	// Stores lists, sorted by namespace then name (byte order), every store
	// the inventory holds data for: a mirror summary or rows, a dirty mark,
	// or adjustments and push attempts; what DeleteStore would remove. The
	// sync engine compares it with the SmaregiStore objects to remove the
	// data of stores deleted while no operator watched. Send records are
	// not per-store data (retention removes them) and do not count.
	Stores(ctx context.Context) ([]StoreKey, error)

	// RecordSend durably records an accepted send and marks its targets dirty
	// in the same commit; it returns only once that commit is on disk.
	// Concurrent calls share commits. A send whose ID is already recorded is
	// a duplicate: nothing is written and no store is marked.
	RecordSend(ctx context.Context, rec SendRecord) (duplicate bool, err error)
	// RecentSends returns up to limit records, newest ReceivedAt first.
	RecentSends(ctx context.Context, limit int) ([]SendRecord, error)

	// Dirty lists the stores marked dirty.
	Dirty(ctx context.Context) ([]DirtyMark, error)
	// ClearDirty removes the store's mark if its Seq is not newer than upTo,
	// and reports whether it did.
	ClearDirty(ctx context.Context, key StoreKey, upTo uint64) (cleared bool, err error)
	// Subscribe delivers the keys of stores marked dirty from now on (by any
	// replica, on PostgreSQL) until ctx ends, when the channel is closed. A
	// slow reader never blocks writers: undelivered keys coalesce, so a key
	// is delivered at least once after each marking but maybe not once per
	// marking.
	Subscribe(ctx context.Context) <-chan StoreKey

	AdjustmentStore
	// PoolOrderStore keeps StockPool orders (pools.go).
	PoolOrderStore
	// VersionStore is the change log channels watch (versions.go).
	VersionStore
	// SafetyStockStore holds the units held back per product
	// (safetystock.go).
	SafetyStockStore

	Close() error
}

// ErrSuperseded is returned by a FullSync that a later BeginFullSync of the
// same store replaced.
var ErrSuperseded = errors.New("inventory: full sync superseded by a newer one for the same store")

// ErrClosed is returned by a Store used after Close.
var ErrClosed = errors.New("inventory: store closed")

// Opener opens a backend from a parsed URL.
type Opener func(ctx context.Context, u *url.URL) (Store, error)

var (
	backendsMu sync.RWMutex
	backends   = map[string]Opener{}
)

// Register makes a backend available to Open under a URL scheme. Backends
// call it from init.
func Register(scheme string, open Opener) {
	backendsMu.Lock()
	defer backendsMu.Unlock()
	if _, dup := backends[scheme]; dup {
		panic("inventory: backend registered twice for scheme " + scheme)
	}
	backends[scheme] = open
}

// Open opens the store the URL names: bolt:///path/to/file.db or
// postgres://user:pass@host/db (postgresql:// too).
func Open(ctx context.Context, rawURL string) (Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse echoes the input, which may hold a password.
		return nil, fmt.Errorf("inventory: parsing store URL %s: malformed URL", RedactURL(rawURL))
	}
	backendsMu.RLock()
	open, ok := backends[u.Scheme]
	backendsMu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("inventory: no backend for scheme %q in %s (want bolt:// or postgres://; is the backend package linked in?)", u.Scheme, u.Redacted())
	}
	return open(ctx, u)
}

// RedactURL hides the password of a URL-form DSN for logs and errors. Input
// that does not parse as a URL is replaced entirely, since it may be a
// key=value DSN with a password in it.
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "<unparsable DSN redacted>"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// LatestPerProduct normalises rows and keeps one per product ID: the newest
// UpdDateTime, the later one in the slice on a tie. Both backends apply it to
// a batch before writing, so a product listed twice counts once. A row without
// a product ID is an error.
func LatestPerProduct(rows []Row) ([]Row, error) {
	out := make([]Row, 0, len(rows))
	idx := make(map[string]int, len(rows))
	for _, r := range rows {
		if r.ProductID == "" {
			return nil, errors.New("inventory: row without a product ID")
		}
		r = r.Normalize()
		if i, ok := idx[r.ProductID]; ok {
			if !r.UpdDateTime.Before(out[i].UpdDateTime) {
				out[i] = r
			}
			continue
		}
		idx[r.ProductID] = len(out)
		out = append(out, r)
	}
	return out, nil
}
