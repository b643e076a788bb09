package intake

import (
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"golang.org/x/time/rate"
)

// limiter is a token bucket per subject, in memory: each intake process limits
// on its own, which is enough to stop one runaway client from starving others
// (a fleet-wide quota would need Redis, and is not what this is for).
type limiter struct {
	rate  rate.Limit
	burst int
	clock clockwork.Clock

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

// idleBucket is how long a bucket is kept after its subject's last request; a
// bucket idle that long is full again anyway.
const idleBucket = 10 * time.Minute

func newLimiter(r rate.Limit, burst int, clock clockwork.Clock) *limiter {
	return &limiter{rate: r, burst: burst, clock: clock, buckets: map[string]*bucket{}}
}

func (l *limiter) allow(subject string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if now.Sub(l.lastSweep) > time.Minute {
		for k, b := range l.buckets {
			if now.Sub(b.seen) > idleBucket {
				delete(l.buckets, k)
			}
		}
		l.lastSweep = now
	}
	b := l.buckets[subject]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(l.rate, l.burst)}
		l.buckets[subject] = b
	}
	b.seen = now
	return b.l.AllowN(now, 1)
}
