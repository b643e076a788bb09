package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/parkd/parkd/tools/cluster"
	"github.com/parkd/parkd/tools/load"
)

// Phases, in the order they run.
const (
	PhaseIdle     = "idle"
	PhaseMax      = "max"
	PhaseHalf     = "half"
	PhaseRights   = "rights"
	PhaseAutostop = "autostop"
	PhaseCheck    = "check"
	PhasePgbench  = "pgbench"
)

// AllPhases is every phase, the default.
var AllPhases = []string{PhaseIdle, PhaseMax, PhaseHalf, PhaseRights, PhaseAutostop, PhaseCheck, PhasePgbench}

// Options configure a bench run. DefaultOptions gives the figures' settings.
type Options struct {
	// Target is the base URL of a running parkd to drive; empty runs
	// self-contained: a fresh database DBName on the server of DatabaseURL, a
	// flushed RedisURL, and parkd child processes (see Cluster).
	Target      string
	DatabaseURL string // target: that parkd's database (read for auto-stop lateness)
	DBName      string // self-contained: the database to create
	RedisURL    string // self-contained: flushed at start
	JWTSecret   string // target: the secret that parkd verifies tokens with
	Split       bool   // self-contained: intake, workers and schedulers as separate processes
	Workers     int
	Schedulers  int
	PIDs        []int // target: processes to sample memory of (default: every process named parkd)

	Permits          int
	TopupHours       int
	SetupConcurrency int
	Concurrency      int           // max phase: virtual users
	Duration         time.Duration // max and half phases
	Lone             int           // idle phase: pairs
	LonePause        time.Duration
	HalfRate         float64 // pairs/s; 0: half of the max phase's
	HalfPool         int     // half phase: users available to arrivals (0: max(4×Concurrency, 64))
	RightsRate       float64
	RightsDuration   time.Duration
	RightsParked     int // sessions parked for the rights phase
	RightsPool       int
	ScanCars         int // enforcement subjects the rights checks are spread over
	AutostopEvery    int // 1 in N starts is left to its auto-stop (0: none)
	ChangeEvery      int // 1 in N pairs extends its session before the stop (0: none)
	AutostopWait     time.Duration
	PgbenchClients   int
	PgbenchSeconds   int
	PgbenchScale     int
	PgbenchDBName    string
	Phases           []string
	Seed             uint64
	RSSInterval      time.Duration

	// Parkd is the parkd executable to run (self-contained): a binary of
	// its own, as in production.
	Parkd string
	// Out receives the report; ChildLog the parkd processes' log lines (nil: discarded).
	Out      io.Writer
	ChildLog io.Writer
	// AllowClaimedRedis lets a test flush the Redis index it claimed itself.
	AllowClaimedRedis bool
	// DropDB drops the self-contained database at the end (it is kept by
	// default, for `parkd check` or a look with psql).
	DropDB bool

	// Registrar (self-contained) gives the zone register codes and parkd a
	// register emulator in this process, answering after RegistrarLatency;
	// Webhook subscribes a receiver in this process to every event. After
	// the phases the bench waits up to OutboundWait for parkd to owe them
	// nothing, and times both (outbound.go).
	Registrar        bool
	RegistrarLatency time.Duration
	Webhook          bool
	OutboundWait     time.Duration
}

// DefaultOptions are the settings the figures are measured with.
func DefaultOptions() Options {
	return Options{
		DatabaseURL:      "postgres://postgres@127.0.0.1:5432/parkd?sslmode=disable",
		DBName:           "parkd_bench",
		RedisURL:         "redis://127.0.0.1:6379/15",
		Workers:          2,
		Schedulers:       1,
		Permits:          1000,
		TopupHours:       100,
		SetupConcurrency: 16,
		// Enough users to saturate parkd on two cores (the rate levels off
		// between 64 and 128: docs/BENCHMARKS.md), so that the max phase
		// measures the maximum and the half phase half of it.
		Concurrency:    64,
		Duration:       30 * time.Second,
		Lone:           20,
		LonePause:      250 * time.Millisecond,
		RightsRate:     1000,
		RightsDuration: 20 * time.Second,
		RightsParked:   100,
		RightsPool:     256,
		ScanCars:       64,
		AutostopEvery:  10,
		ChangeEvery:    0,
		AutostopWait:   4 * time.Minute,
		PgbenchClients: 8,
		PgbenchSeconds: 30,
		PgbenchScale:   10,
		PgbenchDBName:  "parkd_pgbench",
		Phases:         slices.Clone(AllPhases),
		Seed:           1,
		RSSInterval:    500 * time.Millisecond,
		OutboundWait:   3 * time.Minute,
	}
}

