// Package boltstore is the embedded inventory backend: one bbolt file, no
// set-up, for a single operator replica (bbolt locks the file, so a second
// process cannot open it).
//
// Layout (top-level buckets):
//
//	stores/<ns>\x00<name>/rows/<productID> = 24-byte row (see encodeRow)
//	stores/<ns>\x00<name>  key "meta"       = JSON meta
//	staging/<syncID>/<productID>           = 24-byte row, one bucket per open full sync
//	sends/<id>                             = JSON SendRecord
//	sendsByTime/<8-byte time><id>          = "", the retention index; its bucket
//	                                         sequence holds the record count
//	dirty/<ns>\x00<name>                   = 8-byte mark sequence
//	adjustments/<ns>\x00<name>/…           = adjustments and push attempts (adjustments.go)
//	stores/<ns>\x00<name>/safety/…         = safety stock (safetystock.go)
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stocksync/smaregi-operator/internal/inventory"
	"github.com/stocksync/smaregi-operator/internal/inventory/dirtyfeed"
)

func init() {
	inventory.Register("bolt", func(_ context.Context, u *url.URL) (inventory.Store, error) {
		path := u.Path
		if u.Opaque != "" { // bolt:relative/path.db
			path = u.Opaque
		}
		if path == "" {
			return nil, fmt.Errorf("boltstore: URL %s names no file", u.Redacted())
		}
		return Open(path)
	})
}

var (
	bucketStores      = []byte("stores")
	bucketStaging     = []byte("staging")
	bucketSends       = []byte("sends")
	bucketSendsByTime = []byte("sendsByTime")
	bucketDirty       = []byte("dirty")
	bucketRows        = []byte("rows")
	keyMeta           = []byte("meta")
)

// Options tune a Store; the zero value gives the defaults.
type Options struct {
	// SendRetention is how long send records are kept (default 7 days); a
	// resend older than that is no longer recognised as a duplicate.
	SendRetention time.Duration
	// MaxSends caps the number of send records kept (default 100,000).
	MaxSends int
	// PruneEvery is how often at most the retention is enforced (default 1
	// minute); pruning runs in the background, after a RecordSend.
	PruneEvery time.Duration
	// LockTimeout is how long Open waits for another process to let go of
	// the file (default DefaultLockTimeout).
	LockTimeout time.Duration
}

// DefaultLockTimeout outlasts the Pod's terminationGracePeriodSeconds (60 s
// in the chart and config/manager): when a bolt Pod is deleted, its
// ReplicaSet starts the replacement at once (Recreate orders rollouts only),
// while the old Pod keeps the file through its preStop sleep and drain. By
// the end of the grace period the old process is gone and its lock with it,
// so waiting that long opens the file instead of crash-looping. The
// manifests' startupProbe allows for the wait. A second process that never
// lets go (two replicas on one file) still gets an error, later.
const DefaultLockTimeout = 70 * time.Second

func (o Options) withDefaults() Options {
	if o.SendRetention <= 0 {
		o.SendRetention = 7 * 24 * time.Hour
	}
	if o.MaxSends <= 0 {
		o.MaxSends = 100_000
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Minute
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	return o
}

// Store is the bbolt backend of inventory.Store.
type Store struct {
	db   *bolt.DB
	opts Options
	feed *dirtyfeed.Feed
	// adjFeed wakes the pusher on new adjustments.
	adjFeed *dirtyfeed.Feed
	// verFeed tells watchers of new resource versions (versions.go).
	verFeed *dirtyfeed.Feed
	// group shares the commits of concurrent sends and adjustments.
	group groupCommitter

	closed    atomic.Bool
	pruning   atomic.Bool
	lastPrune atomic.Int64 // unix nanos
	pruneWG   sync.WaitGroup
	// poolLocks serialise pool allocations (pools.go).
	poolLocks inventory.KeyedMutex
}

var _ inventory.Store = (*Store)(nil)

// Open opens (creating if needed) the store file at path with default options.
func Open(path string) (*Store, error) { return OpenWithOptions(path, Options{}) }

// OpenWithOptions opens the store file at path.
func OpenWithOptions(path string, opts Options) (*Store, error) {
	// The default path (/var/lib/smaregi-operator/…) is on an empty volume
	// or a developer's machine: create the directory rather than fail.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("boltstore: creating the directory of %s: %w", path, err)
	}
	opts = opts.withDefaults()
	// The timeout turns "another process holds the file" into an error
	// instead of a hang (DefaultLockTimeout says why it is that long).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("boltstore: opening %s: another process held the file for %s (one replica only on bolt; use PostgreSQL for several): %w", path, opts.LockTimeout, err)
		}
		return nil, fmt.Errorf("boltstore: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketStores, bucketStaging, bucketSends, bucketSendsByTime, bucketDirty, bucketAdjustments, bucketPools} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// Staging buckets left by a process that died mid-sync are garbage:
		// no FullSync handle can refer to them any more.
		return clearBucket(tx, bucketStaging)
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("boltstore: initialising %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts, feed: dirtyfeed.New(), adjFeed: dirtyfeed.New(), verFeed: dirtyfeed.New(),
		group: groupCommitter{db: db}}
	s.lastPrune.Store(time.Now().UnixNano())
	return s, nil
}

