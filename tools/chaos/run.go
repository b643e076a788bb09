package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/cluster"
	"github.com/parkd/parkd/tools/faults"
	"github.com/parkd/parkd/tools/load"
	"github.com/parkd/parkd/tools/receiver"
)

// chaosRun is a chaos run in progress: what each phase leaves to the next.
type chaosRun struct {
	o     Options
	res   *Result
	pr    *printer
	began time.Time
	tmp   bool     // o.Dir was made for the run
	undo  []func() // stops and closes what the phases started, run last first

	pg           *faults.Postgres
	rd           *faults.Redis    // TopologySingle
	sn           *faults.Sentinel // TopologySentinel
	redisURL     string           // PARKD_REDIS_URL: rd's, or sn's Sentinels
	dsn          string           // parkd's database on pg
	secret       string           // parkd's JWT secret
	tap          *logTap
	cl           *cluster.Cluster
	parkdStopped bool
	api          *load.Client
	runID        string                   // names the run's zone, residents and request keys
	world        *load.World              // the load's residents, and one more for the probes
	byPermit     map[string]load.Resident // every resident by permit ID
	load         *chaosLoad
	t0           time.Time // the load's start
	t1           time.Time // the load's end (users told to stop)
	pgDeadlocks  deadlockLog
	archived     map[string][]string // queue -> its archived tasks, described

	register *load.Register     // the register emulator parkd registers with (nil: none)
	rx       *receiver.Receiver // the webhook receiver (nil: none)
	rxUp     chan struct{}      // closed once the receiver's downtime is over
	out      *OutboundResult    // what the register and receiver saw
}

