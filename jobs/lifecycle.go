package jobs

import (
	"encoding/json"
	"time"

	"github.com/hibiken/asynq"
)

// RolloverCronspec is when `parkd scheduler` enqueues permit:rollover: every hour
// at minute 5 (UTC). A permit year ends at the start of a local day in its zone's
// time zone (midnight, or 01:00 where clocks jump over it), and zones may lie in
// different ones; an hourly run reaches each of them within five minutes after
// that (00:05 local in every whole-hour zone,
// Amsterdam's CET and CEST alike), and it touches only permits whose year has
// ended, so the runs between are a cheap index lookup that finds nothing.
const RolloverCronspec = "5 * * * *"

// Rollover task policy.
const (
	// RolloverMaxRetry retries a failed rollover (Postgres away) for about a quarter
	// of an hour; by then the next hour's rollover is due, under its own task ID.
	RolloverMaxRetry = 8
	// RolloverRetention keeps a finished rollover's task ID in Redis, so that a
	// scheduler whose clock is late (up to this much) does not enqueue the same
	// period again. Running it again would change nothing anyway.
	RolloverRetention = 2 * time.Hour
)

// RolloverPeriod is the UTC hour a rollover run belongs to: hour H for every t
// from H-00:25 up to H+00:35. The run at minute 5 lies in the middle, so every
// scheduler names it the same even with clocks up to half an hour apart.
func RolloverPeriod(t time.Time) time.Time {
	return t.UTC().Add(25 * time.Minute).Truncate(time.Hour)
}

// RolloverTaskID names the rollover of one period: deterministic, so that several
// schedulers (one per host) enqueue it once, and new every period, so that a
// rollover that failed for good (archived, keeping its ID) never blocks the next.
func RolloverTaskID(period time.Time) string {
	return TypePermitRollover + ":" + RolloverPeriod(period).Format("2006-01-02T15")
}

// NewPermitRollover builds the rollover of the period that t lies in (see
// RolloverPeriod). The handler rolls every permit whose year ended by the instant
// it runs; Day records the period's (UTC) day for the operator.
func NewPermitRollover(t time.Time) *asynq.Task {
	period := RolloverPeriod(t)
	b, _ := json.Marshal(PermitRollover{Day: period.Format("2006-01-02")}) // cannot fail: a string field
	return asynq.NewTask(TypePermitRollover, b,
		asynq.Queue(QueueMaintenance), asynq.TaskID(RolloverTaskID(period)),
		asynq.MaxRetry(RolloverMaxRetry), asynq.Timeout(MaintenanceTimeout), asynq.Retention(RolloverRetention))
}

// TypePrivacyRetention erases the plates of sessions that ended longer than
// the plate retention ago (DOMAIN.md "Privacy"): hourly from `parkd scheduler`,
// and at once from `parkd retention`.
const TypePrivacyRetention = "privacy:retention"

// RetentionCronspec is when `parkd scheduler` enqueues privacy:retention: every
// hour at minute 35 (UTC), half an hour away from the rollover.
const RetentionCronspec = "35 * * * *"

// RetentionRetention keeps a finished retention run's task ID in Redis, so that
// a scheduler whose clock is late does not enqueue the same hour again.
const RetentionRetention = 2 * time.Hour

// RetentionPeriod is the UTC hour a retention run belongs to: hour H for every
// t from H:05 up to H+1:05, so the run at minute 35 lies in the middle and
// schedulers with clocks up to half an hour apart name it the same.
func RetentionPeriod(t time.Time) time.Time {
	return t.UTC().Add(-5 * time.Minute).Truncate(time.Hour)
}

// RetentionTaskID names the retention run of one period (see RolloverTaskID).
func RetentionTaskID(t time.Time) string {
	return TypePrivacyRetention + ":" + RetentionPeriod(t).Format("2006-01-02T15")
}

// NewPrivacyRetention builds the retention run of the period t lies in. It has
// no payload: the handler erases whatever is due when it runs.
func NewPrivacyRetention(t time.Time) *asynq.Task {
	return asynq.NewTask(TypePrivacyRetention, nil,
		asynq.Queue(QueueMaintenance), asynq.TaskID(RetentionTaskID(t)),
		asynq.MaxRetry(RolloverMaxRetry), asynq.Timeout(MaintenanceTimeout), asynq.Retention(RetentionRetention))
}

// PrivacyRetentionResult is what a retention run erased (`parkd retention`
// prints it).
type PrivacyRetentionResult struct {
	Sessions   int64 `json:"sessions_erased"`
	Requests   int64 `json:"request_rows_rewritten"`
	RedisTasks int64 `json:"redis_tasks_deleted"`
}
