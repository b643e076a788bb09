package parkdbench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/cmd/parkd/parkdbench/faults"
)

// Fault is one fault a chaos run injects under load.
type Fault string

// The faults, in the order a chaos run injects them by default.
const (
	// FaultKillWorker SIGKILLs worker 1 and starts it again after
	// ChaosOptions.WorkerDown.
	FaultKillWorker Fault = "kill-worker"
	// FaultRedisFlushed kills Redis and starts it again empty on the same
	// address: queued tasks, scheduled auto-stops and the reconciler's epoch
	// are gone.
	FaultRedisFlushed Fault = "redis-flushed"
	// FaultPostgresRestart is a fast shutdown and a start of Postgres.
	FaultPostgresRestart Fault = "postgres-restart"
	// FaultPostgresKill SIGKILLs the postmaster and every backend, then starts
	// Postgres again after ChaosOptions.PostgresDown: crash recovery.
	FaultPostgresKill Fault = "postgres-kill"
)

// AllFaults is every fault, in order.
var AllFaults = []Fault{FaultKillWorker, FaultRedisFlushed, FaultPostgresRestart, FaultPostgresKill}

// ParseFaults reads a comma-separated list of faults.
func ParseFaults(s string) ([]Fault, error) {
	var out []Fault
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(AllFaults, Fault(f)) {
			names := make([]string, len(AllFaults))
			for i, a := range AllFaults {
				names[i] = string(a)
			}
			return nil, fmt.Errorf("unknown fault %q (faults: %s)", f, strings.Join(names, ","))
		}
		out = append(out, Fault(f))
	}
	return out, nil
}

// ErrChaosUnavailable is returned (wrapped, saying what is missing) when the
// private Postgres or Redis of a chaos run cannot be had on this machine.
var ErrChaosUnavailable = errors.New("chaos: private servers unavailable")

// ChaosOptions configure a chaos run. DefaultChaosOptions is the long form.
type ChaosOptions struct {
	// Dir holds the private servers' files and every log; "" makes a
	// temporary directory, removed at the end unless Keep or a check failed.
	Dir        string
	Keep       bool
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

	// Command builds a parkd command; the running executable when nil.
	Command func(args ...string) *exec.Cmd
	// Out receives the report; ChildLog the parkd processes' log lines
	// (nil: Dir/parkd.log).
	Out      io.Writer
	ChildLog io.Writer
}

// DefaultChaosOptions are the long form's settings: every fault, a minute
// apart (about 6 to 8 minutes in all).
func DefaultChaosOptions() ChaosOptions {
	return ChaosOptions{
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
		Faults:           slices.Clone(AllFaults),
		Warmup:           20 * time.Second,
		Spacing:          time.Minute,
		WorkerDown:       2 * time.Second,
		PostgresDown:     2 * time.Second,
		RecoveryTimeout:  3 * time.Minute,
		Grace:            2 * time.Minute,
		Seed:             1,
	}
}

// ShortChaosOptions are the short form's: small sizes, the faults 15 s apart,
// Postgres killed left out (about two and a half minutes, most of it the
// last auto-stops reaching their planned end).
func ShortChaosOptions() ChaosOptions {
	o := DefaultChaosOptions()
	o.Permits, o.Concurrency, o.SetupConcurrency = 30, 6, 6
	o.Faults = []Fault{FaultKillWorker, FaultRedisFlushed, FaultPostgresRestart}
	o.Warmup, o.Spacing = 5*time.Second, 15*time.Second
	return o
}