func (o *Options) has(phase string) bool { return slices.Contains(o.Phases, phase) }

func (o *Options) check() error {
	var errs []error
	if o.Permits < 1 {
		errs = append(errs, errors.New("--permits must be at least 1"))
	}
	if o.Concurrency < 1 {
		errs = append(errs, errors.New("--concurrency must be at least 1"))
	}
	if o.Duration <= 0 || o.RightsDuration <= 0 {
		errs = append(errs, errors.New("durations must be positive"))
	}
	if o.HalfRate < 0 || o.RightsRate <= 0 {
		errs = append(errs, errors.New("rates must be positive"))
	}
	if o.AutostopEvery < 0 || o.ChangeEvery < 0 || o.Lone < 0 {
		errs = append(errs, errors.New("--autostop-every, --change-every and --lone must not be negative"))
	}
	if o.Split && o.Workers < 1 {
		errs = append(errs, errors.New("--workers must be at least 1 with --topology split"))
	}
	if o.Target == "" && o.Parkd == "" {
		errs = append(errs, errors.New("--parkd: the parkd executable is required unless --target is given"))
	}
	if o.Target != "" && o.JWTSecret == "" {
		errs = append(errs, errors.New("--jwt-secret is required with --target"))
	}
	if o.Target != "" && (o.Registrar || o.Webhook) {
		errs = append(errs, errors.New("--registrar and --webhook start parkd themselves: not with --target"))
	}
	if o.RegistrarLatency < 0 || o.OutboundWait < 0 {
		errs = append(errs, errors.New("--registrar-latency and --outbound-wait must not be negative"))
	}
	return errors.Join(errs...)
}

// Results are everything a run measured; --json writes them.
type Results struct {
	StartedAt    time.Time                   `json:"started_at"`
	Mode         string                      `json:"mode"` // self-contained or target
	Target       string                      `json:"target,omitempty"`
	Topology     string                      `json:"topology,omitempty"`
	Permits      int                         `json:"permits"`
	Concurrency  int                         `json:"concurrency"`
	PhaseSeconds float64                     `json:"phase_seconds"`
	Seed         uint64                      `json:"seed"`
	CPUs         int                         `json:"cpus"`
	LoadStart    string                      `json:"loadavg_start"`
	LoadEnd      string                      `json:"loadavg_end"`
	SetupSeconds float64                     `json:"setup_seconds"`
	Idle         *IdleResult                 `json:"idle,omitempty"`
	Max          *LoadResult                 `json:"max,omitempty"`
	Half         *LoadResult                 `json:"half,omitempty"`
	Rights       *RightsResult               `json:"rights,omitempty"`
	Autostop     *AutostopResult             `json:"autostop,omitempty"`
	Check        *cluster.CheckResult        `json:"check,omitempty"`
	Redis        *load.RedisState            `json:"redis,omitempty"`    // self-contained: the queues after the load
	Outbound     *OutboundResult             `json:"outbound,omitempty"` // --registrar, --webhook
	Pgbench      *PgbenchResult              `json:"pgbench,omitempty"`
	PairsPerTPCB float64                     `json:"pairs_per_tpcb,omitempty"` // max phase pairs/s ÷ TPC-B tps
	RSS          *RSSResult                  `json:"rss,omitempty"`
	Logs         map[string]cluster.LogCount `json:"logs,omitempty"`
	Crashed      []string                    `json:"crashed,omitempty"`
	Skipped      []string                    `json:"skipped,omitempty"`
	Problems     []string                    `json:"problems"`
	TotalSeconds float64                     `json:"total_seconds"`
}

