package chaos

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/parkd/parkd/tools/cluster"
	"github.com/parkd/parkd/tools/load"
)

// fault injects fault number i, waits for parkd to serve again, and audits.
func (c *chaosRun) fault(ctx context.Context, i int, f Fault) FaultResult {
	began := time.Now()
	fr := FaultResult{Fault: f, At: began, AtSec: began.Sub(c.t0).Seconds()}
	err := c.inject(ctx, &fr)
	fr.InjectSec = time.Since(began).Seconds()
	c.pr.linef("fault %d   +%.1fs %s (took %.1fs)", i+1, fr.AtSec, fr.What, fr.InjectSec)
	if f == FaultKillWorker {
		c.pr.linef("          %s", orphanLine(fr.Orphaned))
	}
	if err != nil {
		fr.Problem = fmt.Sprintf("injecting the fault failed: %v", err)
		c.pr.linef("          %s", fr.Problem)
		c.res.Checks = append(c.res.Checks, Check{Name: fmt.Sprintf("fault %d (%s) injected", i+1, f), Note: fr.Problem})
		return fr
	}
	c.awaitRecovery(ctx, i, began, &fr)
	if f == FaultRedisFailover {
		c.rejoin(ctx, began, &fr)
	}
	c.auditAfter(ctx, i, began, &fr)
	return fr
}

// inject injects fr.Fault and says in fr what it did.
func (c *chaosRun) inject(ctx context.Context, fr *FaultResult) error {
	switch fr.Fault {
	case FaultKillWorker:
		return c.killWorker(ctx, fr)
	case FaultRedisFlushed:
		return c.flushRedis(ctx, fr)
	case FaultPostgresRestart:
		return c.restartPostgres(ctx, fr)
	case FaultPostgresKill:
		return c.killPostgres(ctx, fr)
	case FaultRedisFailover:
		return c.failOver(ctx, fr)
	}
	return fmt.Errorf("unknown fault %q", fr.Fault)
}

// killWorker SIGKILLs worker 1, and starts it again after WorkerDown. The
// tasks active in Redis right after the kill and still once the worker is
// back (a task takes milliseconds) are the ones the dead worker held: asynq
// hands them out again only after their lease.
func (c *chaosRun) killWorker(ctx context.Context, fr *FaultResult) error {
	p, err := c.cl.Find(cluster.RoleWorker, 1)
	if err != nil {
		return err
	}
	fr.What = fmt.Sprintf("SIGKILL worker-1 (pid %d), started again after %s", p.PID(), fmtDur(c.o.WorkerDown))
	if err := c.cl.Kill(cluster.RoleWorker, 1); err != nil {
		return err
	}
	active := c.activeTasks()
	load.SleepCtx(ctx, c.o.WorkerDown)
	err = c.cl.Restart(ctx, cluster.RoleWorker, 1)
	still := c.activeTasks()
	for id := range active {
		if still[id] {
			fr.Orphaned = append(fr.Orphaned, id)
		}
	}
	slices.Sort(fr.Orphaned)
	return err
}

// flushRedis kills Redis and starts it again empty on its address.
func (c *chaosRun) flushRedis(ctx context.Context, fr *FaultResult) error {
	fr.What = "Redis killed and started again empty on its address (queued tasks, scheduled auto-stops, parkd:epoch lost)"
	return c.rd.RestartFlushed(ctx)
}

// restartPostgres shuts Postgres down fast and starts it again.
func (c *chaosRun) restartPostgres(ctx context.Context, fr *FaultResult) error {
	fr.What = "Postgres fast shutdown, then started again"
	return c.pg.Restart(ctx)
}

// killPostgres SIGKILLs Postgres and starts it again after PostgresDown.
func (c *chaosRun) killPostgres(ctx context.Context, fr *FaultResult) error {
	fr.What = fmt.Sprintf("Postgres SIGKILLed (postmaster and every backend), started again after %s: crash recovery", fmtDur(c.o.PostgresDown))
	if err := c.pg.Kill(); err != nil {
		return err
	}
	load.SleepCtx(ctx, c.o.PostgresDown)
	return c.pg.Restart(ctx)
}

// failOver SIGKILLs the Redis primary and waits, up to RecoveryTimeout, for
// the Sentinels to promote the replica.
func (c *chaosRun) failOver(ctx context.Context, fr *FaultResult) error {
	began := time.Now()
	killed, err := c.sn.KillPrimary(ctx)
	if err != nil {
		return err
	}
	fr.KilledPrimary = killed
	fr.What = fmt.Sprintf("Redis primary %s SIGKILLed: the Sentinels promote the replica", killed)
	wctx, cancel := context.WithDeadline(ctx, began.Add(c.o.RecoveryTimeout))
	defer cancel()
	promoted, err := c.sn.AwaitPromotion(wctx, killed)
	if err != nil {
		return err
	}
	fr.Promoted, fr.PromotedSec = promoted, time.Since(began).Seconds()
	fr.What = fmt.Sprintf("Redis primary %s SIGKILLed; the Sentinels promoted the replica %s after %.1fs", killed, promoted, fr.PromotedSec)
	return nil
}

// rejoin starts the killed primary again, empty, as the new primary's
// replica, once parkd serves again: the topology is whole for the next
// failover.
func (c *chaosRun) rejoin(ctx context.Context, began time.Time, fr *FaultResult) {
	err := c.sn.RestartAsReplica(ctx, fr.KilledPrimary)
	name := fmt.Sprintf("the killed Redis primary %s is back as the new primary's replica", fr.KilledPrimary)
	if err != nil {
		c.pr.linef("          %s: FAILED: %v", name, err)
		c.res.Checks = append(c.res.Checks, Check{Name: name, Note: err.Error()})
		return
	}
	fr.RejoinedSec = time.Since(began).Seconds()
	c.pr.linef("          %s, in sync, after %.1fs", name, fr.RejoinedSec)
}