func (o *ChaosOptions) check() error {
	var errs []error
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
	if o.Warmup < 0 || o.WorkerDown < 0 || o.PostgresDown < 0 || o.FollowUp < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

// FaultResult is one fault of a chaos run: what was done, how long parkd took
// to serve again, what the client went through meanwhile, and the audit after.
type FaultResult struct {
	Fault      Fault            `json:"fault"`
	What       string           `json:"what"`
	At         time.Time        `json:"at"`
	AtSec      float64          `json:"at_s"`     // since the load began
	InjectSec  float64          `json:"inject_s"` // the injection itself (kill, wait, restart)
	ReadySec   float64          `json:"ready_s"`  // from the injection's start to the intake's /readyz 200
	ProbeSec   float64          `json:"probe_s"`  // ... to a probe start+stop answered
	Recovered  bool             `json:"recovered"`
	Problem    string           `json:"problem,omitempty"`
	Retries    map[string]int64 `json:"retries,omitempty"` // by cause, until the next fault
	Sent       int              `json:"sent"`              // requests first sent until the next fault
	Seconds    float64          `json:"seconds"`           // from this fault to the next (or the load's end)
	PerSec     float64          `json:"sent_per_s"`        // Sent / Seconds: the load's pace under this fault
	Unanswered int              `json:"unanswered"`        // of those, not answered before their deadline
	Rejected   map[string]int   `json:"rejected,omitempty"`
	Crashed    []string         `json:"crashed,omitempty"` // processes that exited by themselves
	// Orphaned (kill-worker): tasks active in Redis both right after the
	// kill and once the worker was back: those the dead worker held.
	Orphaned    []string    `json:"orphaned_tasks,omitempty"`
	Check       CheckResult `json:"check"`
	CheckAfterS float64     `json:"check_after_s"`
}

// LoadTotals are the chaos load's requests over the whole run.
type LoadTotals struct {
	Seconds        float64          `json:"seconds"`
	Users          int              `json:"users"`
	Starts         int              `json:"starts"`
	AutostopStarts int              `json:"autostop_starts"`
	Stops          int              `json:"stops"`
	Probes         int              `json:"probe_requests"`
	Applied        int              `json:"applied"`
	Rejected       map[string]int   `json:"rejected,omitempty"` // by status and code
	Unanswered     int              `json:"unanswered"`
	Late           int              `json:"answered_in_follow_up"`
	Retried        int              `json:"requests_retried"` // requests sent more than once
	MaxAttempts    int              `json:"max_attempts"`
	Retries        map[string]int64 `json:"retries,omitempty"` // by cause
	StartAnswer    Latency          `json:"start_answer"`      // first send to definitive answer
	StopAnswer     Latency          `json:"stop_answer"`
}

// ChaosResult is everything a chaos run found.
type ChaosResult struct {
	StartedAt     time.Time           `json:"started_at"`
	Topology      string              `json:"topology"`
	Dir           string              `json:"dir"`
	Postgres      string              `json:"postgres"`
	Redis         string              `json:"redis"`
	Permits       int                 `json:"permits"`
	SetupSeconds  float64             `json:"setup_seconds"`
	Load          LoadTotals          `json:"load"`
	Faults        []FaultResult       `json:"faults"`
	FollowUp      string              `json:"follow_up,omitempty"`
	Unanswered    []string            `json:"unanswered,omitempty"` // requests not answered before their deadline, with their database status
	SettleSeconds float64             `json:"settle_seconds"`
	WarmupPerSec  float64             `json:"warmup_sent_per_s"` // the load's pace before the first fault
	PGDeadlocks   int                 `json:"postgres_deadlocks"`
	Lateness      Spread              `json:"autostop_lateness_s"`
	LatenessBy    []WindowSpread      `json:"autostop_lateness_by_window,omitempty"`
	Early         int                 `json:"autostop_early"`
	EpochAtEnd    string              `json:"epoch_at_end,omitempty"`
	RedisAfter    *RedisState         `json:"redis_after,omitempty"`
	Crashed       []string            `json:"crashed,omitempty"`
	Logs          map[string]LogCount `json:"logs,omitempty"`
	LogKinds      []LogKind           `json:"log_kinds,omitempty"`
	Findings      []string            `json:"findings,omitempty"` // misbehaviour that is not a check of its own
	Checks        []ChaosCheck        `json:"checks"`
	TotalSeconds  float64             `json:"total_seconds"`
	CPUs          int                 `json:"cpus"`
	LoadStart     string              `json:"loadavg_start"`
	LoadEnd       string              `json:"loadavg_end"`
	Requests      []*chaosRequest     `json:"requests"`
}

// Failed is the checks that failed.
func (r *ChaosResult) Failed() []ChaosCheck {
	var out []ChaosCheck
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// chaosRun is a chaos run in progress.
type chaosRun struct {
	o     ChaosOptions
	res   *ChaosResult
	pr    *printer
	cl    *Cluster
	pg    *faults.Postgres
	rd    *faults.Redis
	load  *chaosLoad
	probe resident
	t0    time.Time // the load's start
	t1    time.Time // the load's end (users told to stop)

	pgDeadlocks deadlockLog
	archived    map[string][]string // queue -> its archived tasks, described
}

// RunChaos runs parkd's split topology on a private Postgres and Redis under
// a closed-loop load, injects each fault of o.Faults in turn, and after each
// waits for parkd to serve again and audits the database with `parkd check`.
// After the last, it stops the load, waits for every session to settle, and
// holds the database to every answer the client was given. It prints a report
// to o.Out as it goes and at the end, and returns an error naming the failed
// checks if any failed (the result is returned either way once the run got
// going). When Postgres or Redis cannot be run here the error wraps
// ErrChaosUnavailable and says what is missing.
func RunChaos(ctx context.Context, o ChaosOptions) (_ *ChaosResult, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := errors.Join(faults.PostgresAvailable(), faults.RedisAvailable()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrChaosUnavailable, err)
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	began := time.Now()
	res := &ChaosResult{StartedAt: began.UTC(), Permits: o.Permits, CPUs: runtime.NumCPU(), LoadStart: loadAvg(),
		Topology: fmt.Sprintf("split: 1 intake, %d workers, %d schedulers", o.Workers, o.Schedulers)}
	c := &chaosRun{o: o, res: res, pr: &printer{w: o.Out}}
	c.pr.linef("parkd chaos  (%s; %d permits, %d users, 1 in %d starts left to a %s auto-stop; faults %s, %s apart)",
		res.Topology, o.Permits, o.Concurrency, o.AutostopEvery, fmtDur(o.AutostopAhead), faultList(o.Faults), fmtDur(o.Spacing))
	c.pr.linef("machine   %d CPUs, load average %s at start", res.CPUs, res.LoadStart)

	// A directory of the run's own: the servers' files and every log.
	tmp := o.Dir == ""
	if tmp {
		if o.Dir, err = os.MkdirTemp("", "parkd-chaos-"); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	} else if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	res.Dir = o.Dir
	defer func() {
		switch {
		case tmp && !o.Keep && err == nil:
			_ = os.RemoveAll(o.Dir)
		case tmp:
			c.pr.linef("files     kept in %s (postgres/postgres.log, redis/redis.log, parkd.log)", o.Dir)
		default:
			c.pr.linef("files     in %s (postgres/postgres.log, redis/redis.log, parkd.log unless the log went elsewhere)", o.Dir)
		}
	}()

	if c.pg, err = faults.StartPostgres(ctx, filepath.Join(o.Dir, "postgres")); err != nil {
		return nil, fmt.Errorf("chaos: private postgres: %w", err)
	}
	defer c.pg.Stop()
	if c.rd, err = faults.StartRedis(ctx, filepath.Join(o.Dir, "redis")); err != nil {
		return nil, fmt.Errorf("chaos: private redis: %w", err)
	}
	defer c.rd.Stop()
	res.Postgres, res.Redis = c.pg.Addr(), c.rd.URL()
	dsn, err := recreateDB(ctx, c.pg.URL("postgres"), "parkd_chaos")
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	c.pr.linef("servers   private postgres %s (database parkd_chaos), private redis %s", c.pg.Addr(), c.rd.URL())

	childLog := o.ChildLog
	if childLog == nil {
		f, err := os.Create(filepath.Join(o.Dir, "parkd.log"))
		if err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
		defer f.Close()
		childLog = f
	}
	tap := newLogTap(childLog)
	secret := randomSecret()
	c.cl = &Cluster{Command: o.Command, Split: true, Workers: o.Workers, Schedulers: o.Schedulers, Log: tap,
		Env: []string{
			"PARKD_DATABASE_URL=" + dsn,
			"PARKD_REDIS_URL=" + c.rd.URL(),
			"PARKD_JWT_SECRET=" + secret,
			"PARKD_LOG_LEVEL=warn",
			// A process (re)started while a server is down waits for it.
			"PARKD_STARTUP_WAIT=60s",
			// Seven processes share the private server's 200 connections.
			"PARKD_DB_MAX_CONNS=20",
		}}
	ts := time.Now()
	if err := c.cl.Start(ctx); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	clusterStopped := false
	defer func() {
		if !clusterStopped {
			_ = c.cl.Stop(10 * time.Second)
		}
	}()
	c.pr.linef("parkd     migrated; %s ready in %.1fs at %s", describeProcs(c.cl), time.Since(ts).Seconds(), c.cl.URL())

	// The municipality, through the API; one permit more than the load's, for the probes.
	a := newAPI(c.cl.URL(), 2*o.Concurrency+32)
	a.hc.Timeout = 15 * time.Second // a write is answered within its 2 s wait; 15 s is a hung intake
	defer a.close()
	run := fmt.Sprintf("%d", began.Unix())
	ts = time.Now()
	w, err := setup(ctx, a, tokens{secret: []byte(secret), ttl: 24 * time.Hour},
		setupConfig{Run: run, Permits: o.Permits + 1, TopupHours: o.TopupHours, Concurrency: o.SetupConcurrency, ScanCars: 1})
	if err != nil {
		return nil, fmt.Errorf("chaos: setup: %w", err)
	}
	res.SetupSeconds = time.Since(ts).Seconds()
	c.pr.linef("setup     zone %s, %d permits (+1 for the probes), %d h each, in %.1fs", w.Zone, o.Permits, o.TopupHours, res.SetupSeconds)
	c.probe = w.Residents[o.Permits]
	residents := map[string]resident{}
	for _, r := range w.Residents {
		residents[r.PermitID] = r
	}

	// The load, through every fault.
	c.load = newChaosLoad(a, run, o.Seed, o.AutostopEvery, o.AutostopAhead, o.RequestDeadline)
	shares := partition(w.Residents[:o.Permits], o.Concurrency)
	c.t0 = time.Now()
	c.load.begin(ctx, shares)
	c.pr.linef("load      %d virtual users (closed loop: start, then stop once applied; 1 in %d starts left to its auto-stop); retries same key on 202/429/5xx/timeouts, up to %s",
		len(shares), o.AutostopEvery, fmtDur(o.RequestDeadline))
	next := c.t0.Add(o.Warmup)
	for i, f := range o.Faults {
		if !sleepUntil(ctx, next) {
			break
		}
		at := time.Now()
		c.load.window.Store(int32(i + 1))
		fr := c.fault(ctx, i, f)
		res.Faults = append(res.Faults, fr)
		next = later(at.Add(o.Spacing), time.Now().Add(5*time.Second))
	}
	if len(o.Faults) == 0 {
		next = next.Add(o.Spacing) // a run of load alone: warm-up, then one spacing
	}
	sleepUntil(ctx, next)
	c.load.window.Store(int32(len(o.Faults) + 1))
	c.pr.linef("load      stopping at +%.0fs: users finish the pair they are in", time.Since(c.t0).Seconds())
	c.t1 = time.Now()
	c.load.stop()
	res.Load.Seconds = time.Since(c.t0).Seconds()
	c.restartCrashed(ctx, "after the load")

	// Requests that found no answer in time are sent again under their key.
	if o.FollowUp > 0 && ctx.Err() == nil {
		resolved, left := c.load.followUp(ctx, residents, o.FollowUp)
		if resolved+left > 0 {
			res.FollowUp = fmt.Sprintf("%d requests without an answer in time sent again: %d answered, %d still unanswered after %s",
				resolved+left, resolved, left, fmtDur(o.FollowUp))
			c.pr.linef("follow-up %s", res.FollowUp)
		}
	}

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	defer db.Close()
	c.settle(ctx, db)
	c.restartCrashed(ctx, "at the end")

	final := c.check(ctx)
	c.pr.linef("audit     final parkd check --grace %s: %s", fmtDur(o.Grace), checkSummary(final))
	res.Checks = append(res.Checks, checkOf(fmt.Sprintf("parkd check --grace %s passes at the end", fmtDur(o.Grace)), final))

	snapCtx := context.WithoutCancel(ctx)
	snap, err := readSnapshot(snapCtx, db)
	if err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	reqs := c.load.requests()
	res.Requests = reqs
	res.Checks = append(res.Checks, chaosVerdict(reqs, snap, o.Grace)...)
	res.Unanswered = unansweredLines(reqs, snap)
	res.Lateness, res.Early = autostopLateness(reqs, snap)
	starts, names := []time.Time{{}}, []string{"planned end before the first fault"}
	for i, f := range res.Faults {
		starts = append(starts, f.At)
		names = append(names, fmt.Sprintf("planned end after fault %d (%s)", i+1, f.Fault))
	}
	res.LatenessBy = autostopLatenessByWindow(reqs, snap, starts, names)
	res.Load = c.totals(reqs)
	c.windows(reqs)
	if st, err := readRedisState(snapCtx, c.rd.URL(), dsn); err == nil {
		res.RedisAfter = &st
	} else {
		res.Findings = append(res.Findings, err.Error())
	}
	res.EpochAtEnd = c.epoch(snapCtx)
	c.archived = c.archivedTasks()

	// parkd stops as production stops it; a process that does not is a finding.
	res.Crashed = append(res.Crashed, c.crashedNow("at the end")...)
	clusterStopped = true
	stopErr := c.cl.Stop(30 * time.Second)
	res.Logs = c.cl.LogCounts()
	res.LogKinds = tap.Kinds()
	res.Checks = append(res.Checks,
		passIf("no parkd process exited by itself", "", res.Crashed),
		passIf("every parkd process stopped cleanly on SIGTERM", "", errLines(stopErr)))
	c.pgDeadlocks = readDeadlocks(filepath.Join(o.Dir, "postgres", "postgres.log"))
	res.PGDeadlocks = c.pgDeadlocks.n
	res.Findings = append(res.Findings, c.findings()...)

	res.LoadEnd = loadAvg()
	res.TotalSeconds = time.Since(began).Seconds()
	c.report()
	if ctx.Err() != nil {
		return res, fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}
	if failed := res.Failed(); len(failed) > 0 {
		names := make([]string, len(failed))
		for i, f := range failed {
			names[i] = f.Name
		}
		return res, fmt.Errorf("chaos: %d of %d checks failed: %s", len(failed), len(res.Checks), strings.Join(names, "; "))
	}
	return res, nil
}

// fault injects fault number i, waits for parkd to serve again, and audits.
func (c *chaosRun) fault(ctx context.Context, i int, f Fault) FaultResult {
	began := time.Now()
	fr := FaultResult{Fault: f, At: began, AtSec: began.Sub(c.t0).Seconds()}
	var err error
	switch f {
	case FaultKillWorker:
		p, _ := c.cl.find(RoleWorker, 1)
		fr.What = fmt.Sprintf("SIGKILL worker-1 (pid %d), started again after %s", p.PID(), fmtDur(c.o.WorkerDown))
		if err = c.cl.Kill(RoleWorker, 1); err == nil {
			// What is active in Redis right after the kill and still is once
			// the worker is back (a task takes milliseconds) is what the dead
			// worker held: asynq hands it out again only after its lease.
			active := c.activeTasks()
			sleepCtx(ctx, c.o.WorkerDown)
			err = c.cl.Restart(ctx, RoleWorker, 1)
			still := c.activeTasks()
			for id := range active {
				if still[id] {
					fr.Orphaned = append(fr.Orphaned, id)
				}
			}
			slices.Sort(fr.Orphaned)
		}
	case FaultRedisFlushed:
		fr.What = "Redis killed and started again empty on its address (queued tasks, scheduled auto-stops, parkd:epoch lost)"
		err = c.rd.RestartFlushed(ctx)
	case FaultPostgresRestart:
		fr.What = "Postgres fast shutdown, then started again"
		err = c.pg.Restart(ctx)
	case FaultPostgresKill:
		fr.What = fmt.Sprintf("Postgres SIGKILLed (postmaster and every backend), started again after %s: crash recovery", fmtDur(c.o.PostgresDown))
		if err = c.pg.Kill(); err == nil {
			sleepCtx(ctx, c.o.PostgresDown)
			err = c.pg.Restart(ctx)
		}
	}
	fr.InjectSec = time.Since(began).Seconds()
	c.pr.linef("fault %d   +%.1fs %s (took %.1fs)", i+1, fr.AtSec, fr.What, fr.InjectSec)
	if f == FaultKillWorker {
		c.pr.linef("          %s", orphanLine(fr.Orphaned))
	}
	if err != nil {
		fr.Problem = fmt.Sprintf("injecting the fault failed: %v", err)
		c.pr.linef("          %s", fr.Problem)
		c.res.Checks = append(c.res.Checks, ChaosCheck{Name: fmt.Sprintf("fault %d (%s) injected", i+1, f), Note: fr.Problem})
		return fr
	}

	// Serving again: the intake ready, then a start and a stop answered.
	deadline := began.Add(c.o.RecoveryTimeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		fr.Crashed = append(fr.Crashed, c.restartCrashed(ctx, fmt.Sprintf("after fault %d (%s)", i+1, f))...)
		if ready(hc, c.cl.URL()) {
			fr.ReadySec = time.Since(began).Seconds()
			break
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 100*time.Millisecond) {
			fr.Problem = fmt.Sprintf("the intake's /readyz was not 200 within %s", fmtDur(c.o.RecoveryTimeout))
			break
		}
	}
	if fr.Problem == "" {
		if err := c.load.probe(ctx, c.probe, deadline); err != nil {
			fr.Problem = fmt.Sprintf("no probe start+stop answered within %s of the fault: %v", fmtDur(c.o.RecoveryTimeout), err)
		} else {
			fr.ProbeSec, fr.Recovered = time.Since(began).Seconds(), true
		}
	}
	fr.Crashed = append(fr.Crashed, c.restartCrashed(ctx, fmt.Sprintf("after fault %d (%s)", i+1, f))...)
	name := fmt.Sprintf("parkd serves again after fault %d (%s): /readyz 200 and a probe start+stop answered within %s", i+1, f, fmtDur(c.o.RecoveryTimeout))
	if fr.Recovered {
		c.pr.linef("          intake ready after %.1fs, probe start+stop answered after %.1fs", fr.ReadySec, fr.ProbeSec)
		c.res.Checks = append(c.res.Checks, ChaosCheck{Name: name, OK: true, Note: fmt.Sprintf("ready %.1fs, probe %.1fs", fr.ReadySec, fr.ProbeSec)})
	} else {
		c.pr.linef("          NOT RECOVERED: %s", fr.Problem)
		c.res.Checks = append(c.res.Checks, ChaosCheck{Name: name, Note: fr.Problem})
	}

	fr.Check = c.check(ctx)
	fr.CheckAfterS = time.Since(began).Seconds()
	c.pr.linef("          parkd check --grace %s: %s", fmtDur(c.o.Grace), checkSummary(fr.Check))
	c.res.Checks = append(c.res.Checks, checkOf(fmt.Sprintf("parkd check --grace %s passes after fault %d (%s)", fmtDur(c.o.Grace), i+1, f), fr.Check))
	return fr
}

// activeTasks is the IDs of the tasks active in Redis now, in every queue.
func (c *chaosRun) activeTasks() map[string]bool {
	out := map[string]bool{}
	// Best effort: what could not be read is reported as nothing.
	_ = eachQueue(c.rd.URL(), func(insp *asynq.Inspector, q string) error {
		tasks, _ := insp.ListActiveTasks(q, asynq.PageSize(1000))
		for _, t := range tasks {
			out[t.ID] = true
		}
		return nil
	})
	return out
}

// archivedTasks describes the archived tasks of every queue: type, ID, how
// often it was tried and its last error.
func (c *chaosRun) archivedTasks() map[string][]string {
	out := map[string][]string{}
	_ = eachQueue(c.rd.URL(), func(insp *asynq.Inspector, q string) error {
		tasks, _ := insp.ListArchivedTasks(q, asynq.PageSize(10))
		for _, t := range tasks {
			out[q] = append(out[q], fmt.Sprintf("%s %s (tried %d of %d, last failed %s: %s)",
				t.Type, t.ID, t.Retried, t.MaxRetry, t.LastFailedAt.UTC().Format(utcSecond), t.LastErr))
		}
		return nil
	})
	return out
}

func orphanLine(ids []string) string {
	if len(ids) == 0 {
		return "no task was left active in Redis by the killed worker (it held none, or none it had not finished)"
	}
	return fmt.Sprintf("%d tasks left active in Redis by the killed worker (handed out again only after their lease): %s",
		len(ids), strings.Join(ids, ", "))
}

// check runs `parkd check --grace` as a child process against the run's database.
func (c *chaosRun) check(ctx context.Context) CheckResult {
	out, err := c.cl.Run(ctx, "check", "--grace", c.o.Grace.String())
	r := CheckResult{OK: err == nil, Output: strings.TrimSpace(string(out))}
	if err != nil && r.Output == "" {
		r.Output = err.Error()
	}
	return r
}

func checkOf(name string, r CheckResult) ChaosCheck {
	cc := ChaosCheck{Name: name, OK: r.OK, Note: checkSummary(r)}
	if !r.OK {
		for _, l := range strings.Split(r.Output, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "- ") || strings.Contains(l, "VIOLATED") || strings.Contains(l, "level=ERROR") {
				cc.Violations = append(cc.Violations, strings.TrimSpace(l))
			}
		}
		if len(cc.Violations) == 0 {
			cc.Violations = []string{tailLines(r.Output, 5)}
		}
	}
	return cc
}

// checkSummary is a check's verdict in a line.
func checkSummary(r CheckResult) string {
	if r.OK {
		lines := strings.Split(r.Output, "\n")
		return lines[len(lines)-1]
	}
	n := strings.Count(r.Output, "\n  - ")
	return fmt.Sprintf("FAILED (%d violations shown)", n)
}

// crashedNow lists, without restarting them, the processes that exited by
// themselves, and marks them so that they are reported once.
func (c *chaosRun) crashedNow(when string) []string {
	var out []string
	for _, p := range c.cl.Procs() {
		if exited, err := p.Exited(); exited && !p.isStopping() {
			p.setStopping()
			out = append(out, fmt.Sprintf("%s exited by itself (%v), noticed %s; its last lines:\n%s", p.Name(), err, when, indent(p.out.Tail(), "      ")))
		}
	}
	return out
}

// restartCrashed restarts every process that exited by itself, as a
// production supervisor would, and reports each as a finding.
func (c *chaosRun) restartCrashed(ctx context.Context, when string) []string {
	var out []string
	for _, p := range c.cl.Procs() {
		exited, err := p.Exited()
		if !exited || p.isStopping() {
			continue
		}
		finding := fmt.Sprintf("%s exited by itself (%v), noticed %s; restarted. Its last lines:\n%s", p.Name(), err, when, indent(p.out.Tail(), "      "))
		c.pr.linef("CRASH     %s", finding)
		if rerr := c.cl.Restart(ctx, p.Role, p.Index); rerr != nil {
			finding += fmt.Sprintf("\n      restarting it failed: %v", rerr)
		}
		out = append(out, finding)
	}
	c.res.Crashed = append(c.res.Crashed, out...)
	return out
}

// settle waits until every session is settled, or until the latest planned
// end of an auto-stop session plus the grace and 30 s has passed.
func (c *chaosRun) settle(ctx context.Context, db *sql.DB) {
	var latest time.Time
	for _, rq := range c.load.requests() {
		if rq.Autostop && rq.Answer != answerRejected && rq.PlannedEnd.After(latest) {
			latest = rq.PlannedEnd
		}
	}
	deadline := later(latest.Add(c.o.Grace+30*time.Second), time.Now())
	ts := time.Now()
	lastSaid := time.Time{}
	for {
		var open, overdue int
		err := db.QueryRowContext(ctx, `SELECT count(*) FILTER (WHERE state = 'open'),
			count(*) FILTER (WHERE state = 'open' AND planned_end_at <= now()) FROM sessions`).Scan(&open, &overdue)
		if err != nil {
			c.res.Findings = append(c.res.Findings, fmt.Sprintf("settle: count open sessions: %v", err))
			break
		}
		if open == 0 {
			c.pr.linef("settle    every session settled %.0fs after the load stopped", time.Since(ts).Seconds())
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			c.pr.linef("settle    gave up waiting: %d sessions still open (%d past their planned end)", open, overdue)
			break
		}
		if time.Since(lastSaid) >= 15*time.Second {
			c.pr.linef("settle    %d sessions open (%d past their planned end); waiting up to %s more (the latest auto-stop is due %s, + %s + 30s)",
				open, overdue, time.Until(deadline).Round(time.Second), latest.Local().Format("15:04:05"), fmtDur(c.o.Grace))
			lastSaid = time.Now()
		}
		sleepCtx(ctx, time.Second)
	}
	c.res.SettleSeconds = time.Since(ts).Seconds()
}

// epoch reads the reconciler's marker in Redis at the end: present means the
// reconciler noticed the flush and queued the auto-stops again.
func (c *chaosRun) epoch(ctx context.Context) string {
	opt, err := redis.ParseURL(c.rd.URL())
	if err != nil {
		return err.Error()
	}
	rc := redis.NewClient(opt)
	defer rc.Close()
	v, err := rc.Get(ctx, "parkd:epoch").Result()
	if errors.Is(err, redis.Nil) {
		return "absent"
	} else if err != nil {
		return err.Error()
	}
	return "set at " + v
}

// totals sums the load's requests.
func (c *chaosRun) totals(reqs []*chaosRequest) LoadTotals {
	t := LoadTotals{Seconds: c.res.Load.Seconds, Users: min(c.o.Concurrency, c.o.Permits), Rejected: map[string]int{},
		Retries: c.load.retriesTotal(), StartAnswer: c.load.latency[kindStart].Summary(), StopAnswer: c.load.latency[kindStop].Summary()}
	for _, rq := range reqs {
		switch {
		case rq.Probe:
			t.Probes++
		case rq.Kind == kindStart:
			t.Starts++
			if rq.Autostop {
				t.AutostopStarts++
			}
		default:
			t.Stops++
		}
		switch rq.Answer {
		case answerApplied:
			t.Applied++
		case answerRejected:
			t.Rejected[fmt.Sprintf("%d %s", rq.Status, rq.Code)]++
		default:
			t.Unanswered++
		}
		if rq.Late {
			t.Late++
		}
		if rq.Attempts > 1 {
			t.Retried++
		}
		t.MaxAttempts = max(t.MaxAttempts, rq.Attempts)
	}
	return t
}

// windows attributes the requests and retries to the fault they came under.
func (c *chaosRun) windows(reqs []*chaosRequest) {
	end := func(i int) time.Time { // of window i+1 (fault i)
		if i+1 < len(c.res.Faults) {
			return c.res.Faults[i+1].At
		}
		return c.t1
	}
	warm, warmEnd := 0, c.t1
	if len(c.res.Faults) > 0 {
		warmEnd = c.res.Faults[0].At
	}
	for _, rq := range reqs {
		if rq.Window == 0 && !rq.Probe {
			warm++
		}
	}
	if d := warmEnd.Sub(c.t0).Seconds(); d > 0 {
		c.res.WarmupPerSec = float64(warm) / d
	}
	for i := range c.res.Faults {
		fr := &c.res.Faults[i]
		fr.Retries = c.load.retriesIn(i + 1)
		fr.Rejected = map[string]int{}
		fr.Seconds = end(i).Sub(fr.At).Seconds()
		for _, rq := range reqs {
			if rq.Window != i+1 {
				continue
			}
			fr.Sent++
			if rq.Answer == answerNone || rq.Late {
				fr.Unanswered++
			}
			if rq.Answer == answerRejected {
				fr.Rejected[fmt.Sprintf("%d %s", rq.Status, rq.Code)]++
			}
		}
		if fr.Seconds > 0 {
			fr.PerSec = float64(fr.Sent) / fr.Seconds
		}
	}
}

// findings are what looked wrong without failing a check of its own: answers
// the contract rules out, and the processes' error lines.
func (c *chaosRun) findings() []string {
	var out []string
	for cause, n := range c.res.Load.Retries {
		if strings.HasPrefix(cause, "500") || (strings.HasPrefix(cause, "5") && !strings.HasPrefix(cause, "503")) {
			out = append(out, fmt.Sprintf("%d answers %q: the contract says 503 when Postgres or Redis is unreachable, never a 500", n, cause))
		}
	}
	for k, n := range c.res.Load.Rejected {
		if !strings.HasPrefix(k, "422 ") {
			out = append(out, fmt.Sprintf("%d requests answered %s, which this load never earns", n, k))
		}
	}
	for i, f := range c.res.Faults {
		if c.res.WarmupPerSec > 0 && f.PerSec < 0.25*c.res.WarmupPerSec {
			out = append(out, fmt.Sprintf("the load slowed to %.1f requests/s in the %.0fs after fault %d (%s), %.0f%% of its %.1f/s before the first fault (requests held up, not lost: see the slowest requests and the deadlocks)",
				f.PerSec, f.Seconds, i+1, f.Fault, 100*f.PerSec/c.res.WarmupPerSec, c.res.WarmupPerSec))
		}
	}
	if c.pgDeadlocks.n > 0 {
		out = append(out, c.pgDeadlocks.finding())
	}
	for _, k := range c.res.LogKinds {
		if strings.Contains(k.Kind, "deadlock") || strings.Contains(strings.ToLower(k.Kind), "panic") {
			out = append(out, fmt.Sprintf("%d log lines %s, e.g. %s", k.Count, k.Kind, clip(k.First, 400)))
		}
	}
	if st := c.res.RedisAfter; st != nil {
		for _, q := range st.Queues {
			if q.Archived > 0 {
				out = append(out, fmt.Sprintf("redis: queue %s holds %d archived tasks (failed for good) after the run: %s",
					q.Name, q.Archived, strings.Join(c.archived[q.Name], "; ")))
			}
		}
	}
	slices.Sort(out)
	return out
}

func ready(hc *http.Client, base string) bool {
	res, err := hc.Get(base + "/readyz")
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	if d := time.Until(t); d > 0 {
		return sleepCtx(ctx, d)
	}
	return ctx.Err() == nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func faultList(fs []Fault) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = string(f)
	}
	return strings.Join(parts, ", ")
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
