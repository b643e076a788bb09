package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// DefaultPlateRetention is how long a session's plate is kept after the
// session ended (DOMAIN.md "Privacy": 13 weeks), unless PARKD_PLATE_RETENTION
// says otherwise.
const DefaultPlateRetention = 13 * 7 * 24 * time.Hour

// retentionPageSize is how many tasks one Inspector call lists.
const retentionPageSize = 1000

// PrivacyRetention handles privacy:retention: see Retention.
func (h *Handlers) PrivacyRetention(ctx context.Context, _ *asynq.Task) error {
	res, err := h.Retention(ctx)
	if err != nil {
		return err
	}
	if res.Sessions > 0 || res.RedisTasks > 0 {
		h.logger(ctx).Info("plate retention done", "sessions_erased", res.Sessions,
			"request_rows_rewritten", res.Requests, "redis_tasks_deleted", res.RedisTasks)
	}
	return nil
}

// Retention erases the plate of every session that ended longer than the
// plate retention before the handlers' clock: first in Postgres
// (repo.ErasePlates), then in Redis (eraseTaskPlates). It is idempotent and
// safe to run several times at once (SKIP LOCKED; a task deleted twice is
// not found the second time).
func (h *Handlers) Retention(ctx context.Context) (jobs.PrivacyRetentionResult, error) {
	keep := h.PlateRetention
	if keep <= 0 {
		keep = DefaultPlateRetention
	}
	cutoff := h.now().Add(-keep)
	var out jobs.PrivacyRetentionResult
	res, err := repo.ErasePlates(ctx, h.Store.DB, cutoff, repo.RetentionBatch)
	out.Sessions, out.Requests = res.Sessions, res.Requests
	if err != nil {
		return out, fmt.Errorf("plate retention: %w", err)
	}
	n, err := h.eraseTaskPlates(ctx, cutoff)
	out.RedisTasks = n
	if err != nil {
		return out, fmt.Errorf("plate retention in redis: %w", err)
	}
	return out, nil
}

// carriesPlate reports whether a task's payload names a plate: session:start
// always, session:change when it corrects one. Every other type names
// sessions and permits by ID only.
func carriesPlate(t *asynq.TaskInfo) bool {
	switch t.Type {
	case jobs.TypeSessionStart:
		return true
	case jobs.TypeSessionChange:
		var p jobs.SessionChange
		return json.Unmarshal(t.Payload, &p) != nil || p.Plate != nil
	}
	return false
}

// eraseTaskPlates deletes, in every queue, the tasks whose payload carries a
// plate due for erasure, through asynq's Inspector:
//
//   - archived and completed tasks that finished (last failed, completed)
//     before cutoff: they are finished, their outcome is in Postgres, and a
//     session they started ended after they finished, so every session whose
//     plate Postgres just erased had its tasks finished before cutoff. (Tasks
//     of sessions still younger go too: deleting a finished task loses nothing.)
//   - pending, scheduled and retry tasks only when their request finished
//     before cutoff (a leftover that would only replay its outcome). A start
//     still pending cannot belong to an erased session: the session exists
//     only once its start was applied, and asynq then drops or completes the
//     task; a start retrying after it was applied (its acknowledgement lost)
//     retries for about an hour (jobs.RequestMaxRetry), far less than any
//     retention, and is caught here if not.
func (h *Handlers) eraseTaskPlates(ctx context.Context, cutoff time.Time) (int64, error) {
	if h.Redis == nil {
		return 0, nil
	}
	h.inspectorOnce.Do(func() { h.inspector = asynq.NewInspectorFromRedisClient(h.Redis) })
	ins := h.inspector
	queues, err := ins.Queues()
	if err != nil {
		return 0, fmt.Errorf("list queues: %w", err)
	}
	type lister func(queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	finished := map[string]lister{"archived": ins.ListArchivedTasks, "completed": ins.ListCompletedTasks}
	waiting := map[string]lister{"pending": ins.ListPendingTasks, "scheduled": ins.ListScheduledTasks, "retry": ins.ListRetryTasks}
	// Pages are read first and deleted after, so that deleting does not shift
	// the pages still to read.
	all := func(list lister, queue string) ([]*asynq.TaskInfo, error) {
		var got []*asynq.TaskInfo
		for page := 1; ; page++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			infos, err := list(queue, asynq.PageSize(retentionPageSize), asynq.Page(page))
			if err != nil {
				return nil, err
			}
			for _, t := range infos {
				if carriesPlate(t) {
					got = append(got, t)
				}
			}
			if len(infos) < retentionPageSize {
				return got, nil
			}
		}
	}
	var deleted int64
	del := func(queue, id string) error {
		err := ins.DeleteTask(queue, id)
		switch {
		case err == nil:
			deleted++
		case errors.Is(err, asynq.ErrTaskNotFound):
			// another run, or asynq itself, got there first
		default:
			return fmt.Errorf("delete task %s of %s: %w", id, queue, err)
		}
		return nil
	}
	for _, q := range queues {
		for state, list := range finished {
			infos, err := all(list, q)
			if err != nil {
				return deleted, fmt.Errorf("list %s tasks of %s: %w", state, q, err)
			}
			for _, t := range infos {
				at := t.CompletedAt
				if state == "archived" {
					at = t.LastFailedAt
				}
				if at.Before(cutoff) {
					if err := del(q, t.ID); err != nil {
						return deleted, err
					}
				}
			}
		}
		for state, list := range waiting {
			infos, err := all(list, q)
			if err != nil {
				return deleted, fmt.Errorf("list %s tasks of %s: %w", state, q, err)
			}
			byRequest := map[string]string{}
			var ids []string
			for _, t := range infos {
				var p struct {
					RequestID string `json:"request_id"`
				}
				if json.Unmarshal(t.Payload, &p) == nil && p.RequestID != "" {
					byRequest[p.RequestID] = t.ID
					ids = append(ids, p.RequestID)
				}
			}
			done, err := repo.FinishedRequestsBefore(ctx, h.Store.DB, ids, cutoff)
			if err != nil {
				return deleted, err
			}
			for rid := range done {
				if err := del(q, byRequest[rid]); err != nil {
					return deleted, err
				}
			}
		}
	}
	return deleted, nil
}
