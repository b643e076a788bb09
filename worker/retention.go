package worker

import (
	"context"
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
	tasks, err := jobs.ListPlateTasks(ctx, h.inspector)
	if err != nil {
		return 0, err
	}
	var due, waiting []jobs.PlateTask
	var requests []string
	for _, t := range tasks {
		switch t.State {
		case "archived":
			if t.Info.LastFailedAt.Before(cutoff) {
				due = append(due, t)
			}
		case "completed":
			if t.Info.CompletedAt.Before(cutoff) {
				due = append(due, t)
			}
		default:
			if t.RequestID != "" {
				waiting = append(waiting, t)
				requests = append(requests, t.RequestID)
			}
		}
	}
	done, err := repo.FinishedRequestsBefore(ctx, h.Store.DB, requests, cutoff)
	if err != nil {
		return 0, err
	}
	for _, t := range waiting {
		if done[t.RequestID] {
			due = append(due, t)
		}
	}
	return jobs.DeletePlateTasks(h.inspector, due)
}
