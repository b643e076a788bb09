package worker

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"

	"github.com/parkd/parkd/repo"
)

// Sequencer numbers committed events and hands their deliveries to Redis
// (repo.SequenceEvents; docs/ARCHITECTURE.md "Events" says why numbers follow
// commit order). Every worker process runs one: passes take a Postgres
// advisory lock, so however many run, one pass runs at a time. It runs a pass
// when kicked (Handlers.EventsWritten, after a transaction that wrote events
// committed) and on every tick, which catches events whose writer's kick went
// to another process or was lost.
type Sequencer struct {
	Store    *repo.Store
	Client   *asynq.Client // nil: the outbox rows wait for the relay
	Log      *slog.Logger
	Interval time.Duration   // the tick; default 250 ms
	Batch    int             // events numbered per pass (one transaction); default 500
	Clock    clockwork.Clock // ticks the loop; nil is the real clock
	// Gap is the least time from the start of one pass to the start of the
	// next (default 100 ms): kicks that come sooner wait for it. A pass costs
	// Postgres about the same whether it numbers 5 events or 500 (its lock,
	// its scan of the unnumbered, its commit), so under load passes that each
	// take what a tenth of a second brought cost a fraction of one per
	// commit; a webhook or feed reader waits at most Gap longer. Measured in
	// docs/BENCHMARKS.md (issue 16): a pass per 2 or 3 commits cost a
	// quarter of Postgres's time.
	Gap time.Duration

	// Passes counts the passes Run began.
	Passes atomic.Int64

	once sync.Once
	kick chan struct{}
}

func (s *Sequencer) init() { s.once.Do(func() { s.kick = make(chan struct{}, 1) }) }

// Kick asks for a pass soon. It never blocks: kicks that come while one is
// waiting are one pass, which numbers what all of them wrote.
func (s *Sequencer) Kick() {
	s.init()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// RunOnce runs passes until one numbers fewer than Batch events, hands each
// pass's deliveries to Redis after its commit, and returns how many events it
// numbered.
func (s *Sequencer) RunOnce(ctx context.Context) (int, error) {
	batch := s.Batch
	if batch <= 0 {
		batch = 500
	}
	total := 0
	for {
		n, rows, err := repo.SequenceEvents(ctx, s.Store.DB, batch)
		if err != nil {
			return total, err
		}
		total += n
		if s.Client != nil && len(rows) > 0 {
			done := enqueueAll(ctx, s.Client, s.logger(), rows)
			// A row left behind is enqueued again by the relay: the task ID
			// makes that harmless.
			if err := repo.DeleteOutbox(context.WithoutCancel(ctx), s.Store.DB, done...); err != nil {
				s.logger().Warn("outbox cleanup failed; the relay will re-enqueue (harmless)", "err", err)
			}
		}
		if n < batch {
			return total, nil
		}
	}
}

// Run runs passes until ctx ends.
func (s *Sequencer) Run(ctx context.Context) {
	s.init()
	every := s.Interval
	if every <= 0 {
		every = 250 * time.Millisecond
	}
	gap := s.Gap
	if gap <= 0 {
		gap = 100 * time.Millisecond
	}
	t := orReal(s.Clock).NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-s.kick:
		}
		// The gap is real time, whatever clock ticks the loop: it paces
		// Postgres's work, not the schedule.
		began := time.Now()
		s.Passes.Add(1)
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.logger().Warn("event sequencer", "err", err)
		}
		// Kicks that came during the pass wait out the gap (one pass takes
		// them all).
		if rest := gap - time.Since(began); rest > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(rest):
			}
		}
	}
}

func (s *Sequencer) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
