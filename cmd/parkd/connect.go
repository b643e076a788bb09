package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/startup"
)

// deps are the connections every role shares.
type deps struct {
	store  *repo.Store
	redis  redis.UniversalClient
	redisO asynq.RedisConnOpt
	client *asynq.Client
}

func (d *deps) close() {
	if d.client != nil {
		d.client.Close()
	}
	if d.redis != nil {
		d.redis.Close()
	}
	if d.store != nil {
		d.store.Close()
	}
}

// onPostgres runs fn on Postgres alone (for the commands that need no Redis),
// once it answers.
func onPostgres(ctx context.Context, cfg config, log *slog.Logger, fn func(*repo.Store) error) error {
	d, err := connect(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer d.close()
	return fn(d.store)
}

// connect opens Postgres and, if needRedis, Redis, and waits for both while
// they start (startup.Wait); a refusal (a wrong password, a missing database)
// ends it at once.
func connect(ctx context.Context, cfg config, log *slog.Logger, needRedis bool) (*deps, error) {
	d := &deps{}
	var err error
	if d.store, err = repo.Open(cfg.DatabaseURL, repo.PoolConfig{MaxConns: cfg.DBMaxConns, ConnMaxLifetime: cfg.DBConnMaxLifetime}); err != nil {
		return nil, err
	}
	pg := startup.Service{Name: "postgres", URL: cfg.DatabaseURL, Setting: "PARKD_DATABASE_URL", Ping: d.store.Ping}
	if err := startup.Wait(ctx, log, pg, cfg.StartupWait); err != nil {
		d.close()
		return nil, err
	}
	if !needRedis {
		return d, nil
	}
	d.redisO = cfg.Redis
	rc, ok := d.redisO.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		d.close()
		return nil, errors.New("PARKD_REDIS_URL: not a go-redis client")
	}
	d.redis = rc
	rs := startup.Service{Name: "redis", URL: cfg.RedisURL, Setting: "PARKD_REDIS_URL",
		Ping: func(ctx context.Context) error { return d.redis.Ping(ctx).Err() }}
	if err := startup.Wait(ctx, log, rs, cfg.StartupWait); err != nil {
		d.close()
		return nil, err
	}
	d.client = asynq.NewClientFromRedisClient(d.redis)
	return d, nil
}
