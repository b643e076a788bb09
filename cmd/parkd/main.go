// Command parkd runs the digital visitor parking permit system. Each subcommand
// is a role; `parkd serve` runs them all in one process.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/redis/go-redis/v9"
)

const usage = `parkd: digital visitor parking permits

usage: parkd <command> [flags]

commands:
  serve       every role in one process (intake + worker + scheduler + monitor at /monitor/)
  intake      the HTTP API: validates, enqueues, waits briefly for the outcome
  worker      the asynq worker: applies the rules, settles into Postgres
  scheduler   periodic tasks (reconciliation every minute, permit-year rollover hourly at :05)
  monitor     asynqmon at /monitor/ behind operator sign-in, with /healthz, /readyz, /metrics
              (asynq's queue metrics) on PARKD_HTTP_ADDR
  migrate     bring the database schema up to date
  check       audit Postgres: ledgers, reservations, settlements, request effects (exit 1 on a violation)
  seed FILE   load a municipality (zones, addresses, registrations, permits) from JSON
  import registrations FILE.csv
              load a BRP extract (CSV with a header naming resident_id,address_id);
              idempotent; lists rejected rows by line, exit 0 once the file is read
  token       mint a bearer token: --role R --sub S [--permits 1,2] [--ttl 24h]

configuration (environment): PARKD_DATABASE_URL, PARKD_REDIS_URL, PARKD_HTTP_ADDR,
PARKD_JWT_SECRET, PARKD_ENV, PARKD_DB_MAX_CONNS, PARKD_WORKER_CONCURRENCY,
PARKD_SETTLE_BATCH, PARKD_SETTLE_COMMITTERS (requests per shared settlement transaction, and such transactions at once),
PARKD_TASK_CHECK_INTERVAL, PARKD_DELAYED_TASK_CHECK_INTERVAL, PARKD_STARTUP_WAIT,
PARKD_RATE_LIMIT, PARKD_RATE_BURST (intake: requests per second and burst per token subject),
PARKD_DB_CONN_MAX_LIFETIME, PARKD_MONITOR_READONLY (true: asynqmon view-only),
PARKD_METRICS_ADDR (worker, scheduler: where to serve /metrics, /healthz, /readyz),
PARKD_LOG_LEVEL (debug, info, warn, error)
`

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "parkd: configuration:", err)
		os.Exit(2)
	}
	log := newLogger(cfg)
	slog.SetDefault(log) // the standard log package's lines too (asynq's x/metrics)
	redis.SetLogger(redisLog{log.With("component", "redis")})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "serve":
		err = run(ctx, cfg, log, roles{intake: true, worker: true, scheduler: true, monitor: true, migrate: true})
	case "intake":
		err = run(ctx, cfg, log, roles{intake: true})
	case "token":
		err = tokenCmd(cfg, args, os.Stdout)
	case "worker":
		err = run(ctx, cfg, log, roles{worker: true})
	case "scheduler":
		err = run(ctx, cfg, log, roles{scheduler: true})
	case "monitor":
		err = run(ctx, cfg, log, roles{monitor: true})
	case "migrate":
		err = migrateCmd(ctx, cfg, log)
	case "check":
		err = checkCmd(ctx, cfg, log, args, os.Stdout)
	case "seed":
		err = seedCmd(ctx, cfg, log, args)
	case "import":
		err = importCmd(ctx, cfg, log, args)
	default:
		fmt.Fprintf(os.Stderr, "parkd: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		log.Error("parkd "+cmd+" failed", "err", err)
		os.Exit(1)
	}
}

func newLogger(cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.Env == "production" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
