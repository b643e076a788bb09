package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/spf13/cobra"

	"github.com/parkd/parkd/console"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/metrics"
	"github.com/parkd/parkd/registrar"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

type roles struct{ intake, worker, scheduler, monitor, migrate bool }

// newRoleCmd is a command that runs roles until SIGTERM or SIGINT.
func newRoleCmd(a *app, name, short string, r roles) *cobra.Command {
	return &cobra.Command{
		Use:   name,
		Short: short,
		Long:  "parkd " + name + ": " + short + ".\n\nRuns until SIGTERM or SIGINT, then stops taking work and finishes what it took.\n\n" + configHelp,
		Args:  noArgs,
		RunE: a.work(func(ctx context.Context, cfg config, log *slog.Logger, _ []string) error {
			return run(ctx, cfg, log, r)
		}),
	}
}

// run starts the chosen roles and, on SIGTERM/SIGINT, stops them in the
// reverse order: first the HTTP server (no new requests), then the scheduler,
// then the worker, which lets running tasks finish within its shutdown timeout.
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
	p := &process{cfg: cfg, log: log, d: d, m: newMetrics(d, r), httpErr: make(chan error, 2)}
	defer p.stop() // what started, when a later role fails to
	if r.worker {
		if err := p.startWorker(ctx); err != nil {
			return err
		}
	}
	if r.scheduler {
		if err := p.startScheduler(); err != nil {
			return err
		}
	}
	if r.intake || r.monitor {
		if err := p.startIdentity(); err != nil {
			return err
		}
	}
	if r.monitor {
		p.startMonitor()
	}
	if r.intake || r.monitor || cfg.MetricsAddr != "" {
		p.startHTTP(ctx, r.intake)
	}

	var failed error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err := <-p.httpErr:
		// Cannot listen (address in use): stop the other roles too and exit
		// non-zero, so that the supervisor sees it.
		failed = fmt.Errorf("http server: %w", err)
	}
	p.stop()
	log.Info("stopped")
	return failed
}

// process is the roles running in this process.
type process struct {
	cfg     config
	log     *slog.Logger
	d       *deps
	m       *metrics.Metrics
	ids     *identity.Verifier // the API's and the console's
	console *console.Console
	// stops are run last first: each role registers its stops as it starts.
	stops []func()
	// httpErr is the HTTP servers' end (at most two: the public port and
	// PARKD_METRICS_ADDR).
	httpErr chan error
}

func (p *process) onStop(f func()) { p.stops = append(p.stops, f) }

func (p *process) stop() {
	for _, f := range slices.Backward(p.stops) {
		f()
	}
	p.stops = nil
}

func newMetrics(d *deps, r roles) *metrics.Metrics {
	m := metrics.New()
	if r.worker || r.monitor {
		m.WatchOutbox(d.store)
		m.WatchRequests(d.store)
		m.WatchEvents(d.store)
		m.WatchRights(d.store)
	}
	if r.monitor {
		m.WatchQueues(asynq.NewInspectorFromRedisClient(d.redis))
	}
	return m
}

