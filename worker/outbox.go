package worker

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// queuedTask names a task in Redis: its queue and task ID.
type queuedTask struct{ queue, id string }

// forget deletes scheduled tasks that can no longer do anything: a stopped or
// moved session's auto-stop (critical queue) and ending notice (default
// queue). Without it such a task would wait in Redis until its instant (hours,
// at hundreds of sessions a second) only to find nothing to do. A failure
// costs nothing but that: the task runs and finds the session settled or its
// end moved.
func (h *Handlers) forget(ctx context.Context, tasks []queuedTask, keep []*repo.OutboxTask) {
	if len(tasks) == 0 || h.Redis == nil {
		return
	}
	h.inspectorOnce.Do(func() { h.inspector = asynq.NewInspectorFromRedisClient(h.Redis) })
next:
	for _, t := range tasks {
		for _, k := range keep {
			if k.Queue == t.queue && k.TaskID == t.id { // a shortening by less than a second: the same ID, still wanted
				continue next
			}
		}
		if err := h.inspector.DeleteTask(t.queue, t.id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			h.logger(ctx).Debug("obsolete task not deleted; it will run and find nothing to do", "task_id", t.id, "err", err)
		}
	}
}

// handOver enqueues freshly committed outbox tasks and forgets them. It is the
// fast path: whatever fails here the relay retries from the outbox.
func (h *Handlers) handOver(ctx context.Context, rows []*repo.OutboxTask) {
	if len(rows) == 0 || h.Client == nil {
		return
	}
	h.handedOver.add(h, enqueueAll(ctx, h.Client, h.logger(ctx), rows))
}

// OutboxSweep is how long rows handed to Redis wait to be deleted with those
// of other commits: one DELETE a sweep instead of a transaction per request
// (issue 16: it was one of the statements every start paid for). Well under
// the relay's minimum age (RelayMinAge), so the relay does not enqueue a row
// again that was handed over; should it (a crash before the sweep), the task
// ID makes that harmless, as for any row the relay takes.
const OutboxSweep = 200 * time.Millisecond

// handedOver collects the IDs of outbox rows handed to Redis until the next
// sweep deletes them.
type handedOver struct {
	mu        sync.Mutex
	ids       []int64
	scheduled bool
}

func (o *handedOver) add(h *Handlers, ids []int64) {
	if len(ids) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ids = append(o.ids, ids...)
	if !o.scheduled {
		o.scheduled = true
		time.AfterFunc(OutboxSweep, func() { o.sweep(h) })
	}
}

func (o *handedOver) sweep(h *Handlers) {
	o.mu.Lock()
	ids := o.ids
	o.ids, o.scheduled = nil, false
	o.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := repo.DeleteOutbox(ctx, h.Store.DB, ids...); err != nil {
		h.logger(ctx).Warn("outbox cleanup failed; the relay will re-enqueue (harmless)", "rows", len(ids), "err", err)
	}
}

// enqueueAll enqueues outbox tasks and returns the IDs of the rows it handed
// over. At the first failure it stops (Redis is most likely away, and a
// sequencer pass may carry hundreds of rows): what it did not hand over waits
// in the outbox for the relay.
func enqueueAll(ctx context.Context, c *asynq.Client, log *slog.Logger, rows []*repo.OutboxTask) []int64 {
	var done []int64
	for i, r := range rows {
		if err := enqueueOutbox(ctx, c, r); err != nil {
			log.Warn("outbox hand-over failed; the relay will retry", "task_id", r.TaskID, "left", len(rows)-i, "err", err)
			break
		}
		done = append(done, r.ID)
	}
	return done
}

func enqueueOutbox(ctx context.Context, c *asynq.Client, r *repo.OutboxTask) error {
	_, err := enqueueNew(ctx, c, jobs.Rebuild(r.TaskType, r.TaskID, r.Queue, r.Payload, r.ProcessAt))
	return err
}

