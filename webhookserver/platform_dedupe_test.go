package webhookserver

import (
	"fmt"
	"testing"
	"time"
)

// The set forgets the oldest event when full and every event after its TTL,
// so a flood of distinct event IDs never grows it beyond its limit.
func TestEventSetIsBoundedInSizeAndTime(t *testing.T) {
	const limit = 4
	e := newEventSet(limit, time.Minute)
	key := func(i int) [32]byte { return platformEventKey("C", fmt.Sprint(i)) }
	for i := 0; i < 1000; i++ {
		e.add(key(i), testNow)
		if e.len() > limit {
			t.Fatalf("after %d adds the set holds %d, limit %d", i+1, e.len(), limit)
		}
	}
	for i := 996; i < 1000; i++ {
		if !e.contains(key(i), testNow) {
			t.Errorf("newest event %d forgotten", i)
		}
	}
	if e.contains(key(995), testNow) {
		t.Error("an event beyond the limit is still remembered")
	}
	if e.contains(key(999), testNow.Add(time.Minute)) {
		t.Error("an event is remembered after its TTL")
	}
	// Re-adding an expired event keeps it, even when its old slot is
	// evicted later.
	later := testNow.Add(2 * time.Minute)
	e.add(key(999), later)
	e.add(key(2000), later)
	if !e.contains(key(999), later) || !e.contains(key(2000), later) {
		t.Error("re-added or new events missing")
	}
	if e.len() != 2 {
		t.Errorf("expired entries kept: %d remembered, want 2", e.len())
	}
}