// Run runs the bench and writes its report to o.Out as it goes. It returns an
// error only when the bench itself could not run (setup failed, parkd did not
// start); what parkd got wrong under load is in Results.Problems.
func Run(ctx context.Context, o Options) (_ *Results, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	t0 := time.Now()
	res := &Results{StartedAt: t0.UTC(), Permits: o.Permits, Concurrency: o.Concurrency,
		PhaseSeconds: o.Duration.Seconds(), Seed: o.Seed, CPUs: runtime.NumCPU(), LoadStart: load.LoadAvg()}
	pr := &printer{w: o.Out}
	if o.Target != "" {
		res.Mode, res.Target = "target", o.Target
	} else {
		res.Mode, res.Topology = "self-contained", "serve"
		if o.Split {
			res.Topology = fmt.Sprintf("split (1 intake, %d workers, %d schedulers)", o.Workers, o.Schedulers)
		}
	}
	pr.header(res, o)

	// Self-contained: a database and Redis index of the bench's own, and parkd.
	var cl *cluster.Cluster
	stopped := false
	stopCluster := func() {
		if cl == nil || stopped {
			return
		}
		stopped = true
		// SIGTERM's drain is part of what is measured: a parkd that does not
		// stop cleanly is a problem to report.
		if err := cl.Stop(30 * time.Second); err != nil {
			res.Problems = append(res.Problems, err.Error())
		}
	}
	base, dbURL := o.Target, o.DatabaseURL
	ob, stopOutbound, err := startOutbound(o)
	if err != nil {
		return nil, err
	}
	defer stopOutbound()
	if ob.register != nil {
		pr.linef("register  emulator at %s (answers after %s); the zone has register codes", ob.register.URL, o.RegistrarLatency)
	}
	if ob.rx != nil {
		pr.linef("webhook   receiver at %s, subscribed to every event", ob.rx.URL())
	}
	if o.Target == "" {
		if dbURL, err = load.RecreateDB(ctx, o.DatabaseURL, o.DBName); err != nil {
			return nil, err
		}
		pr.linef("database  %s created afresh (dropped first if it existed)", redact(dbURL))
		idx, err := flushRedis(ctx, o.RedisURL, o.AllowClaimedRedis)
		if err != nil {
			return nil, err
		}
		pr.linef("redis     FLUSHDB of index %d at %s (the bench's index: everything in it is gone)", idx, redact(o.RedisURL))
		o.JWTSecret = load.RandomSecret()
		cl = &cluster.Cluster{Parkd: o.Parkd, Split: o.Split, Workers: o.Workers, Schedulers: o.Schedulers, Log: o.ChildLog,
			Env: []string{
				"PARKD_DATABASE_URL=" + dbURL,
				"PARKD_REDIS_URL=" + o.RedisURL,
				"PARKD_JWT_SECRET=" + o.JWTSecret,
				"PARKD_LOG_LEVEL=warn",
				// The intake's per-subject token bucket would measure itself,
				// not parkd; each resident has its own subject anyway.
				"PARKD_RATE_LIMIT=1000000",
				"PARKD_RATE_BURST=1000000",
			}}
		cl.Env = append(cl.Env, ob.env()...)
		ts := time.Now()
		if err := cl.Start(ctx); err != nil {
			return nil, err
		}
		defer stopCluster()
		base = cl.URL()
		pr.linef("parkd     %s ready in %.1fs at %s", cl.Describe(), time.Since(ts).Seconds(), base)
	} else if err := checkReady(ctx, base); err != nil {
		return nil, err
	}

	// Memory of the parkd processes, sampled through the whole run.
	sampler := &RSSSampler{Interval: o.RSSInterval, Procs: func() []cluster.ProcRef { return FindParkd(os.Getpid()) }}
	switch {
	case cl != nil:
		sampler.Procs = cl.PIDs
	case len(o.PIDs) > 0:
		sampler.Procs = func() []cluster.ProcRef {
			refs := make([]cluster.ProcRef, len(o.PIDs))
			for i, pid := range o.PIDs {
				refs[i] = cluster.ProcRef{Name: procName(pid), PID: pid}
			}
			return refs
		}
	}
	sctx, stopSampler := context.WithCancel(context.WithoutCancel(ctx))
	samplerDone := make(chan struct{})
	go func() { defer close(samplerDone); sampler.Run(sctx) }()
	defer func() { stopSampler(); <-samplerDone }()

	a := load.NewClient(base, max(o.RightsPool, o.HalfPool, 4*o.Concurrency, 64)+16)
	defer a.Close()
	run := fmt.Sprintf("%d", t0.Unix())
	tk := load.Tokens{Secret: []byte(o.JWTSecret), TTL: 24 * time.Hour}
	if err := ob.subscribe(ctx, a, tk); err != nil {
		return nil, err
	}
	ts := time.Now()
	w, err := load.Setup(ctx, a, tk, load.SetupConfig{Run: run, Permits: o.Permits, TopupHours: o.TopupHours,
		Concurrency: o.SetupConcurrency, ScanCars: o.ScanCars, Registration: ob.registration()})
	if err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	res.SetupSeconds = time.Since(ts).Seconds()
	pr.linef("setup     zone %s, %d permits (address, registration, permit, top-up of %d h each) in %.1fs",
		w.Zone, o.Permits, o.TopupHours, res.SetupSeconds)

	d := &driver{api: a, w: w, run: run, plates: load.NewPlateGen(load.ShapeParked, o.Seed), never: load.NewPlateGen(load.ShapeNeverParked, o.Seed),
		changeEvery: o.ChangeEvery}
	if o.has(PhaseAutostop) {
		d.autostopEvery = o.AutostopEvery
	}
	if o.has(PhaseIdle) && o.Lone > 0 && ctx.Err() == nil {
		r := d.runIdle(ctx, o.Lone, o.LonePause)
		res.Idle = &r
		pr.idle(r)
	}
	var maxFrom, maxTo time.Time
	if o.has(PhaseMax) && ctx.Err() == nil {
		maxFrom = time.Now()
		r := d.runMax(ctx, o.Concurrency, o.Duration)
		maxTo = time.Now()
		res.Max = &r
		pr.load(r)
	}
	if o.has(PhaseHalf) && ctx.Err() == nil {
		rate := o.HalfRate
		if rate == 0 && res.Max != nil {
			rate = res.Max.PairsPerSec / 2
		}
		if rate > 0 {
			pool := o.HalfPool
			if pool == 0 {
				pool = max(4*o.Concurrency, 64)
			}
			r := d.runHalf(ctx, rate, pool, o.Duration)
			res.Half = &r
			pr.load(r)
		} else {
			res.Skipped = append(res.Skipped, "half: no --half-rate and no max phase to take half of")
			pr.linef("half      skipped: no --half-rate and no max phase to take half of")
		}
	}
	if o.has(PhaseRights) && ctx.Err() == nil {
		r := d.runRights(ctx, o.RightsRate, o.RightsDuration, o.RightsParked, o.RightsPool)
		res.Rights = &r
		pr.rights(r)
	}
	if o.has(PhaseAutostop) && ctx.Err() == nil {
		ids := d.autostopIDs()
		pr.linef("autostop  waiting (up to %s) for %d sessions left to their auto-stop to be settled", o.AutostopWait, len(ids))
		r, err := waitAutostops(ctx, dbURL, ids, o.AutostopWait, func(open, overdue int, left time.Duration) {
			pr.linef("autostop  %d still open (%d of them past their planned end), waiting up to %s more", open, overdue, left)
		})
		if err != nil {
			res.Problems = append(res.Problems, err.Error())
		} else {
			res.Autostop = &r
			pr.autostop(r)
		}
	}
	if ob.on() && ctx.Err() == nil {
		// Before the audit, which then sees every right answered and every
		// event delivered.
		pr.linef("outbound  waiting (up to %s) for parkd to owe the register and the receiver nothing", o.OutboundWait)
		r, err := ob.measure(ctx, dbURL, o.OutboundWait, maxFrom, maxTo, func(b load.OutboundBacklog, left time.Duration) {
			pr.linef("outbound  %s; waiting up to %s more", b, left.Round(time.Second))
		})
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("outbound: %v", err))
		}
		res.Outbound = &r
		pr.outbound(r)
	}
	if o.has(PhaseCheck) && ctx.Err() == nil {
		if cl == nil {
			// The target's database may hold anything; auditing it is its
			// operator's call (`parkd check`).
			res.Skipped = append(res.Skipped, "check: only in self-contained mode")
		} else {
			r := cl.Check(ctx, 2*time.Minute)
			res.Check = &r
			pr.check(*res.Check)
		}
	}
	if cl != nil && ctx.Err() == nil {
		if st, err := load.ReadRedisState(ctx, o.RedisURL, dbURL); err != nil {
			res.Problems = append(res.Problems, err.Error())
		} else {
			res.Redis = &st
			pr.redis(st)
		}
	}
	if o.has(PhasePgbench) && ctx.Err() == nil {
		pr.linef("pgbench   initialising %s at scale %d, then %d clients for %d s (parkd idle meanwhile)",
			o.PgbenchDBName, o.PgbenchScale, o.PgbenchClients, o.PgbenchSeconds)
		r, err := pgbenchPhase(ctx, o)
		if err != nil {
			res.Problems = append(res.Problems, err.Error())
			pr.linef("pgbench   failed: %v", err)
		} else {
			res.Pgbench = &r
			if r.TPS > 0 && res.Max != nil {
				res.PairsPerTPCB = res.Max.PairsPerSec / r.TPS
			}
			pr.pgbench(r, res.PairsPerTPCB)
		}
	}

	stopSampler()
	<-samplerDone
	sampler.Sample() // the state at the very end, after the load
	rss := sampler.Result()
	res.RSS = &rss
	if cl != nil {
		res.Crashed = cl.Crashed()
		stopCluster()
		res.Logs = cl.LogCounts() // after the stop: shutdown lines count too
	}
	res.LoadEnd = load.LoadAvg()
	res.TotalSeconds = time.Since(t0).Seconds()
	res.Problems = append(res.Problems, problems(res)...)
	if ctx.Err() != nil {
		res.Problems = append(res.Problems, "interrupted: the figures cover only what ran")
	}
	if o.DropDB && o.Target == "" {
		if err := load.DropDB(context.WithoutCancel(ctx), o.DatabaseURL, o.DBName); err != nil {
			res.Problems = append(res.Problems, err.Error())
		}
	}
	pr.report(res)
	return res, nil
}

func pgbenchPhase(ctx context.Context, o Options) (PgbenchResult, error) {
	dsn, err := load.RecreateDB(ctx, o.DatabaseURL, o.PgbenchDBName)
	if err != nil {
		return PgbenchResult{}, fmt.Errorf("pgbench: %w", err)
	}
	defer func() { _ = load.DropDB(context.WithoutCancel(ctx), o.DatabaseURL, o.PgbenchDBName) }()
	return runPgbench(ctx, dsn, o.PgbenchScale, o.PgbenchClients, o.PgbenchSeconds)
}

// WriteJSON writes the results to path.
func WriteJSON(path string, r *Results) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

func checkReady(ctx context.Context, base string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("target %s: %w", base, err)
	}
	res, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("target %s is not answering: %w", base, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("target %s: /readyz answered %s", base, res.Status)
	}
	return nil
}

// redact hides a password in a URL.
func redact(raw string) string {
	if i := strings.Index(raw, "://"); i >= 0 {
		if at := strings.LastIndex(raw, "@"); at > i {
			if colon := strings.Index(raw[i+3:at], ":"); colon >= 0 {
				return raw[:i+3+colon+1] + "xxxxx" + raw[at:]
			}
		}
	}
	return raw
}
