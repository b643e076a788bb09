package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// A session's auto-stop and its ending notice are scheduled tasks in Redis,
// due at its planned end and ending_notice_minutes before it. Most sessions
// are stopped by hand long before either is due, and a task handed to Redis
// at the start and deleted again at the stop cost four Redis calls and two
// outbox rows a session (issue 16). So only what is due soon is handed over
// when a change commits: a task due within the schedule horizon
// (ScheduleHorizon) goes through the outbox as before; a later one is left to
// the reconciler, which every minute enqueues the auto-stop and ending notice
// of every open session that has come within the horizon (scheduleDueSoon).
// Postgres, which holds every open session's planned end, stays the truth;
// the task IDs are the session's and its end's, so a task enqueued twice is
// refused by Redis and one that ran twice does nothing the second time. With
// the reconciler running every minute, a task is in Redis about nine minutes
// before it is due; should the reconciler not run for the whole horizon, the
// overdue settlement (ReconcileGrace) still settles the session.

// ScheduleHorizon is how far ahead the auto-stop and ending notice of a
// session are handed to Redis: at the change that sets them when due within
// it, else by the reconciler once they come within it. Several times the
// reconciler's minute, so that a run or two missed costs nothing.
const ScheduleHorizon = 10 * time.Minute

// endingWindow is how far inside the horizon the reconciler looks for ending
// notices to hand over: those due in (now+ScheduleHorizon-endingWindow,
// now+ScheduleHorizon]. A notice crosses into the horizon once, after the
// change that set its due time (one due within the horizon then was handed
// over by that change), and five runs a minute apart find it there. The
// window never reaches back to a notice already due: that one may have been
// sent and its task gone from Redis, and handing it over again would run it
// again for nothing (a first measurement did that to every short session's
// notice, a burst of transactions each minute).
const endingWindow = 5 * time.Minute

// autoStopRescan is how far back the reconciler looks for auto-stops: an open
// session past its planned end has its auto-stop due or retrying in Redis, or
// lost; enqueuing it again is refused while it is there.
const autoStopRescan = 2 * time.Minute

func (h *Handlers) horizon() time.Duration {
	if h.ScheduleHorizon > 0 {
		return h.ScheduleHorizon
	}
	return ScheduleHorizon
}

// soon is t when it is due within the schedule horizon from now, nil
// otherwise (the reconciler enqueues it when it comes within).
func (h *Handlers) soon(now time.Time, t *repo.OutboxTask) *repo.OutboxTask {
	if t == nil || t.ProcessAt.After(now.Add(h.horizon())) {
		return nil
	}
	return t
}

// scheduleDueSoon enqueues the auto-stop of every open session whose planned
// end is within the schedule horizon (or passed within autoStopRescan), and
// the ending notice of every open session whose notice has come into the
// horizon's last endingWindow, and returns how many tasks Redis did not hold
// yet.
func (h *Handlers) scheduleDueSoon(ctx context.Context) (int, error) {
	now := h.now()
	until := now.Add(h.horizon())
	zones := map[string]*domain.Zone{}
	n := 0
	enqueue := func(o *repo.OutboxTask) error {
		if o == nil {
			return nil
		}
		queued, err := enqueueNew(ctx, h.Client, jobs.Rebuild(o.TaskType, o.TaskID, o.Queue, o.Payload, o.ProcessAt))
		if queued {
			n++
		}
		return err
	}
	var after int64
	for {
		// An ending notice is due up to MaxEndingNoticeMinutes before the
		// end: those sessions are read too, and their zone says.
		rows, err := repo.OpenSessionsEndingBetween(ctx, h.Store.DB, now.Add(-autoStopRescan),
			until.Add(domain.MaxEndingNoticeMinutes*time.Minute), after, 1000)
		if err != nil {
			return n, err
		}
		for i := range rows {
			s := &rows[i]
			after = s.ID
			if !s.PlannedEndAt.After(until) {
				if err := enqueue(autoStopOutbox(s)); err != nil {
					return n, fmt.Errorf("schedule the auto-stop of session %d: %w", s.ID, err)
				}
			}
			z, ok := zones[s.Zone]
			if !ok {
				if z, err = h.Store.Zone(ctx, h.Store.DB, s.Zone); err != nil {
					return n, fmt.Errorf("schedule ending notices: %w", err)
				}
				zones[s.Zone] = z
			}
			due, ok := domain.SessionEndingAt(z, s.StartAt, s.PlannedEndAt, time.Time{})
			if !ok || !due.After(until.Add(-endingWindow)) || due.After(until) {
				continue
			}
			if err := enqueue(endingOutbox(z, s, now)); err != nil {
				return n, fmt.Errorf("schedule the ending notice of session %d: %w", s.ID, err)
			}
		}
		if len(rows) < 1000 {
			return n, nil
		}
	}
}
