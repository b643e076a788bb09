package load

import (
	"context"
	"time"
)

// The virtual users of a load: each owns a share of the permits, and pauses
// when a request failed.

// ErrorPause keeps a virtual user whose request failed from spinning: a
// closed loop would otherwise turn a failing server into a flood of fast
// errors and count them as its throughput.
const ErrorPause = 20 * time.Millisecond

// Partition deals the residents out to n users, each its own disjoint share, so
// that no two users ever touch one permit.
func Partition(rs []Resident, n int) [][]Resident {
	n = max(1, min(n, len(rs)))
	out := make([][]Resident, n)
	for i, r := range rs {
		out[i%n] = append(out[i%n], r)
	}
	return out
}

// SleepCtx sleeps for d; false when ctx ended first.
func SleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