// startWorker starts the asynq server, the outbox relay, the event sequencer
// and the webhooks queue's own asynq server.
func (p *process) startWorker(ctx context.Context) error {
	h := &worker.Handlers{Store: p.d.store, Client: p.d.client, Redis: p.d.redis, Log: p.log, Observer: p.m,
		PlateRetention: p.cfg.PlateRetention, RegistrarIssuer: p.cfg.RegistrarIssuer}
	if p.cfg.RegistrarURL != "" {
		reg, err := registrar.New(registrar.Config{URL: p.cfg.RegistrarURL, Token: p.cfg.RegistrarToken, Conns: registrarConcurrency})
		if err != nil {
			return err
		}
		h.Registrar = reg
	}
	if p.cfg.SettleBatch > 1 {
		co := repo.NewCoalescer(p.d.store.DB, repo.CoalescerConfig{MaxBatch: p.cfg.SettleBatch, Committers: p.cfg.SettleCommitters,
			Log: p.log.With("component", "coalescer")})
		p.onStop(func() { co.Close() }) // after the server: its last tasks still need it
		h.Coalescer = co
	}
	// The registrar's and the webhooks' answers are recorded a batch per
	// statement; closed after the outbound servers, whose last tasks still
	// record theirs (later calls are written alone).
	answers := repo.NewAnswers(p.d.store.DB, repo.AnswersConfig{})
	p.onStop(answers.Close)
	h.Answers = answers
	// So are the reads their tasks start from.
	reads := repo.NewOutboundReads(p.d.store.DB, repo.AnswersConfig{})
	p.onStop(reads.Close)
	h.Reads = reads
	// The relay, which hands what the handlers put in the outbox over to the
	// queues, stops after the server too: what the last tasks wrote is handed
	// over now rather than at the next start.
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	relayDone := make(chan struct{})
	relay := &worker.Relay{Store: p.d.store, Client: p.d.client, Log: p.log.With("component", "outbox"), Observer: p.m}
	go func() { defer close(relayDone); relay.Run(relayCtx) }()
	p.onStop(func() { stopRelay(); <-relayDone })
	// The sequencer numbers the events the handlers write, kicked after each
	// commit that wrote some; like the relay it stops after the server, so
	// that what the last tasks wrote is numbered and handed over now.
	seq := &worker.Sequencer{Store: p.d.store, Client: p.d.client, Log: p.log.With("component", "sequencer")}
	h.EventsWritten = seq.Kick
	seqCtx, stopSeq := context.WithCancel(context.WithoutCancel(ctx))
	seqDone := make(chan struct{})
	go func() { defer close(seqDone); seq.Run(seqCtx) }()
	p.onStop(func() { stopSeq(); <-seqDone })
	srv := worker.NewServer(p.d.redisO, worker.Config{
		Concurrency: p.cfg.Concurrency, TaskCheckInterval: p.cfg.TaskCheck, DelayedTaskCheckInterval: p.cfg.DelayedCheck,
	}, p.log)
	if err := srv.Start(h.Mux()); err != nil {
		return fmt.Errorf("start worker: %w", err)
	}
	p.onStop(srv.Shutdown)
	// Webhook deliveries on a server of their own: a slow or dead receiver
	// holds only its slots, never one a session's task needs.
	hooks := worker.NewOutboundServer(p.d.redisO, jobs.QueueWebhooks, worker.OutboundConfig{
		RetryDelay: worker.WebhookRetryDelay, TaskCheckInterval: p.cfg.outboundTaskCheck(), DelayedTaskCheckInterval: p.cfg.DelayedCheck,
	}, p.log)
	if err := hooks.Start(h.Mux()); err != nil {
		return fmt.Errorf("start webhooks worker: %w", err)
	}
	p.onStop(hooks.Shutdown)
	p.log.Info("worker started", "concurrency", p.cfg.Concurrency, "queues", jobs.Queues(),
		"servers", "critical alone; default and maintenance by weight, a quarter of the concurrency (at least 8)",
		"settle_batch", p.cfg.SettleBatch, "settle_committers", p.cfg.SettleCommitters)
	return p.startRegistrar(h)
}

// registrarConcurrency is how many registrations one worker process has in
// flight: each mostly waits on the registrar's answer.
const registrarConcurrency = 32

// startRegistrar serves the registrar queue with an asynq server of its own,
// so that a slow or dead register holds only its own slots, never a
// session's (README "Pointing parkd at a register"), with the registrar's
// backoff (the first retries within two seconds). Without PARKD_REGISTRAR_URL
// this process leaves the queue alone: a right:register task waits for a
// worker that can send it, instead of failing here, and meanwhile shows as
// pending (parkd_rights_pending, parkd check).
func (p *process) startRegistrar(h *worker.Handlers) error {
	if h.Registrar == nil {
		p.log.Info("registration off: PARKD_REGISTRAR_URL is not set")
		return nil
	}
	srv := worker.NewOutboundServer(p.d.redisO, jobs.QueueRegistrar, worker.OutboundConfig{
		Concurrency: registrarConcurrency, RetryDelay: worker.RegisterRetryDelay,
		TaskCheckInterval: p.cfg.outboundTaskCheck(), DelayedTaskCheckInterval: p.cfg.DelayedCheck,
	}, p.log)
	if err := srv.Start(h.Mux()); err != nil {
		return fmt.Errorf("start registrar worker: %w", err)
	}
	p.onStop(srv.Shutdown)
	p.log.Info("registrar worker started", "queue", jobs.QueueRegistrar, "concurrency", registrarConcurrency,
		"registrar", p.cfg.RegistrarURL, "issuer", p.cfg.RegistrarIssuer)
	return nil
}

// startScheduler registers the periodic tasks.
func (p *process) startScheduler() error {
	sched := asynq.NewScheduler(p.d.redisO, &asynq.SchedulerOpts{
		Logger:   worker.AsynqLogger(p.log),
		LogLevel: asynq.WarnLevel,
		PostEnqueueFunc: func(info *asynq.TaskInfo, err error) {
			// Another scheduler got there first: that is how several
			// schedulers share one periodic task.
			if err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
				p.log.Warn("periodic enqueue failed", "err", err)
			}
		},
	})
	if _, err := sched.Register("* * * * *", jobs.NewSessionReconcile()); err != nil {
		return fmt.Errorf("register reconcile: %w", err)
	}
	if err := sched.Start(); err != nil {
		return fmt.Errorf("start scheduler: %w", err)
	}
	p.onStop(sched.Shutdown)
	// A reconciliation at once, not only at the next minute: against a Redis
	// that is new or lost its data it queues again what Redis lost and sets
	// the epoch (worker.EpochKey) before load comes. Left to the minute,
	// its first run found every task queued since the start in flight and
	// said Redis had lost its data ("reconciler repaired", a WARN line).
	// Unique for ReconcileUniqueFor, as the minute's: several schedulers
	// starting at once run it once.
	if _, err := p.d.client.Enqueue(jobs.NewSessionReconcile()); err != nil && !errors.Is(err, asynq.ErrDuplicateTask) {
		p.log.Warn("first reconciliation not enqueued; it runs at the next minute", "err", err)
	}
	// The rollover needs a task ID per period, which a fixed Scheduler entry
	// cannot give: its own PeriodicTaskManager renews the entry each period.
	rollover, err := worker.NewRolloverScheduler(p.d.redisO, worker.RolloverSchedule{}, p.log)
	if err != nil {
		return fmt.Errorf("register rollover: %w", err)
	}
	if err := rollover.Start(); err != nil {
		return fmt.Errorf("start rollover scheduler: %w", err)
	}
	p.onStop(rollover.Shutdown)
	retention, err := worker.NewRetentionScheduler(p.d.redisO, worker.RetentionSchedule{}, p.log)
	if err != nil {
		return fmt.Errorf("register retention: %w", err)
	}
	if err := retention.Start(); err != nil {
		return fmt.Errorf("start retention scheduler: %w", err)
	}
	p.onStop(retention.Shutdown)
	p.log.Info("scheduler started", "reconcile", "every minute", "rollover", jobs.RolloverCronspec+" (UTC)",
		"retention", jobs.RetentionCronspec+" (UTC)")
	return nil
}

