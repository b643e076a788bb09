package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/jobs"
)

// Config tunes the asynq server.
type Config struct {
	Concurrency int
	// TaskCheckInterval is how long an idle worker sleeps before looking at its
	// queues again; it bounds the latency of a lone request on an idle system.
	TaskCheckInterval time.Duration
	// DelayedTaskCheckInterval is how often due scheduled tasks (auto-stops) and
	// retries are moved to their queues: the bulk of an auto-stop's lateness.
	DelayedTaskCheckInterval time.Duration
	ShutdownTimeout          time.Duration
}

// Defaults for Config.
const (
	DefaultConcurrency = 64
	// DefaultTaskCheckInterval is how long an idle server sleeps before it
	// looks at its queues again: a request waits for that look. At 10 ms a
	// start's p99 at half the maximum rate was 30 ms; at 3 ms it is under 25
	// (docs/BENCHMARKS.md, issue 16), for an idle process's few per cent of a
	// core more (9-12 % instead of 5 %, measured: its queues looked at 333
	// times a second instead of 100).
	DefaultTaskCheckInterval        = 3 * time.Millisecond
	DefaultDelayedTaskCheckInterval = 500 * time.Millisecond
	DefaultShutdownTimeout          = 20 * time.Second
)

// Server serves parkd's own queues with two asynq servers: one for
// jobs.QueueCritical alone (session requests and auto-stops), and one for
// jobs.QueueDefault and jobs.QueueMaintenance (permit requests, ending
// notices, the scheduled jobs), weighted 3 to 1.
//
// Why two: asynq looks at a server's queues one Redis call each, in an order
// drawn by weight for every look, so a session task behind two other queues
// cost up to three calls to fetch (1.5 on average at weights 6:3:1), and an
// idle server three calls per look. Alone on its server, the critical queue
// is fetched in one. Its slots are its own, too: a burst of ending notices or
// a rollover never holds one a session needs, and under a flood of sessions
// the maintenance queue is still served (strict priority on one server would
// starve it).
type Server struct {
	sessions, others *asynq.Server
}

// NewServer builds the servers of parkd's own queues: the critical queue's
// with cfg as given, and the other queues' with a quarter of cfg.Concurrency
// (at least 8) and a look every OtherTaskCheckInterval (a permit request or a
// notice may wait those milliseconds; a session's start never does).
func NewServer(redisOpt asynq.RedisConnOpt, cfg Config, log *slog.Logger) *Server {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.TaskCheckInterval <= 0 {
		cfg.TaskCheckInterval = DefaultTaskCheckInterval
	}
	if cfg.DelayedTaskCheckInterval <= 0 {
		cfg.DelayedTaskCheckInterval = DefaultDelayedTaskCheckInterval
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	server := func(queues map[string]int, concurrency int, check time.Duration) *asynq.Server {
		return asynq.NewServer(redisOpt, asynq.Config{
			Concurrency:              concurrency,
			Queues:                   queues,
			TaskCheckInterval:        check,
			DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
			ShutdownTimeout:          cfg.ShutdownTimeout,
			RetryDelayFunc:           RetryDelay,
			Logger:                   asynqLogger{log.With("component", "asynq")},
			ErrorHandler:             logArchived(log),
		})
	}
	others := map[string]int{}
	for q, w := range jobs.Queues() {
		if q != jobs.QueueCritical {
			others[q] = w
		}
	}
	return &Server{
		sessions: server(map[string]int{jobs.QueueCritical: 1}, cfg.Concurrency, cfg.TaskCheckInterval),
		others:   server(others, max(cfg.Concurrency/4, 8), max(cfg.TaskCheckInterval, OtherTaskCheckInterval)),
	}
}

// OtherTaskCheckInterval is how long the server of the default and
// maintenance queues sleeps when idle before it looks again (never less than
// Config.TaskCheckInterval).
const OtherTaskCheckInterval = 10 * time.Millisecond

// Start starts both servers with handler (Handlers.Mux).
func (s *Server) Start(handler asynq.Handler) error {
	if err := s.sessions.Start(handler); err != nil {
		return err
	}
	if err := s.others.Start(handler); err != nil {
		s.sessions.Shutdown()
		return err
	}
	return nil
}

// Shutdown stops both servers, each waiting up to its ShutdownTimeout for
// the tasks it runs (at once, so the wait is not doubled).
func (s *Server) Shutdown() {
	done := make(chan struct{})
	go func() { defer close(done); s.others.Shutdown() }()
	s.sessions.Shutdown()
	<-done
}

// logArchived logs a task asynq archives after its last retry: what an
// operator then finds in asynqmon's Archived tab.
func logArchived(log *slog.Logger) asynq.ErrorHandler {
	return asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		if retried >= maxRetry {
			id, _ := asynq.GetTaskID(ctx)
			log.Error("task archived after its last retry", "task_id", id, "task_type", t.Type(), "err", err)
		}
	})
}

