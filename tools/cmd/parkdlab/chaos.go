package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/tools/chaos"
)

const chaosSummary = `Faults under load: parkd's split topology (1 intake, 3 workers, 3 schedulers) on a private
Postgres and Redis it starts itself (never the machine's), a worker SIGKILLed and restarted,
Redis restarted empty, Postgres restarted and then crashed, a register emulator failing 30 % of
calls and losing 10 % of acknowledgements, a webhook receiver down for a minute; parkd check
after each, and at the end every session settled, every answer the client got matched against
the database, every right in the register as parkd's session, every event delivered (signed)
and in the feed once. Exit 1 if any check fails.

--topology sentinel (issue 16, past one machine): 2 intakes, 3 workers and 3 schedulers on a
Redis primary, its replica and three Sentinels (the same redis-server binary with --sentinel);
parkd is given the Sentinels' redis-sentinel:// URL; the primary is SIGKILLed under load
(redis-failover), a worker is killed, and the new primary is killed in turn; the time from each
SIGKILL to the Sentinels' promotion and to a probe start+stop answered is reported.`

// chaosCmd is `parkdlab chaos`: flags in, chaos.Run out.
func chaosCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := chaos.DefaultOptions()
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	parkd := fs.String("parkd", "", parkdFlagHelp)
	fs.StringVar(&o.Dir, "dir", "", "directory for the private servers' files and the logs (default: a temporary one, removed when every check passes)")
	fs.BoolVar(&o.Keep, "keep", false, "keep the temporary directory even when every check passes")
	topology := fs.String("topology", string(o.Topology), "the Redis parkd is given: single (one redis-server) or sentinel (a primary, a replica and 3 Sentinels; then 2 intakes and the faults redis-failover, kill-worker, redis-failover unless --intakes or --faults say otherwise)")
	fs.IntVar(&o.Intakes, "intakes", o.Intakes, "intake processes; the load takes them in turn, request by request")
	fs.IntVar(&o.Workers, "workers", o.Workers, "worker processes")
	fs.IntVar(&o.Schedulers, "schedulers", o.Schedulers, "scheduler processes")
	fs.IntVar(&o.Permits, "permits", o.Permits, "permits of the load (one more is set up for the probes)")
	fs.IntVar(&o.TopupHours, "topup-hours", o.TopupHours, "hours bought for each permit")
	fs.IntVar(&o.SetupConcurrency, "setup-concurrency", o.SetupConcurrency, "permits set up at once")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "virtual users, each with its own permits")
	fs.IntVar(&o.AutostopEvery, "autostop-every", o.AutostopEvery, "1 in this many starts gets an end_at --autostop-ahead later and is left to its auto-stop (0: none)")
	fs.DurationVar(&o.AutostopAhead, "autostop-ahead", o.AutostopAhead, "end_at of the starts left to their auto-stop, from their start (whole minutes)")
	fs.DurationVar(&o.RequestDeadline, "request-deadline", o.RequestDeadline, "a request is sent again (same key) until definitively answered or this long has passed")
	fs.DurationVar(&o.FollowUp, "follow-up", o.FollowUp, "after the load, requests still unanswered are sent again for this long")
	faultList := fs.String("faults", joinList(o.Faults), "faults to inject, in order: kill-worker, redis-flushed, postgres-restart, postgres-kill (single), redis-failover (sentinel)")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "load before the first fault")
	fs.DurationVar(&o.Spacing, "spacing", o.Spacing, "from one fault to the next, and after the last until the load stops")
	fs.DurationVar(&o.WorkerDown, "worker-down", o.WorkerDown, "kill-worker: how long the worker stays dead")
	fs.DurationVar(&o.PostgresDown, "postgres-down", o.PostgresDown, "postgres-kill: how long Postgres stays dead")
	fs.DurationVar(&o.RecoveryTimeout, "recovery-timeout", o.RecoveryTimeout, "after a fault, how long parkd may take to answer /readyz and a probe start+stop")
	fs.DurationVar(&o.Grace, "grace", o.Grace, "parkd check --grace, and how long after its planned end a session may be settled")
	fs.Uint64Var(&o.Seed, "seed", o.Seed, "seed of the plate sequence")
	fs.BoolVar(&o.Registrar, "registrar", o.Registrar, "give the zone register codes and parkd a register emulator in this process (PARKD_REGISTRAR_URL)")
	fs.Float64Var(&o.RegistrarFaults.Fail, "registrar-fail", o.RegistrarFaults.Fail, "register emulator: share of PUTs answered 503 before storing (0 to 1)")
	fs.Float64Var(&o.RegistrarFaults.LoseAck, "registrar-lose-ack", o.RegistrarFaults.LoseAck, "register emulator: share of PUTs stored, then answered 500 or cut off (0 to 1)")
	fs.Float64Var(&o.RegistrarFaults.Reorder, "registrar-reorder", o.RegistrarFaults.Reorder, "register emulator: share of PUTs held back up to 2 s, so that later ones overtake them (0 to 1)")
	fs.BoolVar(&o.CalmAfterLoad, "registrar-calm-after-load", o.CalmAfterLoad, "end the register emulator's faults when the load stops (default: they last to the end)")
	fs.BoolVar(&o.Webhook, "webhook", o.Webhook, "subscribe a webhook receiver in this process to every event, and hold it to parkd's events at the end")
	fs.DurationVar(&o.ReceiverDownAt, "receiver-down-at", o.ReceiverDownAt, "when the webhook receiver goes down, from the load's start")
	fs.DurationVar(&o.ReceiverDown, "receiver-down", o.ReceiverDown, "how long it stays down: 503 the first half, connections refused the second (0: never)")
	fs.DurationVar(&o.OutboundWait, "outbound-wait", o.OutboundWait, "once every session settled, how long parkd may take to owe the register and the receiver nothing")
	jsonPath := fs.String("json", "", "also write the results as JSON to this file")
	childLog := fs.String("child-log", "", "file for the parkd processes' log lines, - for stderr (default: parkd.log in --dir)")
	if err := parseFlags(fs, chaosSummary, args, stdout, stderr); err != nil {
		return err
	}
	var err error
	if o.Parkd, err = parkdBinary(*parkd); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.Topology = chaos.Topology(*topology)
	if o.Topology == chaos.TopologySentinel {
		so := chaos.SentinelOptions()
		if !set["intakes"] {
			o.Intakes = so.Intakes
		}
		if !set["faults"] {
			*faultList = joinList(so.Faults)
		}
	}
	if o.Faults, err = parseList(*faultList, chaos.AllFaults, "fault"); err != nil {
		return fmt.Errorf("chaos: --faults: %w", err)
	}
	o.Out = stdout
	// This process talks to Redis only to see the private server come up
	// (dials refused until it listens, which go-redis would log) and to read
	// it at the end: its pool's chatter is noise in the report.
	redis.SetLogger(quietRedis{})
	switch *childLog {
	case "":
	case "-":
		o.ChildLog = stderr
	default:
		f, err := os.Create(*childLog)
		if err != nil {
			return fmt.Errorf("chaos: --child-log: %w", err)
		}
		defer f.Close()
		o.ChildLog = f
	}
	res, err := chaos.Run(ctx, o)
	if res != nil && *jsonPath != "" {
		b, jerr := json.MarshalIndent(res, "", "  ")
		if jerr == nil {
			jerr = os.WriteFile(*jsonPath, append(b, '\n'), 0o644)
		}
		if jerr != nil {
			return errors.Join(err, fmt.Errorf("chaos: --json: %w", jerr))
		}
	}
	return err
}

// quietRedis discards go-redis' own messages.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}