// startMonitor makes asynqmon, which the HTTP server (the intake's in `serve`,
// or the monitor's own) serves at /monitor/.
func (p *process) startMonitor() {
	p.console = console.New(console.Config{Redis: p.d.redisO, Identity: p.ids,
		ReadOnly: p.cfg.MonitorReadOnly, Log: p.log.With("component", "monitor")})
	p.onStop(func() { p.console.Close() })
	p.log.Info("monitor at "+console.Path+"/", "read_only", p.cfg.MonitorReadOnly)
}

// startIdentity makes the token verifier the API and the console share (HS256
// with PARKD_JWT_SECRET, and the identity provider's keys when PARKD_JWKS_URL
// is set).
func (p *process) startIdentity() error {
	ids, err := identity.NewVerifier(identity.Config{Secret: []byte(p.cfg.JWTSecret), JWKSURL: p.cfg.JWKSURL,
		Issuer: p.cfg.JWTIssuer, Audience: p.cfg.JWTAudience, Log: p.log.With("component", "identity")})
	if err != nil {
		return err
	}
	p.ids = ids
	p.onStop(ids.Close)
	return nil
}

// consoleOrNil is the console as the intake's optional Console (a nil
// *console.Console must not become a non-nil interface).
func (p *process) consoleOrNil() intake.Console {
	if p.console == nil {
		return nil
	}
	return p.console
}

// startHTTP serves the API (with the intake) or the monitor's console on
// PARKD_HTTP_ADDR, and /healthz, /readyz and /metrics there too, unless
// PARKD_METRICS_ADDR is set: then on that address alone, which is all a worker
// or a scheduler serves.
func (p *process) startHTTP(ctx context.Context, withAPI bool) {
	s := &intake.Server{Store: p.d.store, Redis: p.d.redis, Log: p.log.With("component", "http"),
		Observer: p.m, Metrics: p.m.Handler(), Console: p.consoleOrNil(), OpsApart: p.cfg.MetricsAddr != ""}
	switch {
	case withAPI:
		// The listener outlives the HTTP server's graceful shutdown, so that
		// requests still waiting for their outcome are woken, not left to poll.
		listenCtx, stopListen := context.WithCancel(context.WithoutCancel(ctx))
		p.onStop(stopListen)
		listener := repo.NewListener(p.cfg.DatabaseURL, p.log)
		go listener.Run(listenCtx)
		s.Client, s.Identity, s.Listener = p.d.client, p.ids, listener
		s.Log = p.log.With("component", "intake")
		s.RateLimit, s.RateBurst = float64(p.cfg.RateLimit), p.cfg.RateBurst
		p.serveHTTP(&http.Server{Addr: p.cfg.HTTPAddr, Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout: 30 * time.Second, WriteTimeout: intake.MaxWait + 20*time.Second, IdleTimeout: 2 * time.Minute})
		p.log.Info("intake listening", "addr", p.cfg.HTTPAddr)
	case p.console != nil:
		p.serveHTTP(opsServer(p.cfg.HTTPAddr, s.OpsHandler()))
		p.log.Info("monitor listening", "addr", p.cfg.HTTPAddr)
	}
	if s.OpsApart {
		p.serveHTTP(opsServer(p.cfg.MetricsAddr, s.MetricsHandler()))
		p.log.Info("http listening", "addr", p.cfg.MetricsAddr, "serves", "/healthz /readyz /metrics")
	}
}

func opsServer(addr string, h http.Handler) *http.Server {
	return &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
}

// serveHTTP serves srv until the process stops, then lets it finish the
// requests it has within 10 s.
func (p *process) serveHTTP(srv *http.Server) {
	go func() { p.httpErr <- srv.ListenAndServe() }()
	p.onStop(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
}