// RetryDelay backs off exponentially from one second, capped at five minutes,
// with jitter so that a crowd of tasks failed by one outage does not return at once.
func RetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	d := time.Second << min(n, 9)
	d = min(d, 5*time.Minute)
	return d/2 + rand.N(d/2+1)
}

// asynqLogger sends asynq's own log lines to slog.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...)) }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...)) }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...)) }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...)) }
func (a asynqLogger) Fatal(args ...any) { a.l.Error(fmt.Sprint(args...)); os.Exit(1) }

// AsynqLogger returns an asynq.Logger that writes to l.
func AsynqLogger(l *slog.Logger) asynq.Logger { return asynqLogger{l.With("component", "asynq")} }

// OutboundConfig tunes an outbound asynq server (NewOutboundServer).
type OutboundConfig struct {
	Concurrency int // default 32
	// RetryDelay is the backoff of the queue's tasks (default RetryDelay).
	RetryDelay asynq.RetryDelayFunc
	// TaskCheckInterval and DelayedTaskCheckInterval as in Config.
	TaskCheckInterval        time.Duration
	DelayedTaskCheckInterval time.Duration
	ShutdownTimeout          time.Duration
}

// NewOutboundServer builds an asynq server for one outbound queue
// (jobs.QueueWebhooks or jobs.QueueRegistrar), apart from the server of
// parkd's own queues (NewServer): its slots are the only ones a slow or dead
// receiver can hold, so sessions are never kept waiting by one. It serves the
// same mux (Handlers.Mux).
func NewOutboundServer(redisOpt asynq.RedisConnOpt, queue string, cfg OutboundConfig, log *slog.Logger) *asynq.Server {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 32
	}
	if cfg.RetryDelay == nil {
		cfg.RetryDelay = RetryDelay
	}
	if cfg.TaskCheckInterval <= 0 {
		cfg.TaskCheckInterval = DefaultTaskCheckInterval
	}
	if cfg.DelayedTaskCheckInterval <= 0 {
		cfg.DelayedTaskCheckInterval = DefaultDelayedTaskCheckInterval
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	l := log.With("component", "asynq", "queue", queue)
	retryDelay := cfg.RetryDelay
	return asynq.NewServer(redisOpt, asynq.Config{
		Concurrency:              cfg.Concurrency,
		Queues:                   map[string]int{queue: 1},
		TaskCheckInterval:        cfg.TaskCheckInterval,
		DelayedTaskCheckInterval: cfg.DelayedTaskCheckInterval,
		ShutdownTimeout:          cfg.ShutdownTimeout,
		// A task that did not try (ErrNotTried) is run again shortly and
		// keeps its retries: it never reached its receiver.
		IsFailure: func(err error) bool { return !errors.Is(err, ErrNotTried) },
		RetryDelayFunc: func(n int, err error, t *asynq.Task) time.Duration {
			if errors.Is(err, ErrNotTried) {
				return NotTriedDelay/2 + rand.N(NotTriedDelay/2+1)
			}
			return retryDelay(n, err, t)
		},
		Logger:       asynqLogger{l},
		ErrorHandler: logArchived(log),
	})
}

// ErrNotTried is what an outbound task returns when it did not try its call
// because its receiver already has as many calls in flight as it may have
// (DeliveryConfig.MaxInFlight): the outbound server runs it again after about
// NotTriedDelay without counting a retry, so waiting its turn never brings a
// task nearer its archive.
var ErrNotTried = errors.New("not tried: the receiver has its share of calls in flight")

// NotTriedDelay is how long, with jitter, a task that did not try waits.
const NotTriedDelay = 2 * time.Second
