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
// (read once: a run rolls up to the instant it started), in set-based batches,
// each with its permit.year_rolled events.
func (h *Handlers) Rollover(ctx context.Context) (repo.RolloverResult, error) {
	res, err := repo.RollOver(ctx, h.Store.DB, h.now(), repo.RolloverBatch)
	if res.Years > 0 {
		h.eventsWritten() // batches that committed, even when a later one failed
	}
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
	return hourlyConfigs(s.Cronspec, jobs.RolloverCronspec, s.Clock, jobs.NewPermitRollover, jobs.RolloverTaskID), nil
}

// RetentionSchedule is the asynq.PeriodicTaskConfigProvider of
// privacy:retention: a task ID per hour (jobs.RetentionTaskID), like the
// rollover's, so several schedulers enqueue each hour's run once.
type RetentionSchedule struct {
	Cronspec string          // jobs.RetentionCronspec when empty
	Clock    clockwork.Clock // the real clock when nil
	Sync     time.Duration   // RolloverSyncInterval when zero
}

// GetConfigs implements asynq.PeriodicTaskConfigProvider.
func (s RetentionSchedule) GetConfigs() ([]*asynq.PeriodicTaskConfig, error) {
	return hourlyConfigs(s.Cronspec, jobs.RetentionCronspec, s.Clock, jobs.NewPrivacyRetention, jobs.RetentionTaskID), nil
}

// hourlyConfigs is the one entry of a periodic task named per period.
func hourlyConfigs(spec, def string, clock clockwork.Clock, task func(time.Time) *asynq.Task, id func(time.Time) string) []*asynq.PeriodicTaskConfig {
	if spec == "" {
		spec = def
	}
	t := orReal(clock).Now()
	// The task ID is repeated as an enqueue option because the manager tells
	// configs apart by cronspec, type, payload and these options only: the ID
	// inside the task would not make a new hour a new entry.
	return []*asynq.PeriodicTaskConfig{{Cronspec: spec, Task: task(t), Opts: []asynq.Option{asynq.TaskID(id(t))}}}
}

// NewRolloverScheduler builds the periodic enqueuer of permit:rollover for
// `parkd scheduler`. Several of them (one per host) enqueue each period's
// rollover once: the same task ID, kept after it ran.
func NewRolloverScheduler(redisOpt asynq.RedisConnOpt, s RolloverSchedule, log *slog.Logger) (*asynq.PeriodicTaskManager, error) {
	return newHourlyScheduler(redisOpt, s, s.Sync, jobs.TypePermitRollover, log)
}

// NewRetentionScheduler builds the periodic enqueuer of privacy:retention, as
// NewRolloverScheduler does the rollover's.
func NewRetentionScheduler(redisOpt asynq.RedisConnOpt, s RetentionSchedule, log *slog.Logger) (*asynq.PeriodicTaskManager, error) {
	return newHourlyScheduler(redisOpt, s, s.Sync, jobs.TypePrivacyRetention, log)
}

func newHourlyScheduler(redisOpt asynq.RedisConnOpt, p asynq.PeriodicTaskConfigProvider, sync time.Duration, typ string, log *slog.Logger) (*asynq.PeriodicTaskManager, error) {
	if sync <= 0 {
		sync = RolloverSyncInterval
	}
	return asynq.NewPeriodicTaskManager(asynq.PeriodicTaskManagerOpts{
		RedisConnOpt:               redisOpt,
		PeriodicTaskConfigProvider: p,
		SyncInterval:               sync,
		SchedulerOpts: &asynq.SchedulerOpts{
			Logger:   AsynqLogger(log),
			LogLevel: asynq.WarnLevel,
			PostEnqueueFunc: func(info *asynq.TaskInfo, err error) {
				// Another scheduler got there first: that is how several
				// schedulers share one periodic task.
				if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
					log.Warn("periodic enqueue failed", "type", typ, "err", err)
				}
			},
		},
	})
}
