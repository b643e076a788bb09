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
)

const usage = `parkd: digital visitor parking permits

usage: parkd <command> [flags]

commands:
  serve       every role in one process (intake + worker + scheduler)
  worker      the asynq worker: applies the rules, settles into Postgres
  scheduler   periodic tasks (reconciliation every minute)
  migrate     bring the database schema up to date
  seed FILE   load a municipality (zones, addresses, registrations, permits) from JSON

configuration (environment): PARKD_DATABASE_URL, PARKD_REDIS_URL, PARKD_HTTP_ADDR,
PARKD_JWT_SECRET, PARKD_ENV, PARKD_DB_MAX_CONNS, PARKD_WORKER_CONCURRENCY,
PARKD_TASK_CHECK_INTERVAL, PARKD_DELAYED_TASK_CHECK_INTERVAL, PARKD_STARTUP_WAIT
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
	slog.SetDefault(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "serve":
		err = run(ctx, cfg, log, roles{intake: true, worker: true, scheduler: true, migrate: true})
	case "worker":
		err = run(ctx, cfg, log, roles{worker: true})
	case "scheduler":
		err = run(ctx, cfg, log, roles{scheduler: true})
	case "migrate":
		err = migrateCmd(ctx, cfg, log)
	case "seed":
		err = seedCmd(ctx, cfg, log, args)
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
	if cfg.Env == "production" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, nil))
}
