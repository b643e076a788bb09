package bench

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// testClaimKey is the key repo/repotest holds in a Redis index a test process
// has claimed; flushing such an index would pull a running test's queue away.
const testClaimKey = "parkd:test:claim"

// testOwnedKey marks an index as one tests may flush (repo/repotest).
const testOwnedKey = "parkd:test:owned"

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
	// A test's claim (allowClaimed: the test that runs this bench holds it)
	// survives the flush in the same MULTI: were it gone for a moment, another
	// test process could take the index as free and share it.
	claim, err := c.Get(ctx, testClaimKey).Result()
	if err != nil && err != redis.Nil {
		return opt.DB, fmt.Errorf("redis %s: %w", opt.Addr, err)
	}
	ttl := c.PTTL(ctx, testClaimKey).Val()
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FlushDB(ctx)
		if claim != "" && ttl > 0 {
			p.Set(ctx, testClaimKey, claim, ttl)
			p.Set(ctx, testOwnedKey, "1", 0)
		}
		return nil
	}); err != nil {
		return opt.DB, fmt.Errorf("redis %s index %d: FLUSHDB: %w", opt.Addr, opt.DB, err)
	}
	return opt.DB, nil
}
