package worker

import (
	"context"
	"log/slog"
	"sync"
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
	t := orReal(s.Clock).NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		case <-s.kick:
		}
		if _, err := s.RunOnce(ctx); err != nil && ctx.Err() == nil {
			s.logger().Warn("event sequencer", "err", err)
		}
	}
}

func (s *Sequencer) logger() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}
