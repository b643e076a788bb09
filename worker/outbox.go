package worker

import (
	"context"
	"errors"
	"log/slog"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// forget deletes scheduled tasks that can no longer do anything. Without it a
// stopped session's auto-stop would wait in Redis until the session's planned
// end (hours, at hundreds of sessions a second) only to find nothing to do. A
// failure costs nothing but that: the task runs and finds the session settled.
func (h *Handlers) forget(ctx context.Context, taskIDs []string, keep []*repo.OutboxTask) {
	if len(taskIDs) == 0 || h.Redis == nil {
		return
	}
	h.inspectorOnce.Do(func() { h.inspector = asynq.NewInspectorFromRedisClient(h.Redis) })
next:
	for _, id := range taskIDs {
		for _, k := range keep {
			if k.TaskID == id { // a shortening by less than a second: the same ID, still wanted
				continue next
			}
		}
		if err := h.inspector.DeleteTask(jobs.QueueCritical, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			h.logger(ctx).Debug("obsolete task not deleted; it will run and find nothing to do", "task_id", id, "err", err)
		}
	}
}

// handOver enqueues freshly committed outbox tasks and forgets them. It is the
// fast path: whatever fails here the relay retries from the outbox.
func (h *Handlers) handOver(ctx context.Context, rows []*repo.OutboxTask) {
	if len(rows) == 0 || h.Client == nil {
		return
	}
	done := enqueueAll(ctx, h.Client, h.logger(ctx), rows)
	if len(done) == 0 {
		return
	}
	err := h.inTx(context.WithoutCancel(ctx), func(ctx context.Context, tx repo.Tx) error {
		return repo.DeleteOutbox(ctx, tx, done...)
	})
	if err != nil {
		h.logger(ctx).Warn("outbox cleanup failed; the relay will re-enqueue (harmless)", "err", err)
	}
}

// enqueueAll enqueues outbox tasks and returns the IDs of the rows it handed
// over; what it could not hand over waits in the outbox for the relay.
func enqueueAll(ctx context.Context, c *asynq.Client, log *slog.Logger, rows []*repo.OutboxTask) []int64 {
	var done []int64
	for _, r := range rows {
		if err := enqueueOutbox(ctx, c, r); err != nil {
			log.Warn("outbox hand-over failed; the relay will retry", "task_id", r.TaskID, "err", err)
			continue
		}
		done = append(done, r.ID)
	}
	return done
}

func enqueueOutbox(ctx context.Context, c *asynq.Client, r *repo.OutboxTask) error {
	t := jobs.Rebuild(r.TaskType, r.TaskID, r.Queue, r.Payload, r.ProcessAt)
	if _, err := c.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	return nil
}

func autoStopOutbox(s *repo.Session) *repo.OutboxTask {
	sid := repo.FormatID(s.ID)
	return &repo.OutboxTask{
		TaskType: jobs.TypeSessionAutoStop, TaskID: jobs.AutoStopTaskID(sid, s.PlannedEndAt),
		Queue: jobs.QueueCritical, Payload: jobs.AutoStopPayload(sid, s.PlannedEndAt), ProcessAt: s.PlannedEndAt,
	}
}
