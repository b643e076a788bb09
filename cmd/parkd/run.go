package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/console"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/metrics"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

type roles struct{ intake, worker, scheduler, monitor, migrate bool }

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

// connect opens Postgres and Redis and waits for both, saying what it waits for
// instead of crashing in a loop while a dependency starts.
func connect(ctx context.Context, cfg config, log *slog.Logger, needRedis bool) (*deps, error) {
	d := &deps{}
	var err error
	if d.store, err = repo.Open(cfg.DatabaseURL, repo.PoolConfig{MaxConns: cfg.DBMaxConns, ConnMaxLifetime: cfg.DBConnMaxLifetime}); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, log, "postgres", redactURL(cfg.DatabaseURL), cfg.StartupWait, d.store.Ping); err != nil {
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
	if err := waitFor(ctx, log, "redis", redactURL(cfg.RedisURL), cfg.StartupWait, func(ctx context.Context) error {
		return d.redis.Ping(ctx).Err()
	}); err != nil {
		d.close()
		return nil, err
	}
	d.client = asynq.NewClientFromRedisClient(d.redis)
	return d, nil
}

func waitFor(ctx context.Context, log *slog.Logger, name, where string, limit time.Duration, ping func(context.Context) error) error {
	deadline := time.Now().Add(limit)
	for wait := 250 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s at %s did not answer within %s: %w", name, where, limit, err)
		}
		log.Warn("waiting for "+name, "at", where, "err", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(min(wait, max(time.Until(deadline), time.Millisecond))): // the last try at the deadline
		}
	}
}

func migrateCmd(ctx context.Context, cfg config, log *slog.Logger) error {
	d, err := connect(ctx, cfg, log, false)
	if err != nil {
		return err
	}
	defer d.close()
	applied, err := d.store.Migrate(ctx)
	if err != nil {
		return err
	}
	log.Info("schema up to date", "applied", applied)
	return nil
}