// awaitRecovery waits, up to RecoveryTimeout from the fault's start, for
// parkd to serve again: every intake ready, then a start and a stop answered.
// Processes that exited meanwhile are restarted, as a supervisor would.
func (c *chaosRun) awaitRecovery(ctx context.Context, i int, began time.Time, fr *FaultResult) {
	when := fmt.Sprintf("after fault %d (%s)", i+1, fr.Fault)
	deadline := began.Add(c.o.RecoveryTimeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		fr.Crashed = append(fr.Crashed, c.restartCrashed(ctx, when)...)
		if allReady(hc, c.cl.URLs()) {
			fr.ReadySec = time.Since(began).Seconds()
			break
		}
		if time.Now().After(deadline) || !load.SleepCtx(ctx, 100*time.Millisecond) {
			fr.Problem = fmt.Sprintf("the intakes' /readyz were not 200 within %s", fmtDur(c.o.RecoveryTimeout))
			break
		}
	}
	if fr.Problem == "" {
		if err := c.load.probe(ctx, c.probe(), deadline); err != nil {
			fr.Problem = fmt.Sprintf("no probe start+stop answered within %s of the fault: %v", fmtDur(c.o.RecoveryTimeout), err)
		} else {
			fr.ProbeSec, fr.Recovered = time.Since(began).Seconds(), true
		}
	}
	fr.Crashed = append(fr.Crashed, c.restartCrashed(ctx, when)...)
	name := fmt.Sprintf("parkd serves again after fault %d (%s): /readyz 200 and a probe start+stop answered within %s", i+1, fr.Fault, fmtDur(c.o.RecoveryTimeout))
	if fr.Recovered {
		c.pr.linef("          intake ready after %.1fs, probe start+stop answered after %.1fs", fr.ReadySec, fr.ProbeSec)
		c.res.Checks = append(c.res.Checks, Check{Name: name, OK: true, Note: fmt.Sprintf("ready %.1fs, probe %.1fs", fr.ReadySec, fr.ProbeSec)})
	} else {
		c.pr.linef("          NOT RECOVERED: %s", fr.Problem)
		c.res.Checks = append(c.res.Checks, Check{Name: name, Note: fr.Problem})
	}
}

// auditAfter runs `parkd check` after the fault.
func (c *chaosRun) auditAfter(ctx context.Context, i int, began time.Time, fr *FaultResult) {
	fr.Check = c.cl.Check(ctx, c.o.Grace)
	fr.CheckAfterS = time.Since(began).Seconds()
	c.pr.linef("          parkd check --grace %s: %s", fmtDur(c.o.Grace), checkSummary(fr.Check))
	c.res.Checks = append(c.res.Checks, checkOf(fmt.Sprintf("parkd check --grace %s passes after fault %d (%s)", fmtDur(c.o.Grace), i+1, fr.Fault), fr.Check))
}

func orphanLine(ids []string) string {
	if len(ids) == 0 {
		return "no task was left active in Redis by the killed worker (it held none, or none it had not finished)"
	}
	return fmt.Sprintf("%d tasks left active in Redis by the killed worker (handed out again only after their lease): %s",
		len(ids), strings.Join(ids, ", "))
}

func checkOf(name string, r cluster.CheckResult) Check {
	cc := Check{Name: name, OK: r.OK, Note: checkSummary(r)}
	if !r.OK {
		for _, l := range strings.Split(r.Output, "\n") {
			if strings.HasPrefix(strings.TrimSpace(l), "- ") || strings.Contains(l, "VIOLATED") || strings.Contains(l, "level=ERROR") {
				cc.Violations = append(cc.Violations, strings.TrimSpace(l))
			}
		}
		if len(cc.Violations) == 0 {
			cc.Violations = []string{cluster.TailLines(r.Output, 5)}
		}
	}
	return cc
}

// checkSummary is a check's verdict in a line.
func checkSummary(r cluster.CheckResult) string {
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
		if crashed, err := p.Crashed(); crashed {
			p.Dismiss()
			out = append(out, fmt.Sprintf("%s exited by itself (%v), noticed %s; its last lines:\n%s", p.Name(), err, when, indent(p.Tail(), "      ")))
		}
	}
	return out
}

// restartCrashed restarts every process that exited by itself, as a
// production supervisor would, and reports each as a finding.
func (c *chaosRun) restartCrashed(ctx context.Context, when string) []string {
	var out []string
	for _, p := range c.cl.Procs() {
		crashed, err := p.Crashed()
		if !crashed {
			continue
		}
		finding := fmt.Sprintf("%s exited by itself (%v), noticed %s; restarted. Its last lines:\n%s", p.Name(), err, when, indent(p.Tail(), "      "))
		c.pr.linef("CRASH     %s", finding)
		if rerr := c.cl.Restart(ctx, p.Role, p.Index); rerr != nil {
			finding += fmt.Sprintf("\n      restarting it failed: %v", rerr)
		}
		out = append(out, finding)
	}
	c.res.Crashed = append(c.res.Crashed, out...)
	return out
}

// allReady says whether every intake at bases answers /readyz 200.
func allReady(hc *http.Client, bases []string) bool {
	for _, b := range bases {
		if !ready(hc, b) {
			return false
		}
	}
	return true
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

func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}
