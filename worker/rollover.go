package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// PermitRollover handles permit:rollover: every active permit whose year ended by
// now gets its annual statement and a new year. It is idempotent (a second run
// finds nothing due) and safe to run several times at once.
func (h *Handlers) PermitRollover(ctx context.Context, t *asynq.Task) error {
	var p jobs.PermitRollover
	// An operator may enqueue it by hand without a payload: the day is only a label.
	if len(t.Payload()) > 0 {
		if err := decode(t, &p); err != nil {
			return err
		}
	}
	res, err := h.Rollover(ctx)
	if err != nil {
		return err
	}
	log := h.logger(ctx).With("day", p.Day, "years_closed", res.Years, "statements", res.Statements)
	switch {
	case res.Left > 0:
		log.Warn("permit rollover done; some permits were held by other transactions", "left", res.Left)
	case res.Years > 0:
		log.Info("permit rollover done")
	}
	return nil
}

// Rollover closes every permit year that ended at or before the handlers' clock
// (read once: a run rolls up to the instant it started), in set-based batches.
func (h *Handlers) Rollover(ctx context.Context) (repo.RolloverResult, error) {
	res, err := repo.RollOver(ctx, h.Store.DB, h.now(), repo.RolloverBatch)
	if err != nil {
		return res, fmt.Errorf("permit rollover: %w", err)
	}
	return res, nil
}

// RolloverSyncInterval is how often a rollover scheduler renews its entry (see
// RolloverSchedule): far more often than the hour between runs.
const RolloverSyncInterval = time.Minute

// RolloverSchedule is the asynq.PeriodicTaskConfigProvider of permit:rollover.
// asynq's Scheduler enqueues one fixed task per entry, but each period's
// rollover needs its own task ID (jobs.RolloverTaskID); the PeriodicTaskManager
// asks this provider every RolloverSyncInterval and re-registers the entry when
// the period (and so the task) changed, half an hour away from any run.
type RolloverSchedule struct {
	Cronspec string          // jobs.RolloverCronspec when empty
	Clock    clockwork.Clock // the real clock when nil
	Sync     time.Duration   // RolloverSyncInterval when zero
}

// GetConfigs implements asynq.PeriodicTaskConfigProvider.
func (s RolloverSchedule) GetConfigs() ([]*asynq.PeriodicTaskConfig, error) {
	spec := s.Cronspec
	if spec == "" {
		spec = jobs.RolloverCronspec
	}
	t := orReal(s.Clock).Now()
	// The task ID is repeated as an enqueue option because the manager tells
	// configs apart by cronspec, type, payload and these options only: the ID
	// inside the task would not make a new hour a new entry.
	return []*asynq.PeriodicTaskConfig{{Cronspec: spec, Task: jobs.NewPermitRollover(t),
		Opts: []asynq.Option{asynq.TaskID(jobs.RolloverTaskID(t))}}}, nil
}

// NewRolloverScheduler builds the periodic enqueuer of permit:rollover for
// `parkd scheduler`. Several of them (one per host) enqueue each period's
// rollover once: the same task ID, kept after it ran.
func NewRolloverScheduler(redisOpt asynq.RedisConnOpt, s RolloverSchedule, log *slog.Logger) (*asynq.PeriodicTaskManager, error) {
	sync := s.Sync
	if sync <= 0 {
		sync = RolloverSyncInterval
	}
	return asynq.NewPeriodicTaskManager(asynq.PeriodicTaskManagerOpts{
		RedisConnOpt:               redisOpt,
		PeriodicTaskConfigProvider: s,
		SyncInterval:               sync,
		SchedulerOpts: &asynq.SchedulerOpts{
			Logger:   AsynqLogger(log),
			LogLevel: asynq.WarnLevel,
			PostEnqueueFunc: func(info *asynq.TaskInfo, err error) {
				// Another scheduler got there first: that is how several
				// schedulers share one periodic task.
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					log.Warn("periodic enqueue of permit:rollover failed", "err", err)
				}
			},
		},
	})
}