// Run runs parkd's split topology on a private Postgres and Redis under a
// closed-loop load, injects each fault of o.Faults in turn, and after each
// waits for parkd to serve again and audits the database with `parkd check`.
// After the last, it stops the load, waits for every session to settle, and
// holds the database to every answer the client was given. It prints a report
// to o.Out as it goes and at the end, and returns an error naming the failed
// checks if any failed (the result is returned either way once the run got
// going). When Postgres or Redis cannot be run here the error wraps
// ErrUnavailable and says what is missing.
func Run(ctx context.Context, o Options) (_ *Result, err error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	if err := errors.Join(faults.PostgresAvailable(), faults.RedisAvailable()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	c := newRun(o)
	defer func() { c.close(err) }()
	for _, phase := range []func(context.Context) error{c.makeDir, c.startServers, c.startOutbound, c.startParkd, c.setUp} {
		if err := phase(ctx); err != nil {
			return nil, fmt.Errorf("chaos: %w", err)
		}
	}
	c.runLoad(ctx)
	if err := c.judge(ctx); err != nil {
		return nil, fmt.Errorf("chaos: %w", err)
	}
	c.stopParkd()
	c.conclude()
	return c.res, c.verdictErr(ctx)
}

func newRun(o Options) *chaosRun {
	if o.Out == nil {
		o.Out = io.Discard
	}
	began := time.Now()
	res := &Result{StartedAt: began.UTC(), Permits: o.Permits, CPUs: runtime.NumCPU(), LoadStart: load.LoadAvg(),
		Topology: topologyLine(o)}
	c := &chaosRun{o: o, res: res, pr: &printer{w: o.Out}, began: began}
	c.pr.linef("parkd chaos  (%s; %d permits, %d users, 1 in %d starts left to a %s auto-stop; faults %s, %s apart)",
		res.Topology, o.Permits, o.Concurrency, o.AutostopEvery, fmtDur(o.AutostopAhead), faultList(o.Faults), fmtDur(o.Spacing))
	c.pr.linef("machine   %d CPUs, load average %s at start", res.CPUs, res.LoadStart)
	return c
}

// close stops and closes what the phases started, then removes the run's
// temporary directory if every check passed (or says where its files are).
func (c *chaosRun) close(err error) {
	for i := len(c.undo) - 1; i >= 0; i-- {
		c.undo[i]()
	}
	if c.o.Dir == "" {
		return // no directory was made
	}
	switch {
	case c.tmp && !c.o.Keep && err == nil:
		_ = os.RemoveAll(c.o.Dir)
	case c.tmp:
		c.pr.linef("files     kept in %s (postgres/postgres.log, redis/redis.log, parkd.log)", c.o.Dir)
	default:
		c.pr.linef("files     in %s (postgres/postgres.log, redis/redis.log, parkd.log unless the log went elsewhere)", c.o.Dir)
	}
}

// makeDir gives the run a directory of its own: the servers' files and every log.
func (c *chaosRun) makeDir(context.Context) error {
	if c.tmp = c.o.Dir == ""; c.tmp {
		dir, err := os.MkdirTemp("", "parkd-chaos-")
		if err != nil {
			return err
		}
		c.o.Dir = dir
	} else if err := os.MkdirAll(c.o.Dir, 0o755); err != nil {
		return err
	}
	c.res.Dir = c.o.Dir
	return nil
}

// topologyLine says what a run with o runs.
func topologyLine(o Options) string {
	intakes := "1 intake"
	if o.Intakes > 1 {
		intakes = fmt.Sprintf("%d intakes", o.Intakes)
	}
	line := fmt.Sprintf("split: %s, %d workers, %d schedulers", intakes, o.Workers, o.Schedulers)
	if o.Topology == TopologySentinel {
		line += "; Redis Sentinel: a primary, a replica, 3 Sentinels"
	}
	return line
}

// startServers starts the private Postgres and Redis (one server, or the
// Sentinel topology), and makes parkd's database.
func (c *chaosRun) startServers(ctx context.Context) (err error) {
	if c.pg, err = faults.StartPostgres(ctx, filepath.Join(c.o.Dir, "postgres")); err != nil {
		return fmt.Errorf("private postgres: %w", err)
	}
	c.undo = append(c.undo, func() { _ = c.pg.Stop() })
	redisLine := ""
	if c.o.Topology == TopologySentinel {
		ts := time.Now()
		if c.sn, err = faults.StartSentinel(ctx, filepath.Join(c.o.Dir, "redis")); err != nil {
			return fmt.Errorf("private redis sentinel: %w", err)
		}
		c.undo = append(c.undo, func() { _ = c.sn.Stop() })
		c.redisURL = c.sn.URL()
		redisLine = fmt.Sprintf("private redis sentinel %s (primary and replica %s; ready in %.1fs; down after %s, quorum %d)",
			c.redisURL, strings.Join(c.sn.DataAddrs(ctx), " and "), time.Since(ts).Seconds(), fmtDur(faults.SentinelDownAfter), faults.SentinelQuorum)
	} else {
		if c.rd, err = faults.StartRedis(ctx, filepath.Join(c.o.Dir, "redis")); err != nil {
			return fmt.Errorf("private redis: %w", err)
		}
		c.undo = append(c.undo, func() { _ = c.rd.Stop() })
		c.redisURL = c.rd.URL()
		redisLine = "private redis " + c.redisURL
	}
	c.res.Postgres, c.res.Redis = c.pg.Addr(), c.redisURL
	if c.dsn, err = load.RecreateDB(ctx, c.pg.URL("postgres"), "parkd_chaos"); err != nil {
		return err
	}
	c.pr.linef("servers   private postgres %s (database parkd_chaos), %s", c.pg.Addr(), redisLine)
	return nil
}

// startParkd migrates the database and starts the split topology on the
// private servers, its log lines tapped.
func (c *chaosRun) startParkd(ctx context.Context) error {
	childLog := c.o.ChildLog
	if childLog == nil {
		f, err := os.Create(filepath.Join(c.o.Dir, "parkd.log"))
		if err != nil {
			return err
		}
		c.undo = append(c.undo, func() { _ = f.Close() })
		childLog = f
	}
	c.tap = newLogTap(childLog)
	c.secret = load.RandomSecret()
	c.cl = &cluster.Cluster{Parkd: c.o.Parkd, Split: true, Intakes: c.o.Intakes, Workers: c.o.Workers, Schedulers: c.o.Schedulers, Log: c.tap,
		Env: []string{
			"PARKD_DATABASE_URL=" + c.dsn,
			"PARKD_REDIS_URL=" + c.redisURL,
			"PARKD_JWT_SECRET=" + c.secret,
			"PARKD_LOG_LEVEL=warn",
			// A process (re)started while a server is down waits for it.
			"PARKD_STARTUP_WAIT=60s",
			// Seven processes share the private server's 200 connections.
			"PARKD_DB_MAX_CONNS=20",
		}}
	c.cl.Env = append(c.cl.Env, c.outboundEnv()...)
	ts := time.Now()
	if err := c.cl.Start(ctx); err != nil {
		return err
	}
	c.undo = append(c.undo, func() {
		if !c.parkdStopped {
			_ = c.cl.Stop(10 * time.Second)
		}
	})
	c.pr.linef("parkd     migrated; %s ready in %.1fs at %s", c.cl.Describe(), time.Since(ts).Seconds(), strings.Join(c.cl.URLs(), " and "))
	return nil
}

// setUp makes the municipality through the API: one permit more than the
// load's, for the probes.
func (c *chaosRun) setUp(ctx context.Context) (err error) {
	// Spread over the intakes request by request, as a load balancer would:
	// a retry under the same key may reach the other one.
	c.api = load.NewSpreadClient(c.cl.URLs(), 2*c.o.Concurrency+32)
	c.api.HTTP.Timeout = 15 * time.Second // a write is answered within its 2 s wait; 15 s is a hung intake
	c.undo = append(c.undo, c.api.Close)
	c.runID = fmt.Sprintf("%d", c.began.Unix())
	if err := c.subscribe(ctx); err != nil {
		return err
	}
	ts := time.Now()
	c.world, err = load.Setup(ctx, c.api, load.Tokens{Secret: []byte(c.secret), TTL: 24 * time.Hour},
		load.SetupConfig{Run: c.runID, Permits: c.o.Permits + 1, TopupHours: c.o.TopupHours, Concurrency: c.o.SetupConcurrency, ScanCars: 1,
			Registration: c.registration()})
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	c.res.SetupSeconds = time.Since(ts).Seconds()
	c.pr.linef("setup     zone %s, %d permits (+1 for the probes), %d h each, in %.1fs", c.world.Zone, c.o.Permits, c.o.TopupHours, c.res.SetupSeconds)
	c.byPermit = map[string]load.Resident{}
	for _, r := range c.world.Residents {
		c.byPermit[r.PermitID] = r
	}
	return nil
}

// probe is the resident the probes after each fault park for.
func (c *chaosRun) probe() load.Resident { return c.world.Residents[c.o.Permits] }

// runLoad runs the load from the warm-up through every fault, stops it, and
// sends again, under their keys, the requests that found no answer in time.
func (c *chaosRun) runLoad(ctx context.Context) {
	c.load = newChaosLoad(c.api, c.runID, c.o.Seed, c.o.AutostopEvery, c.o.AutostopAhead, c.o.RequestDeadline)
	shares := load.Partition(c.world.Residents[:c.o.Permits], c.o.Concurrency)
	c.t0 = time.Now()
	c.rxUp = c.receiverDown(ctx)
	c.load.begin(ctx, shares)
	c.pr.linef("load      %d virtual users (closed loop: start, then stop once applied; 1 in %d starts left to its auto-stop); retries same key on 202/429/5xx/timeouts, up to %s",
		len(shares), c.o.AutostopEvery, fmtDur(c.o.RequestDeadline))
	next := c.t0.Add(c.o.Warmup)
	for i, f := range c.o.Faults {
		if !sleepUntil(ctx, next) {
			break
		}
		at := time.Now()
		c.load.window.Store(int32(i + 1))
		c.res.Faults = append(c.res.Faults, c.fault(ctx, i, f))
		next = later(at.Add(c.o.Spacing), time.Now().Add(5*time.Second))
	}
	if len(c.o.Faults) == 0 {
		next = next.Add(c.o.Spacing) // a run of load alone: warm-up, then one spacing
	}
	sleepUntil(ctx, next)
	c.load.window.Store(int32(len(c.o.Faults) + 1))
	c.pr.linef("load      stopping at +%.0fs: users finish the pair they are in", time.Since(c.t0).Seconds())
	c.t1 = time.Now()
	c.load.stop()
	c.calm()
	c.res.Load.Seconds = time.Since(c.t0).Seconds()
	c.restartCrashed(ctx, "after the load")

	if c.o.FollowUp > 0 && ctx.Err() == nil {
		resolved, left := c.load.followUp(ctx, c.byPermit, c.o.FollowUp)
		if resolved+left > 0 {
			c.res.FollowUp = fmt.Sprintf("%d requests without an answer in time sent again: %d answered, %d still unanswered after %s",
				resolved+left, resolved, left, fmtDur(c.o.FollowUp))
			c.pr.linef("follow-up %s", c.res.FollowUp)
		}
	}
}

// judge waits for every session to settle, audits the database with
// `parkd check`, holds it to every answer the client was given, and reads
// what the run left in Redis.
func (c *chaosRun) judge(ctx context.Context) error {
	st, err := repo.Open(c.dsn, repo.PoolConfig{MaxConns: 2})
	if err != nil {
		return err
	}
	defer st.Close()
	c.settle(ctx, st)
	c.restartCrashed(ctx, "at the end")
	// The audit comes once parkd owes nothing: its checks of rights and
	// deliveries then see the end state, not the traffic in flight.
	c.awaitOutbound(ctx, st)
	c.restartCrashed(ctx, "after the outbound wait")

	final := c.cl.Check(ctx, c.o.Grace)
	c.pr.linef("audit     final parkd check --grace %s: %s", fmtDur(c.o.Grace), checkSummary(final))
	c.res.Checks = append(c.res.Checks, checkOf(fmt.Sprintf("parkd check --grace %s passes at the end", fmtDur(c.o.Grace)), final))

	// What was settled so far is worth judging even when interrupted.
	snapCtx := context.WithoutCancel(ctx)
	snap, err := readSnapshot(snapCtx, st)
	if err != nil {
		return err
	}
	c.holdToAnswers(snap)
	if err := c.judgeOutbound(snapCtx, st); err != nil {
		return fmt.Errorf("outbound verdict: %w", err)
	}
	if rs, err := load.ReadRedisState(snapCtx, c.redisURL, c.dsn); err == nil {
		c.res.RedisAfter = &rs
	} else {
		c.res.Findings = append(c.res.Findings, err.Error())
	}
	c.res.EpochAtEnd = c.epoch(snapCtx)
	c.archived = c.archivedTasks()
	return nil
}

// holdToAnswers computes the verdict's checks and the load's figures from the
// requests the client sent and the database's snapshot.
func (c *chaosRun) holdToAnswers(snap dbSnapshot) {
	reqs := c.load.requests()
	res := c.res
	res.Requests = reqs
	res.Checks = append(res.Checks, chaosVerdict(reqs, snap, c.o.Grace)...)
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
}

// settle waits until every session is settled, or until the latest planned
// end of an auto-stop session plus the grace and 30 s has passed.
func (c *chaosRun) settle(ctx context.Context, st *repo.Store) {
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
		open, overdue, err := repo.CountOpenSessions(ctx, st.DB, time.Now())
		if err != nil {
			c.res.Findings = append(c.res.Findings, fmt.Sprintf("settle: %v", err))
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
		load.SleepCtx(ctx, time.Second)
	}
	c.res.SettleSeconds = time.Since(ts).Seconds()
}

// stopParkd stops parkd as production stops it; a process that does not is
// a finding, as is one that had exited by itself.
func (c *chaosRun) stopParkd() {
	c.res.Crashed = append(c.res.Crashed, c.crashedNow("at the end")...)
	c.parkdStopped = true
	stopErr := c.cl.Stop(30 * time.Second)
	c.res.Logs = c.cl.LogCounts()
	c.res.LogKinds = c.tap.Kinds()
	c.res.Checks = append(c.res.Checks,
		passIf("no parkd process exited by itself", "", c.res.Crashed),
		passIf("every parkd process stopped cleanly on SIGTERM", "", errLines(stopErr)))
}

// conclude gathers the findings and writes the report.
func (c *chaosRun) conclude() {
	c.pgDeadlocks = readDeadlocks(filepath.Join(c.o.Dir, "postgres", "postgres.log"))
	c.res.PGDeadlocks = c.pgDeadlocks.n
	c.res.Findings = append(c.res.Findings, c.findings()...)
	c.res.LoadEnd = load.LoadAvg()
	c.res.TotalSeconds = time.Since(c.began).Seconds()
	c.report()
}

// verdictErr is the run's error: interrupted, or the checks that failed.
func (c *chaosRun) verdictErr(ctx context.Context) error {
	if ctx.Err() != nil {
		return fmt.Errorf("chaos: interrupted: %w", ctx.Err())
	}
	failed := c.res.Failed()
	if len(failed) == 0 {
		return nil
	}
	names := make([]string, len(failed))
	for i, f := range failed {
		names[i] = f.Name
	}
	return fmt.Errorf("chaos: %d of %d checks failed: %s", len(failed), len(c.res.Checks), strings.Join(names, "; "))
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	if d := time.Until(t); d > 0 {
		return load.SleepCtx(ctx, d)
	}
	return ctx.Err() == nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}
