package worker

import (
	"context"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"

	"github.com/parkd/parkd/repo"
)

// Relay hands outbox rows to Redis when the fast path right after commit did not
// (the process died in between, or Redis was unreachable). It is a small loop;
// several relays may run at once (rows are claimed with SKIP LOCKED).
type Relay struct {
	Observer Observer // nil observes nothing
	Store    *repo.Store
	Client   *asynq.Client
	Log      *slog.Logger
	Interval time.Duration   // how often to look; default 1s
	MinAge   time.Duration   // leave younger rows to the fast path; default RelayMinAge
	Batch    int             // default 200
	Clock    clockwork.Clock // ticks the loop; nil is the real clock
}

// RelayMinAge is the age of the youngest outbox rows a relay takes by
// default: younger ones are still being handed over by the fast path
// (Handlers.handOver, whose rows are deleted within OutboxSweep).
const RelayMinAge = 5 * time.Second

// RunOnce relays one batch and returns how many tasks it handed over.
func (r *Relay) RunOnce(ctx context.Context) (int, error) {
	minAge, batch := r.MinAge, r.Batch
	if minAge == 0 {
		minAge = RelayMinAge
	}
	if batch == 0 {
		batch = 200
	}
	n := 0
	err := r.Store.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		n = 0
		rows, err := repo.ClaimOutbox(ctx, tx, minAge, batch)
		if err != nil {
			return err
		}
		ids := make([]int64, 0, len(rows))
		for i := range rows {
			if err := enqueueOutbox(ctx, r.Client, &rows[i]); err != nil {
				// Keep what was handed over so far; the rest waits for the next round.
				break
			}
			ids = append(ids, rows[i].ID)
		}
		n = len(ids)
		return repo.DeleteOutbox(ctx, tx, ids...)
	})
	return n, err
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) {
	every := r.Interval
	if every == 0 {
		every = time.Second
	}
	t := orReal(r.Clock).NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Chan():
		}
		n, err := r.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			r.Log.Warn("outbox relay", "err", err)
		} else if n > 0 {
			r.Log.Info("outbox relayed", "tasks", n)
			if r.Observer != nil {
				r.Observer.OutboxRelayed(n)
			}
		}
	}
}
