package bench

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// testClaimKey is the key repo/repotest holds in a Redis index a test process
// has claimed; flushing such an index would pull a running test's queue away.
const testClaimKey = "parkd:test:claim"

// flushRedis empties the Redis database of rawURL (redis:// or rediss://),
// refusing an index a running test has claimed unless allowClaimed.
func flushRedis(ctx context.Context, rawURL string, allowClaimed bool) (int, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return 0, fmt.Errorf("redis URL: %w", err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if !allowClaimed {
		n, err := c.Exists(ctx, testClaimKey).Result()
		if err != nil {
			return opt.DB, fmt.Errorf("redis %s: %w", opt.Addr, err)
		}
		if n > 0 {
			return opt.DB, fmt.Errorf("redis %s index %d is claimed by a running test (%s); choose another with --redis-url", opt.Addr, opt.DB, testClaimKey)
		}
	}
	if err := c.FlushDB(ctx).Err(); err != nil {
		return opt.DB, fmt.Errorf("redis %s index %d: FLUSHDB: %w", opt.Addr, opt.DB, err)
	}
	return opt.DB, nil
}
