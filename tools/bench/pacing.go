package bench

import (
	"context"
	"math"
	"time"
)

// Schedule spreads arrivals evenly over time: arrival i is due at
// Start + i/Rate. Open-loop phases send on this schedule whatever the server
// does, and time each request from its due instant (wrk2's approach), so that
// a server that stalls is charged for every request it held up, not only for
// the one it was serving.
type Schedule struct {
	Start time.Time
	Rate  float64 // arrivals per second, > 0
}

// At is the instant arrival i is due. It is computed from i, never by adding
// intervals up, so that rounding does not drift over a long phase.
func (s Schedule) At(i int64) time.Time {
	return s.Start.Add(time.Duration(float64(i) * float64(time.Second) / s.Rate))
}

// Count is the number of arrivals due in [Start, Start+d).
func (s Schedule) Count(d time.Duration) int64 {
	if d <= 0 || s.Rate <= 0 {
		return 0
	}
	// The epsilon keeps an exact product (2 s at 500/s) from rounding up to an
	// arrival due at the very end of the window, which belongs to the next one.
	return int64(math.Ceil(d.Seconds()*s.Rate - 1e-9))
}

// Interval is the time between two arrivals.
func (s Schedule) Interval() time.Duration {
	return time.Duration(float64(time.Second) / s.Rate)
}

// arrival is one due request of an open-loop phase.
type arrival struct {
	i   int64
	due time.Time
}

// pace sends the arrivals due in [s.Start, s.Start+d) to out, each at its due
// instant, then closes out. When the consumers fall behind, out fills and pace
// blocks; the arrivals it then sends late keep their due instants, so the
// lateness shows in the latencies instead of vanishing.
func pace(ctx context.Context, s Schedule, d time.Duration, out chan<- arrival) {
	defer close(out)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	n := s.Count(d)
	for i := range n {
		due := s.At(i)
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		select {
		case out <- arrival{i: i, due: due}:
		case <-ctx.Done():
			return
		}
	}
}
