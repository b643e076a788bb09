package chaos

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/parkd/parkd/tools/npr"
)

// Fault is one fault a chaos run injects under load.
type Fault string

// The faults, in the order a chaos run injects them by default.
const (
	// FaultKillWorker SIGKILLs worker 1 and starts it again after
	// Options.WorkerDown.
	FaultKillWorker Fault = "kill-worker"
	// FaultRedisFlushed kills Redis and starts it again empty on the same
	// address: queued tasks, scheduled auto-stops and the reconciler's epoch
	// are gone.
	FaultRedisFlushed Fault = "redis-flushed"
	// FaultPostgresRestart is a fast shutdown and a start of Postgres.
	FaultPostgresRestart Fault = "postgres-restart"
	// FaultPostgresKill SIGKILLs the postmaster and every backend, then starts
	// Postgres again after Options.PostgresDown: crash recovery.
	FaultPostgresKill Fault = "postgres-kill"
	// FaultRedisFailover (TopologySentinel only) SIGKILLs the Redis primary:
	// the Sentinels promote the replica, with whatever the old primary had
	// acknowledged but not yet passed on lost. Once parkd serves again, the
	// killed node is started again, empty, as the new primary's replica, so
	// that a later failover finds a replica to promote.
	FaultRedisFailover Fault = "redis-failover"
)

// AllFaults is every fault, in the order a chaos run of the single topology
// injects them by default, then the Sentinel topology's own.
var AllFaults = []Fault{FaultKillWorker, FaultRedisFlushed, FaultPostgresRestart, FaultPostgresKill, FaultRedisFailover}

// Topology is the Redis a chaos run gives parkd.
type Topology string

const (
	// TopologySingle is one private redis-server.
	TopologySingle Topology = "single"
	// TopologySentinel is a private primary, its replica and three Sentinels
	// (package faults: Sentinel); parkd is given the Sentinels'
	// redis-sentinel:// URL.
	TopologySentinel Topology = "sentinel"
)

// ErrUnavailable is returned (wrapped, saying what is missing) when the
// private Postgres or Redis of a chaos run cannot be had on this machine.
var ErrUnavailable = errors.New("chaos: private servers unavailable")

// Options configure a chaos run. DefaultOptions is the long form.
type Options struct {
	// Dir holds the private servers' files and every log; "" makes a
	// temporary directory, removed at the end unless Keep or a check failed.
	Dir        string
	Keep       bool
	Topology   Topology
	Intakes    int // the load is spread over them, request by request
	Workers    int
	Schedulers int

	Permits          int // the load's permits (one more is set up for the probes)
	TopupHours       int
	SetupConcurrency int
	Concurrency      int           // virtual users, each with its own permits
	AutostopEvery    int           // 1 in this many starts is left to its auto-stop (0: none)
	AutostopAhead    time.Duration // how far ahead such a start's end_at is
	RequestDeadline  time.Duration // a request is sent again until answered or this long has passed
	FollowUp         time.Duration // after the load, unanswered requests are sent again for this long

	Faults       []Fault
	Warmup       time.Duration // load before the first fault
	Spacing      time.Duration // from one fault to the next, and after the last until the load stops
	WorkerDown   time.Duration // kill-worker: how long the worker stays dead
	PostgresDown time.Duration // postgres-kill: how long Postgres stays dead
	// RecoveryTimeout bounds the wait, after a fault, for the intake's
	// /readyz and a probe start+stop.
	RecoveryTimeout time.Duration
	// Grace is `parkd check --grace`, and how long after its planned end a
	// session may be settled.
	Grace time.Duration
	Seed  uint64

	// Registrar gives the run's zone register codes and parkd's processes a
	// registrar: a register emulator in this process (package npr) with
	// RegistrarFaults.
	Registrar       bool
	RegistrarFaults npr.Faults
	// CalmAfterLoad ends the register's faults when the load stops, so
	// that the retries still backing off (up to a minute apart) land while
	// the last auto-stops come due; false keeps them to the end.
	CalmAfterLoad bool
	// Webhook subscribes a webhook receiver in this process (package
	// receiver) to every event; it is down for ReceiverDown from
	// ReceiverDownAt after the load began (503 the first half, connections
	// refused the second; 0: never down).
	Webhook        bool
	ReceiverDownAt time.Duration
	ReceiverDown   time.Duration
	// OutboundWait bounds the wait, once every session settled, for parkd
	// to owe the register and the receiver nothing.
	OutboundWait time.Duration

	// Parkd is the parkd executable the processes run: a binary of its
	// own, as in production.
	Parkd string
	// Out receives the report; ChildLog the parkd processes' log lines
	// (nil: Dir/parkd.log).
	Out      io.Writer
	ChildLog io.Writer
}

