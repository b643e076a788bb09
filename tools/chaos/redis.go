package chaos

import (
	"context"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/tools/load"
)

// What a chaos run reads of the private Redis: the tasks a killed worker held,
// the tasks that failed for good, and the reconciler's epoch marker.

// activeTasks is the IDs of the tasks active in Redis now, in every queue.
func (c *chaosRun) activeTasks() map[string]bool {
	out := map[string]bool{}
	// Best effort: what could not be read is reported as nothing.
	_ = load.EachQueue(c.redisURL, func(insp *asynq.Inspector, q string) error {
		tasks, _ := insp.ListActiveTasks(q, asynq.PageSize(1000))
		for _, t := range tasks {
			out[t.ID] = true
		}
		return nil
	})
	return out
}

// archivedTasks describes the archived tasks of every queue: type, ID, how
// often it was tried and its last error.
func (c *chaosRun) archivedTasks() map[string][]string {
	out := map[string][]string{}
	_ = load.EachQueue(c.redisURL, func(insp *asynq.Inspector, q string) error {
		tasks, _ := insp.ListArchivedTasks(q, asynq.PageSize(10))
		for _, t := range tasks {
			out[q] = append(out[q], fmt.Sprintf("%s %s (tried %d of %d, last failed %s: %s)",
				t.Type, t.ID, t.Retried, t.MaxRetry, t.LastFailedAt.UTC().Format(utcSecond), t.LastErr))
		}
		return nil
	})
	return out
}

// epoch reads the reconciler's marker in Redis at the end: present means the
// reconciler noticed the flush and queued the auto-stops again.
func (c *chaosRun) epoch(ctx context.Context) string {
	rc, err := load.RedisClient(c.redisURL)
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	v, err := rc.Get(ctx, "parkd:epoch").Result()
	if errors.Is(err, redis.Nil) {
		return "absent"
	} else if err != nil {
		return err.Error()
	}
	return "set at " + v
}