// enqueueNew enqueues t unless a task under its ID is in Redis already (every
// task parkd hands over again has a deterministic ID: that one does the
// same), and reports whether t was queued now.
func enqueueNew(ctx context.Context, c *asynq.Client, t *asynq.Task) (bool, error) {
	_, err := c.EnqueueContext(ctx, t)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return false, nil
	}
	return err == nil, err
}

func autoStopOutbox(s *repo.Session) *repo.OutboxTask {
	sid := repo.FormatID(s.ID)
	return &repo.OutboxTask{
		TaskType: jobs.TypeSessionAutoStop, TaskID: jobs.AutoStopTaskID(sid, s.PlannedEndAt),
		Queue: jobs.QueueCritical, Payload: jobs.AutoStopPayload(sid, s.PlannedEndAt), ProcessAt: s.PlannedEndAt,
	}
}

// obsoleteTasks are the tasks scheduled for a session's planned end until
// now, which a stop or a moved end makes pointless: its auto-stop and its
// ending notice, those of them that may be in Redis. A task due beyond the
// schedule horizon (with a minute's slack for clocks and a reconciler run in
// progress) was never handed over (schedule.go), so there is nothing to
// delete: the auto-stop is due at the planned end, the ending notice at most
// MaxEndingNoticeMinutes before it.
func (h *Handlers) obsoleteTasks(s *repo.Session, now time.Time) []queuedTask {
	sid := repo.FormatID(s.ID)
	reach := now.Add(h.horizon() + time.Minute)
	var out []queuedTask
	if !s.PlannedEndAt.After(reach) {
		out = append(out, queuedTask{jobs.QueueCritical, jobs.AutoStopTaskID(sid, s.PlannedEndAt)})
	}
	if !s.PlannedEndAt.Add(-domain.MaxEndingNoticeMinutes * time.Minute).After(reach) {
		out = append(out, queuedTask{jobs.QueueDefault, jobs.EndingTaskID(sid, s.PlannedEndAt)})
	}
	return out
}

// endingOutbox is the session.ending notice of session s in zone z, due the
// zone's ending_notice_minutes before its planned end, never before its start
// nor before receivedAt, the receipt of the request that set this planned end
// (domain.SessionEndingAt); nil when that leaves no instant before the end.
func endingOutbox(z *domain.Zone, s *repo.Session, receivedAt time.Time) *repo.OutboxTask {
	at, ok := domain.SessionEndingAt(z, s.StartAt, s.PlannedEndAt, receivedAt)
	if !ok {
		return nil
	}
	sid := repo.FormatID(s.ID)
	return &repo.OutboxTask{
		TaskType: jobs.TypeSessionEnding, TaskID: jobs.EndingTaskID(sid, s.PlannedEndAt),
		Queue: jobs.QueueDefault, Payload: jobs.SessionEndingPayload(sid, s.PlannedEndAt), ProcessAt: at,
	}
}

// rightOutbox is the registration of a registered session's right at the
// version s holds (the one its change just wrote), due at once (at: the
// change); nil for a session that is not registered (README "Pointing parkd
// at a register").
func rightOutbox(s *repo.Session, at time.Time) *repo.OutboxTask {
	if s.Registration == nil || s.RightVersion < 1 {
		return nil
	}
	sid := repo.FormatID(s.ID)
	return &repo.OutboxTask{
		TaskType: jobs.TypeRightRegister, TaskID: jobs.RightTaskID(sid, s.RightVersion),
		Queue: jobs.QueueRegistrar, Payload: jobs.RightRegisterPayload(sid, s.RightVersion), ProcessAt: at,
	}
}

// tasks are the outbox rows given, but the nil ones.
func tasks(rows ...*repo.OutboxTask) []*repo.OutboxTask {
	out := make([]*repo.OutboxTask, 0, len(rows))
	for _, r := range rows {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// eventsWritten nudges the sequencer after a transaction that wrote events
// has committed.
func (h *Handlers) eventsWritten() {
	if h.EventsWritten != nil {
		h.EventsWritten()
	}
}
