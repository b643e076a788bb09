package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
)

type logKey struct{}

// frame runs every task: it gives the task its logger and stops the retries of
// a failure that no retry can cure. A request ends such a failure itself, as a
// recorded outcome (apply); for the others (auto-stop, rollover,
// reconciliation, which have no requester to tell) the task is archived at
// once with an error in the log, where operators look, instead of being retried
// for an hour to the same refusal.
func (h *Handlers) frame(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		l := h.Log.With("task_id", id, "task_type", t.Type())
		ctx = context.WithValue(ctx, logKey{}, l)
		err := next.ProcessTask(ctx, t)
		if _, final := finalFailure(ctx, err); final {
			l.Error("task failed for good: archived, not retried", "err", err)
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		switch {
		case errors.Is(err, ErrNotTried):
			l.Debug("task did not try: run again shortly", "err", err)
		case errors.Is(err, ErrReceiverDown):
			l.Debug("task failed while its receiver is down (its circuit breaker is open)", "err", err)
		case err != nil && !errors.Is(err, asynq.SkipRetry):
			l.Warn("task failed, will retry", "err", err)
		}
		return err
	})
}

// logger is the task's logger (with its task ID), or the handlers' own when a
// handler is called directly (the seed command, tests).
func (h *Handlers) logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}