func clearBucket(tx *bolt.Tx, name []byte) error {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
		return err
	}
	_, err := tx.CreateBucket(name)
	return err
}

// Close closes the file; it waits for a background prune to finish.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.feed.Close()
	s.adjFeed.Close()
	s.verFeed.Close()
	s.pruneWG.Wait()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("boltstore: closing: %w", err)
	}
	return nil
}

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return inventory.ErrClosed
	}
	return ctx.Err()
}

func storeKeyBytes(k inventory.StoreKey) []byte {
	b := make([]byte, 0, len(k.Namespace)+1+len(k.Name))
	b = append(b, k.Namespace...)
	b = append(b, 0)
	return append(b, k.Name...)
}

func parseStoreKeyBytes(b []byte) inventory.StoreKey {
	ns, name, _ := bytes.Cut(b, []byte{0})
	return inventory.StoreKey{Namespace: string(ns), Name: string(name)}
}

// meta is a store's summary plus the ID of its open full sync (0: none).
type meta struct {
	Watermark    time.Time `json:"watermark"`
	LastPull     time.Time `json:"lastPull"`
	LastFullSync time.Time `json:"lastFullSync"`
	LastDrift    int64     `json:"lastDrift"`
	SKUs         int64     `json:"skus"`
	FullSyncID   uint64    `json:"fullSyncID,omitempty"`
}

func readMeta(b *bolt.Bucket) (meta, error) {
	var m meta
	if b == nil {
		return m, nil
	}
	v := b.Get(keyMeta)
	if v == nil {
		return m, nil
	}
	if err := json.Unmarshal(v, &m); err != nil {
		return m, fmt.Errorf("decoding store meta: %w", err)
	}
	return m, nil
}

func writeMeta(b *bolt.Bucket, m meta) error {
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return b.Put(keyMeta, v)
}

// storeBucket returns the store's bucket and its rows bucket, creating them.
func storeBucket(tx *bolt.Tx, key inventory.StoreKey) (*bolt.Bucket, *bolt.Bucket, error) {
	sb, err := tx.Bucket(bucketStores).CreateBucketIfNotExists(storeKeyBytes(key))
	if err != nil {
		return nil, nil, err
	}
	rb, err := sb.CreateBucketIfNotExists(bucketRows)
	if err != nil {
		return nil, nil, err
	}
	return sb, rb, nil
}

// zeroTimeMicros marks a zero UpdDateTime, which has no Unix time.
const zeroTimeMicros = math.MinInt64

// DeleteStore implements inventory.Store. It removes the store's
// adjustments and push attempts too.
func (s *Store) DeleteStore(ctx context.Context, key inventory.StoreKey) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		sk := storeKeyBytes(key)
		stores := tx.Bucket(bucketStores)
		if sb := stores.Bucket(sk); sb != nil {
			m, err := readMeta(sb)
			if err != nil {
				return err
			}
			if m.FullSyncID != 0 {
				if err := tx.Bucket(bucketStaging).DeleteBucket(u64(m.FullSyncID)); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
					return err
				}
			}
			if err := stores.DeleteBucket(sk); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketAdjustments).DeleteBucket(sk); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
			return err
		}
		if err := deleteVersions(tx, key); err != nil {
			return err
		}
		return tx.Bucket(bucketDirty).Delete(sk)
	})
	if err != nil {
		return fmt.Errorf("boltstore: deleting %s: %w", key, err)
	}
	return nil
}

// Dirty implements inventory.Store.
func (s *Store) Dirty(ctx context.Context) ([]inventory.DirtyMark, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var marks []inventory.DirtyMark
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketDirty).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("corrupt dirty mark %q", k)
			}
			marks = append(marks, inventory.DirtyMark{Key: parseStoreKeyBytes(k), Seq: binary.BigEndian.Uint64(v)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: listing dirty stores: %w", err)
	}
	return marks, nil
}

// ClearDirty implements inventory.Store.
func (s *Store) ClearDirty(ctx context.Context, key inventory.StoreKey, upTo uint64) (bool, error) {
	if err := s.check(ctx); err != nil {
		return false, err
	}
	cleared := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		cleared = false
		b := tx.Bucket(bucketDirty)
		sk := storeKeyBytes(key)
		v := b.Get(sk)
		if len(v) != 8 || binary.BigEndian.Uint64(v) > upTo {
			return nil
		}
		cleared = true
		return b.Delete(sk)
	})
	if err != nil {
		return false, fmt.Errorf("boltstore: clearing dirty mark of %s: %w", key, err)
	}
	return cleared, nil
}

// Subscribe implements inventory.Store. Only this process writes the file,
// so an in-process feed sees every mark.
func (s *Store) Subscribe(ctx context.Context) <-chan inventory.StoreKey {
	return s.feed.Subscribe(ctx)
}
