// Command parkd runs the digital visitor parking permit system. Each subcommand
// is a role; `parkd serve` runs them all in one process.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
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
PARKD_PPROF_ADDR (a loopback HOST:PORT for Go's profiler), PARKD_LOG_LEVEL (debug, info, warn, error).
PARKD_ENV is development (the default) or production, nothing else; production needs
PARKD_JWT_SECRET of at least 32 bytes. An invalid value stops every command before it starts.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	if wantsUsage(os.Args[1], os.Args[2:]) {
		fmt.Fprint(os.Stdout, usage)
		return
	}
	// Before anything else: no command connects anywhere, or signs anything,
	// with a configuration it would misread.
	cfg, err := loadConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "parkd: configuration (nothing started):\n%s\n", indent(err.Error()))
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

// wantsUsage says whether the command line asks for usage (help, -h, --help),
// which needs no configuration: it must work where the configuration is wrong,
// and start nothing. bench and chaos print their own flags.
func wantsUsage(cmd string, args []string) bool {
	help := func(a string) bool { return a == "help" || a == "-h" || a == "-help" || a == "--help" }
	if help(cmd) {
		return true
	}
	if cmd == "bench" || cmd == "chaos" {
		return false
	}
	for _, a := range args {
		if a == "--" {
			break
		}
		if a != "help" && help(a) {
			return true
		}
	}
	return false
}

func indent(s string) string { return "  " + strings.ReplaceAll(s, "\n", "\n  ") }