// DefaultOptions are the long form's settings: every fault, a minute
// apart (about 6 to 8 minutes in all).
func DefaultOptions() Options {
	return Options{
		Topology:         TopologySingle,
		Intakes:          1,
		Workers:          3,
		Schedulers:       3,
		Permits:          200,
		TopupHours:       100,
		SetupConcurrency: 8,
		Concurrency:      16,
		AutostopEvery:    4,
		AutostopAhead:    time.Minute,
		RequestDeadline:  90 * time.Second,
		FollowUp:         2 * time.Minute,
		Faults:           []Fault{FaultKillWorker, FaultRedisFlushed, FaultPostgresRestart, FaultPostgresKill},
		Warmup:           20 * time.Second,
		Spacing:          time.Minute,
		WorkerDown:       2 * time.Second,
		PostgresDown:     2 * time.Second,
		RecoveryTimeout:  3 * time.Minute,
		Grace:            2 * time.Minute,
		Seed:             1,
		Registrar:        true,
		// Issue 13's proof: 30 % of calls fail, 10 % of acknowledgements
		// are lost after storing, and some versions overtake others.
		RegistrarFaults: npr.Faults{Fail: 0.3, LoseAck: 0.1, Reorder: 0.1, Hold: npr.DefaultHold},
		Webhook:         true,
		ReceiverDownAt:  50 * time.Second, // between the first fault and the second
		ReceiverDown:    time.Minute,
		// With 37 % of calls failing to the end and retries a minute apart,
		// the last of ~30,000 right versions takes 4-5 minutes (measured:
		// docs/BENCHMARKS.md): twice that is the bound.
		OutboundWait: 10 * time.Minute,
	}
}

// ShortOptions are the short form's: small sizes, the faults 15 s apart,
// Postgres killed left out (about two and a half minutes, most of it the
// last auto-stops reaching their planned end).
func ShortOptions() Options {
	o := DefaultOptions()
	o.Permits, o.Concurrency, o.SetupConcurrency = 30, 6, 6
	o.Faults = []Fault{FaultKillWorker, FaultRedisFlushed, FaultPostgresRestart}
	o.Warmup, o.Spacing = 5*time.Second, 15*time.Second
	// Down from just after the first fault until before the third: the
	// deliveries it failed are retried (10-20 s, then 16-40 s later) while
	// the last auto-stops come due.
	o.ReceiverDownAt, o.ReceiverDown = 8*time.Second, 16*time.Second
	o.CalmAfterLoad, o.OutboundWait = true, 3*time.Minute
	return o
}

// SentinelOptions are the Sentinel topology's long form (issue 16, "past
// one machine"): two intakes and three workers on a Redis primary, its
// replica and three Sentinels; the primary SIGKILLed under load, a worker
// killed, and the primary (the first one, back as a replica) killed again,
// a minute apart (about 5 to 7 minutes in all).
func SentinelOptions() Options {
	o := DefaultOptions()
	o.Topology, o.Intakes = TopologySentinel, 2
	o.Faults = SentinelFaults()
	return o
}

// SentinelFaults are the Sentinel topology's faults by default.
func SentinelFaults() []Fault {
	return []Fault{FaultRedisFailover, FaultKillWorker, FaultRedisFailover}
}

func (o *Options) check() error {
	var errs []error
	if o.Parkd == "" {
		errs = append(errs, errors.New("--parkd: the parkd executable is required"))
	}
	switch o.Topology {
	case TopologySingle, TopologySentinel:
	default:
		errs = append(errs, fmt.Errorf("--topology %q: want %s or %s", o.Topology, TopologySingle, TopologySentinel))
	}
	for _, f := range o.Faults {
		if f == FaultRedisFailover && o.Topology != TopologySentinel {
			errs = append(errs, fmt.Errorf("fault %s needs --topology %s (a single Redis has no replica to promote)", f, TopologySentinel))
		}
		if f == FaultRedisFlushed && o.Topology == TopologySentinel {
			errs = append(errs, fmt.Errorf("fault %s is the single topology's (--topology %s); the Sentinel topology's Redis fault is %s", f, TopologySingle, FaultRedisFailover))
		}
	}
	if o.Intakes < 1 {
		errs = append(errs, errors.New("--intakes must be at least 1"))
	}
	if o.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1"))
	}
	if o.Schedulers < 0 {
		errs = append(errs, errors.New("--schedulers must not be negative"))
	}
	if o.Permits < 1 || o.Concurrency < 1 || o.TopupHours < 1 {
		errs = append(errs, errors.New("--permits, --concurrency and --topup-hours must be at least 1"))
	}
	if o.AutostopEvery < 0 {
		errs = append(errs, errors.New("--autostop-every must not be negative"))
	}
	if o.AutostopAhead < time.Minute || o.AutostopAhead%time.Minute != 0 || o.AutostopAhead > 3*time.Hour {
		errs = append(errs, errors.New("--autostop-ahead must be whole minutes, from 1m to 3h"))
	}
	for _, d := range []time.Duration{o.RequestDeadline, o.Spacing, o.RecoveryTimeout, o.Grace} {
		if d <= 0 {
			errs = append(errs, errors.New("--request-deadline, --spacing, --recovery-timeout and --grace must be positive"))
			break
		}
	}
	if err := o.RegistrarFaults.Check(); err != nil {
		errs = append(errs, fmt.Errorf("registrar faults: %w", err))
	}
	if o.Warmup < 0 || o.WorkerDown < 0 || o.PostgresDown < 0 || o.FollowUp < 0 || o.ReceiverDownAt < 0 || o.ReceiverDown < 0 || o.OutboundWait < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

func faultList(fs []Fault) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = string(f)
	}
	return strings.Join(parts, ", ")
}
