package intake

import (
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// The limiter reads its clock, not the wall: a subject's bucket empties after
// its burst, refills at the rate as the clock moves, and is forgotten once it
// was idle long enough to be full again anyway.
func TestLimiterRefillsAsItsClockMoves(t *testing.T) {
	clk := clockwork.NewFakeClockAt(time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC))
	l := newLimiter(2, 3, clk) // 2 a second, bursts of 3
	for i := range 3 {
		if !l.allow("busy") {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.allow("busy") {
		t.Fatal("a fourth request at the same instant was allowed")
	}
	if !l.allow("calm") {
		t.Fatal("another subject shares the busy one's bucket")
	}
	clk.Advance(499 * time.Millisecond)
	if l.allow("busy") {
		t.Fatal("allowed before a token was back (2 a second: one each 500 ms)")
	}
	clk.Advance(time.Millisecond)
	if !l.allow("busy") {
		t.Fatal("refused once a token was back")
	}
	clk.Advance(idleBucket + 2*time.Minute)
	l.allow("sweeper") // the next request sweeps idle buckets
	if _, kept := l.buckets["busy"]; kept {
		t.Fatalf("a bucket idle for %s is still kept", idleBucket+2*time.Minute)
	}
}
