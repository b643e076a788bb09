package load

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/redisurl"
	"github.com/parkd/parkd/repo"
)

// QueueState is one asynq queue after the load.
type QueueState struct {
	Name        string `json:"name"`
	Size        int    `json:"size"`
	Pending     int    `json:"pending"`
	Active      int    `json:"active"`
	Scheduled   int    `json:"scheduled"`
	Retry       int    `json:"retry"`
	Archived    int    `json:"archived"`
	MemoryBytes int64  `json:"memory_bytes"` // asynq's sampled estimate
	Failed      int    `json:"failed_total"`
}

// RedisState is what the load left in Redis, next to the sessions still
// open: scheduled tasks that outlive their session cost Redis memory for as
// long as they wait.
type RedisState struct {
	Queues       []QueueState `json:"queues"`
	OpenSessions int          `json:"open_sessions"`
}

// ReadRedisState reads the asynq queues of redisURL and counts the open
// sessions in dsn.
func ReadRedisState(ctx context.Context, redisURL, dsn string) (RedisState, error) {
	var st RedisState
	err := EachQueue(redisURL, func(insp *asynq.Inspector, n string) error {
		q, err := insp.GetQueueInfo(n)
		if err != nil {
			return fmt.Errorf("queue %s: %w", n, err)
		}
		st.Queues = append(st.Queues, QueueState{Name: n, Size: q.Size, Pending: q.Pending, Active: q.Active,
			Scheduled: q.Scheduled, Retry: q.Retry, Archived: q.Archived, MemoryBytes: q.MemoryUsage, Failed: q.FailedTotal})
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("redis state: %w", err)
	}
	db, err := repo.Open(dsn, repo.PoolConfig{MaxConns: 1})
	if err != nil {
		return st, fmt.Errorf("redis state: %w", err)
	}
	defer db.Close()
	if st.OpenSessions, _, err = repo.CountOpenSessions(ctx, db.DB, time.Now()); err != nil {
		return st, fmt.Errorf("redis state: %w", err)
	}
	return st, nil
}

// EachQueue calls fn with an inspector of the asynq queues at redisURL for each
// queue, in name order, until fn fails. redisURL is any form PARKD_REDIS_URL
// takes (package redisurl), a Sentinel's included.
func EachQueue(redisURL string, fn func(insp *asynq.Inspector, queue string) error) error {
	opt, err := redisurl.Parse(redisURL)
	if err != nil {
		return err
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	names, err := insp.Queues()
	if err != nil {
		return fmt.Errorf("list queues: %w", err)
	}
	slices.Sort(names)
	for _, n := range names {
		if err := fn(insp, n); err != nil {
			return err
		}
	}
	return nil
}

// RedisClient is a go-redis client of redisURL, any form PARKD_REDIS_URL
// takes (package redisurl): a failover client for a Sentinel's, which asks
// the Sentinels where the primary is, as parkd does.
func RedisClient(redisURL string) (redis.UniversalClient, error) {
	opt, err := redisurl.Parse(redisURL)
	if err != nil {
		return nil, err
	}
	made := opt.MakeRedisClient()
	rc, ok := made.(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("%T is not a go-redis client", made)
	}
	return rc, nil
}
