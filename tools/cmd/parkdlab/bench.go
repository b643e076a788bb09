package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/parkd/parkd/tools/bench"
)

const benchSummary = `The load generator: starts parkd serve (or --topology split) on a fresh database and a
flushed Redis index, or drives a running parkd (--target URL); sets up its own municipality
through the API and reports start+stop pairs/s, latencies, auto-stop lateness, pgbench TPC-B
and the memory of the parkd processes; with --registrar and --webhook, also the lag of
registration (to a register emulator) and of webhooks (to a receiver), both in this process.`

// benchCmd is `parkdlab bench`: flags in, bench.Run out.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := bench.DefaultOptions()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	parkd := fs.String("parkd", "", parkdFlagHelp)
	fs.StringVar(&o.Target, "target", "", "drive a running parkd at this URL (e.g. http://127.0.0.1:8080) instead of starting one")
	// The URL and the secret default to the environment's, but not as flag
	// defaults: -h would print them.
	fs.StringVar(&o.DatabaseURL, "database-url", "", "Postgres: self-contained, the server to create --db-name on; --target, that parkd's database (default: PARKD_DATABASE_URL, else parkd's default)")
	fs.StringVar(&o.DBName, "db-name", o.DBName, "self-contained: database to drop and create")
	fs.StringVar(&o.RedisURL, "redis-url", o.RedisURL, "self-contained: Redis for the parkd processes; its index is FLUSHed at start")
	fs.StringVar(&o.JWTSecret, "jwt-secret", "", "--target: the secret that parkd verifies tokens with (default: PARKD_JWT_SECRET, else parkd's development secret)")
	topology := fs.String("topology", "serve", "self-contained: serve (one process) or split (intake + workers + schedulers)")
	fs.IntVar(&o.Workers, "workers", o.Workers, "split topology: worker processes")
	fs.IntVar(&o.Schedulers, "schedulers", o.Schedulers, "split topology: scheduler processes")
	pids := fs.String("pids", "", "--target: comma-separated PIDs to sample memory of (default: every process named parkd)")
	fs.IntVar(&o.Permits, "permits", o.Permits, "permits (each with its resident, address and top-up) to create")
	fs.IntVar(&o.TopupHours, "topup-hours", o.TopupHours, "hours bought for each permit")
	fs.IntVar(&o.SetupConcurrency, "setup-concurrency", o.SetupConcurrency, "permits set up at once")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "max phase: virtual users, each with its own permits")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of the max and half phases")
	fs.IntVar(&o.Lone, "lone", o.Lone, "idle phase: start+stop pairs sent one at a time")
	fs.Float64Var(&o.HalfRate, "half-rate", o.HalfRate, "half phase: pairs per second (0: half the max phase's)")
	fs.IntVar(&o.HalfPool, "half-pool", o.HalfPool, "half phase: virtual users available to arrivals (0: max(4 x concurrency, 64))")
	fs.Float64Var(&o.RightsRate, "rights-rate", o.RightsRate, "rights phase: checks per second")
	fs.DurationVar(&o.RightsDuration, "rights-duration", o.RightsDuration, "rights phase: length")
	fs.IntVar(&o.RightsParked, "rights-parked", o.RightsParked, "rights phase: sessions parked whose plates are checked")
	fs.IntVar(&o.AutostopEvery, "autostop-every", o.AutostopEvery, "1 in this many starts gets an end_at 1-2 minutes ahead and is left to its auto-stop")
	fs.IntVar(&o.ChangeEvery, "change-every", o.ChangeEvery, "max and half phases: 1 in this many start+stop pairs plans an end an hour ahead and extends it by half an hour (PATCH) before the stop (0: none)")
	fs.DurationVar(&o.AutostopWait, "autostop-wait", o.AutostopWait, "how long to wait for the auto-stops after the phases")
	fs.IntVar(&o.PgbenchClients, "pgbench-clients", o.PgbenchClients, "pgbench: clients")
	fs.IntVar(&o.PgbenchSeconds, "pgbench-seconds", o.PgbenchSeconds, "pgbench: seconds")
	fs.IntVar(&o.PgbenchScale, "pgbench-scale", o.PgbenchScale, "pgbench: scale of the initialised tables")
	fs.BoolVar(&o.Registrar, "registrar", false, "self-contained: give the zone register codes and parkd a register emulator in this process; report the registration lag")
	fs.DurationVar(&o.RegistrarLatency, "registrar-latency", 0, "--registrar: the emulator answers after this long")
	fs.BoolVar(&o.Webhook, "webhook", false, "self-contained: subscribe a webhook receiver in this process to every event; report the webhook lag")
	fs.DurationVar(&o.OutboundWait, "outbound-wait", o.OutboundWait, "--registrar, --webhook: after the phases, how long parkd may take to owe them nothing")
	phases := fs.String("phases", joinList(bench.AllPhases), "phases to run")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the plate sequence")
	childLog := fs.String("child-log", "-", "self-contained: file for the parkd processes' log lines (- for stderr)")
	if err := parseFlags(fs, benchSummary, args, stdout, stderr); err != nil {
		return err
	}
	if o.DatabaseURL == "" {
		o.DatabaseURL = env("PARKD_DATABASE_URL", bench.DefaultOptions().DatabaseURL)
	}
	if o.JWTSecret == "" {
		o.JWTSecret = env("PARKD_JWT_SECRET", devJWTSecret)
	}
	switch *topology {
	case "serve":
	case "split":
		o.Split = true
	default:
		return fmt.Errorf("bench: --topology %q: want serve or split", *topology)
	}
	var err error
	if o.Target == "" {
		if o.Parkd, err = parkdBinary(*parkd); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if o.Phases, err = parseList(*phases, bench.AllPhases, "phase"); err != nil {
		return fmt.Errorf("bench: --phases: %w", err)
	}
	for p := range strings.SplitSeq(*pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		pid, err := strconv.Atoi(p)
		if err != nil {
			return fmt.Errorf("bench: --pids: %q is not a PID", p)
		}
		o.PIDs = append(o.PIDs, pid)
	}
	o.Out, o.ChildLog = stdout, stderr
	if *childLog != "-" {
		f, err := os.Create(*childLog)
		if err != nil {
			return fmt.Errorf("bench: --child-log: %w", err)
		}
		defer f.Close()
		o.ChildLog = f
	}
	res, err := bench.Run(ctx, o)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if *jsonPath != "" {
		if err := bench.WriteJSON(*jsonPath, res); err != nil {
			return fmt.Errorf("bench: --json: %w", err)
		}
	}
	return nil
}

// devJWTSecret is parkd's development secret (cmd/parkd/config.go), which a
// parkd started without PARKD_JWT_SECRET verifies tokens with;
// TestDevSecretIsParkds holds the two together.
const devJWTSecret = "parkd-DEVELOPMENT-ONLY-secret-do-not-use-in-production"

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
