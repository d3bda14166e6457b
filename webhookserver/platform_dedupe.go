package webhookserver

import (
	"crypto/sha256"
	"sync"
	"time"
)

// Defaults of the Platform webhook dedupe set.
const (
	// DefaultPlatformDedupeSize bounds the event IDs remembered: about
	// 100 bytes each, so under 2 MiB however many events arrive.
	DefaultPlatformDedupeSize = 16_384
	// DefaultPlatformDedupeTTL is how long an event ID is remembered.
	// Duplicates seen in practice follow within seconds; a later one that
	// slips through only costs one more durable record, which the
	// inventory dedupes by ID anyway.
	DefaultPlatformDedupeTTL = time.Hour
)

// eventSet remembers recently accepted webhook events by a digest of
// contract and Smaregi-Event-Id, for at most ttl and at most limit of them:
// the oldest is forgotten first, so a flood of distinct IDs costs a fixed
// amount of memory and merely shortens how long each is remembered. It is
// the cheap first line; the durable dedupe is the send ID in the inventory.
type eventSet struct {
	ttl   time.Duration
	limit int

	mu   sync.Mutex
	seen map[[sha256.Size]byte]time.Time
	// ring holds the entries in insertion order; head is the oldest.
	ring []eventEntry
	head int
	n    int
}

type eventEntry struct {
	key [sha256.Size]byte
	at  time.Time
}

func newEventSet(limit int, ttl time.Duration) *eventSet {
	return &eventSet{ttl: ttl, limit: limit, seen: make(map[[sha256.Size]byte]time.Time), ring: make([]eventEntry, limit)}
}

// contains reports whether key was added less than ttl before now.
func (e *eventSet) contains(key [sha256.Size]byte, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	at, ok := e.seen[key]
	return ok && now.Sub(at) < e.ttl
}

// add remembers key at now, forgetting expired entries and, when full, the
// oldest.
func (e *eventSet) add(key [sha256.Size]byte, now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for e.n > 0 && (e.n == e.limit || now.Sub(e.ring[e.head].at) >= e.ttl) {
		old := e.ring[e.head]
		// The key may have been added again since (after it expired): only
		// the entry that is still current removes it.
		if at, ok := e.seen[old.key]; ok && at.Equal(old.at) {
			delete(e.seen, old.key)
		}
		e.ring[e.head] = eventEntry{}
		e.head = (e.head + 1) % e.limit
		e.n--
	}
	e.seen[key] = now
	e.ring[(e.head+e.n)%e.limit] = eventEntry{key: key, at: now}
	e.n++
}

// len returns how many event IDs are remembered (for tests).
func (e *eventSet) len() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen)
}
