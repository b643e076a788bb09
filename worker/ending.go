package worker

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// SessionEnding handles session:ending (DOMAIN.md "Telling others"): the
// session.ending event of a session still open with the planned end the task
// was scheduled for (to the second, as the task IDs tell ends apart), written
// once however often the task runs (repo.AddEndingEvent). A session stopped,
// or whose end a change or a stop moved since, gets nothing: its new end has
// a task of its own.
func (h *Handlers) SessionEnding(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionEnding
	if err := decode(t, &p); err != nil {
		return err
	}
	sid, ok := repo.ParseID(p.SessionID)
	if !ok {
		return fmt.Errorf("session:ending: session_id %q: %w", p.SessionID, asynq.SkipRetry)
	}
	wrote := false
	err := h.inTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		wrote = false
		now := h.now()
		// The permit's lock, as every writer of a session takes it: the
		// session cannot be stopped or changed between the look and the event.
		s, _, err := repo.LockSessionAndPermit(ctx, tx, sid)
		if err != nil {
			return err
		}
		if s.State != domain.StateOpen || s.PlannedEndAt.Unix() != p.PlannedEndAt.Unix() {
			h.logger(ctx).Debug("ending notice of a stopped session or a moved end: nothing to do", "session_id", s.ID,
				"scheduled_for", p.PlannedEndAt.UTC(), "planned_end_at", s.PlannedEndAt, "state", s.State)
			return nil
		}
		wrote, err = repo.AddEndingEvent(ctx, tx, repo.SessionEvent(jobs.EventSessionEnding, s, now, nil, ""))
		return err
	})
	if errors.Is(err, repo.ErrNotFound) {
		return fmt.Errorf("session:ending: %w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("session:ending of session %d: %w", sid, err)
	}
	if wrote {
		h.eventsWritten()
	}
	return nil
}

// requeueEndings queues again the ending notice of every open session whose
// planned end is still ahead, for the reconciler once Redis lost its data
// (the notices live only there until they run). A notice already sent is
// queued too, and its task finds the event written and does nothing. It
// returns how many tasks it queued (a task still there is left as it is).
func (h *Handlers) requeueEndings(ctx context.Context) (int, error) {
	now := h.now()
	zones := map[string]*domain.Zone{}
	n := 0
	var after int64
	for {
		rows, err := repo.OpenSessionsEndingAfter(ctx, h.Store.DB, now, after, 1000)
		if err != nil {
			return n, err
		}
		for i := range rows {
			s := &rows[i]
			after = s.ID
			z, ok := zones[s.Zone]
			if !ok {
				if z, err = h.Store.Zone(ctx, h.Store.DB, s.Zone); err != nil {
					return n, fmt.Errorf("requeue ending notices: %w", err)
				}
				zones[s.Zone] = z
			}
			// Beyond the schedule horizon it is scheduleDueSoon's.
			o := h.soon(now, endingOutbox(z, s, now))
			if o == nil {
				continue
			}
			queued, err := enqueueNew(ctx, h.Client, jobs.Rebuild(o.TaskType, o.TaskID, o.Queue, o.Payload, o.ProcessAt))
			if err != nil {
				return n, fmt.Errorf("requeue the ending notice of session %d: %w", s.ID, err)
			}
			if queued {
				n++
			}
		}
		if len(rows) < 1000 {
			return n, nil
		}
	}
}