// run starts the chosen roles and stops them in order on SIGTERM/SIGINT: first
// the HTTP intake (no new requests), then the scheduler, then the worker, which
// lets running tasks finish within its shutdown timeout.
func run(ctx context.Context, cfg config, log *slog.Logger, r roles) error {
	d, err := connect(ctx, cfg, log, true)
	if err != nil {
		return err
	}
	defer d.close()
	if r.migrate {
		if _, err := d.store.Migrate(ctx); err != nil {
			return err
		}
	}
	if cfg.PprofAddr != "" {
		servePprof(cfg.PprofAddr, log)
	}
	m := metrics.New()
	if r.worker || r.monitor {
		m.WatchOutbox(d.store)
		m.WatchRequests(d.store)
	}
	if r.monitor {
		m.WatchQueues(asynq.NewInspectorFromRedisClient(d.redis))
	}
	h := &worker.Handlers{Store: d.store, Client: d.client, Redis: d.redis, Log: log, Observer: m}

	var srv *asynq.Server
	relayDone := make(chan struct{})
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRelay()
	if r.worker {
		if cfg.SettleBatch > 1 {
			// Closed after srv.Shutdown (defers run last first): the handlers
			// finishing their last tasks still need it.
			co := repo.NewCoalescer(d.store.DB, repo.CoalescerConfig{MaxBatch: cfg.SettleBatch, Committers: cfg.SettleCommitters})
			defer co.Close()
			h.Coalescer = co
		}
		srv = worker.NewServer(d.redisO, worker.Config{
			Concurrency: cfg.Concurrency, TaskCheckInterval: cfg.TaskCheck, DelayedTaskCheckInterval: cfg.DelayedCheck,
		}, log)
		if err := srv.Start(h.Mux()); err != nil {
			return fmt.Errorf("start worker: %w", err)
		}
		relay := &worker.Relay{Store: d.store, Client: d.client, Log: log.With("component", "outbox"), Observer: m}
		go func() { defer close(relayDone); relay.Run(relayCtx) }()
		log.Info("worker started", "concurrency", cfg.Concurrency, "queues", jobs.Queues(),
			"settle_batch", cfg.SettleBatch, "settle_committers", cfg.SettleCommitters)
	} else {
		close(relayDone)
	}

	var sched *asynq.Scheduler
	if r.scheduler {
		sched = asynq.NewScheduler(d.redisO, &asynq.SchedulerOpts{
			Logger:   worker.AsynqLogger(log),
			LogLevel: asynq.WarnLevel,
			PostEnqueueFunc: func(info *asynq.TaskInfo, err error) {
				// Another scheduler got there first: that is how several
				// schedulers share one periodic task.
				if err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
					log.Warn("periodic enqueue failed", "err", err)
				}
			},
		})
		if _, err := sched.Register("* * * * *", jobs.NewSessionReconcile()); err != nil {
			return fmt.Errorf("register reconcile: %w", err)
		}
		if err := sched.Start(); err != nil {
			return fmt.Errorf("start scheduler: %w", err)
		}
		// The rollover needs a task ID per period, which a fixed Scheduler entry
		// cannot give: its own PeriodicTaskManager renews the entry each period.
		rollover, err := worker.NewRolloverScheduler(d.redisO, worker.RolloverSchedule{}, log)
		if err != nil {
			return fmt.Errorf("register rollover: %w", err)
		}
		if err := rollover.Start(); err != nil {
			return fmt.Errorf("start rollover scheduler: %w", err)
		}
		defer rollover.Shutdown()
		log.Info("scheduler started", "reconcile", "every minute", "rollover", jobs.RolloverCronspec+" (UTC)")
	}

	// One HTTP port per process: the intake's (with the monitor under /monitor/
	// in `serve`), the monitor's, or a worker's or scheduler's for metrics.
	var httpSrv *http.Server
	httpErr := make(chan error, 1)
	ops := &intake.Server{Store: d.store, Redis: d.redis, Log: log.With("component", "http"), Observer: m, Metrics: m.Handler()}
	var ids *identity.Verifier
	if r.intake || r.monitor {
		if ids, err = identity.NewVerifier(identity.Config{Secret: []byte(cfg.JWTSecret), JWKSURL: cfg.JWKSURL,
			Issuer: cfg.JWTIssuer, Audience: cfg.JWTAudience, Log: log.With("component", "identity")}); err != nil {
			return err
		}
		defer ids.Close()
	}
	if r.monitor {
		mon := console.New(console.Config{Redis: d.redisO, Identity: ids,
			ReadOnly: cfg.MonitorReadOnly, Log: log.With("component", "monitor")})
		defer mon.Close()
		ops.Console = mon
		log.Info("monitor at "+console.Path+"/", "read_only", cfg.MonitorReadOnly)
	}
	if !r.intake && (r.monitor || cfg.MetricsAddr != "") {
		addr := cfg.HTTPAddr
		if !r.monitor {
			addr = cfg.MetricsAddr
		}
		httpSrv = &http.Server{Addr: addr, Handler: ops.OpsHandler(), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
		go func() { httpErr <- httpSrv.ListenAndServe() }()
		log.Info("http listening", "addr", addr, "serves", "/healthz /readyz /metrics")
	}
	if r.intake {
		// The listener outlives the HTTP server's graceful shutdown, so that
		// requests still waiting for their outcome are woken, not left to poll.
		listenCtx, stopListen := context.WithCancel(context.WithoutCancel(ctx))
		defer stopListen()
		listener := intake.NewListener(cfg.DatabaseURL, log)
		go listener.Run(listenCtx)
		api := &intake.Server{Store: d.store, Client: d.client, Redis: d.redis, Identity: ids,
			Log: log.With("component", "intake"), Listener: listener,
			RateLimit: float64(cfg.RateLimit), RateBurst: cfg.RateBurst,
			Observer: m, Metrics: m.Handler(), Console: ops.Console}
		httpSrv = &http.Server{Addr: cfg.HTTPAddr, Handler: api.Handler(), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: intake.MaxWait + 20*time.Second, IdleTimeout: 2 * time.Minute}
		go func() { httpErr <- httpSrv.ListenAndServe() }()
		log.Info("intake listening", "addr", cfg.HTTPAddr)
	}

	var failed error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-httpErr:
		// Cannot listen (address in use): stop the other roles too and exit
		// non-zero, so that the supervisor sees it.
		failed = fmt.Errorf("http server: %w", err)
	}
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = httpSrv.Shutdown(sctx)
		cancel()
	}
	if sched != nil {
		sched.Shutdown()
	}
	if srv != nil {
		srv.Shutdown()
	}
	stopRelay()
	<-relayDone
	log.Info("stopped")
	return failed
}
