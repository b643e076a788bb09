package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/parkd/parkd/tools/cluster"
	"github.com/parkd/parkd/tools/load"
)

// printer writes the human-readable report: a line per phase as it ends, and
// the whole at the end.
type printer struct{ w io.Writer }

func (p *printer) linef(format string, args ...any) {
	fmt.Fprintf(p.w, format+"\n", args...)
}

func (p *printer) header(r *Results, o Options) {
	where := r.Mode + ", topology " + r.Topology
	if r.Target != "" {
		where = "target " + r.Target
	}
	p.linef("parkd bench  (%s, %d permits, concurrency %d, %s per phase, seed %d)", where, r.Permits, r.Concurrency, o.Duration, r.Seed)
	p.linef("machine   %d CPUs, load average %s at start", r.CPUs, r.LoadStart)
}

// errs is an OpResult's failures, most frequent first.
func errs(r OpResult) string {
	if len(r.Errors) == 0 {
		return "errors 0"
	}
	keys := slices.Collect(maps.Keys(r.Errors))
	slices.SortFunc(keys, func(a, b string) int {
		if r.Errors[a] != r.Errors[b] {
			return int(r.Errors[b] - r.Errors[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", r.Errors[k], k)
	}
	return fmt.Sprintf("errors %d (%s)", r.ErrorCount(), strings.Join(parts, ", "))
}

func opLine(name string, r OpResult) string {
	return fmt.Sprintf("%-5s %s   %s, 202 pending %d", name, r.Latency.String(), errs(r), r.Pending)
}

func (p *printer) idle(r IdleResult) {
	s, t := r.Start.Latency, r.Stop.Latency
	p.linef("idle      %d lone pairs, one at a time:  start p50 %s max %s   stop p50 %s max %s   (%s / %s)",
		r.Pairs, load.FormatMS(s.P50), load.FormatMS(s.Max), load.FormatMS(t.P50), load.FormatMS(t.Max), errs(r.Start), errs(r.Stop))
}

func (p *printer) load(r LoadResult) {
	switch r.Phase {
	case "max":
		p.linef("max       pairs/s %.1f  starts/s %.1f  stops/s %.1f   (closed loop, %d users, %.1fs: %d pairs + %d starts left to auto-stop)",
			r.PairsPerSec, r.StartsPerSec, r.StopsPerSec, r.Concurrency, r.Seconds, r.Pairs, r.Autostops)
	default:
		p.linef("%-9s arrivals/s %.1f offered (each a start, followed by its stop unless left to auto-stop)   pairs/s %.1f  starts/s %.1f  stops/s %.1f   (open loop, %d users, %.1fs: %d pairs + %d starts left to auto-stop)",
			r.Phase, r.TargetRate, r.PairsPerSec, r.StartsPerSec, r.StopsPerSec, r.Concurrency, r.Seconds, r.Pairs, r.Autostops)
	}
	p.linef("          %s", opLine("start", r.Start))
	p.linef("          %s", opLine("stop", r.Stop))
	if r.Changes > 0 {
		p.linef("          %s   (%d pairs extended before the stop)", opLine("change", r.Change), r.Changes)
	}
	if r.DispatchDelay != nil {
		p.linef("          waiting for a free user (bench-side): p99 %s max %s", load.FormatMS(r.DispatchDelay.P99), load.FormatMS(r.DispatchDelay.Max))
	}
}

func (p *printer) rights(r RightsResult) {
	p.linef("rights    %.0f/s offered, %.1f/s answered   %s   (%d users, %d scan cars; half the plates parked now (%d), half never parked)",
		r.TargetRate, r.AchievedRate, r.Checks.Latency.String(), r.Pool, r.ScanCars, r.Parked)
	p.linef("          %s   waiting for a free user (bench-side): p99 %s max %s", errs(r.Checks), load.FormatMS(r.Delay.P99), load.FormatMS(r.Delay.Max))
}

func (p *printer) autostop(r AutostopResult) {
	if r.Sessions == 0 {
		p.linef("autostop  no sessions were left to their auto-stop")
		return
	}
	l := r.Lateness
	p.linef("autostop  %d sessions: %d settled, %d overdue and unsettled after %.0fs; lateness (settled_at - planned_end_at) p50 %.2fs p99 %.2fs max %.2fs min %.2fs (%d early)",
		r.Sessions, r.Settled, r.Unsettled, r.WaitedSec, l.P50, l.P99, l.Max, l.Min, r.Early)
}

func (p *printer) check(r cluster.CheckResult) {
	lines := strings.Split(r.Output, "\n")
	last := lines[len(lines)-1]
	if r.OK {
		p.linef("audit     parkd check --grace 2m: %s", last)
		return
	}
	p.linef("audit     parkd check --grace 2m FAILED:\n%s", r.Output)
}

func (p *printer) pgbench(r PgbenchResult, ratio float64) {
	if r.Skipped != "" {
		p.linef("pgbench   skipped: %s", r.Skipped)
		return
	}
	p.linef("pgbench   TPC-B %.0f tps (%d clients, %d threads, %d s, scale %d; init %.0fs)   ratio pairs/TPC-B %.3f",
		r.TPS, r.Clients, r.Threads, r.Seconds, r.Scale, r.InitSec, ratio)
}

func (p *printer) redis(st load.RedisState) {
	var parts []string
	for _, q := range st.Queues {
		parts = append(parts, fmt.Sprintf("%s: %d scheduled, %d pending, %d retry, %d archived, ~%s",
			q.Name, q.Scheduled, q.Pending, q.Retry, q.Archived, mib(q.MemoryBytes/1024)))
	}
	p.linef("redis     after the load: %s; %d sessions open", strings.Join(parts, "; "), st.OpenSessions)
}

func mib(kb int64) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }

func (p *printer) memory(r RSSResult) {
	p.linef("memory    peak total %s (largest sum of VmRSS in one sample; %d samples every %dms), at the end %s",
		mib(r.PeakTotalKB), r.Samples, r.IntervalMS, mib(r.LastTotalKB))
	for _, pr := range r.Procs {
		p.linef("          %-26s peak %s  VmHWM %s  end %s", fmt.Sprintf("%s (pid %d)", pr.Name, pr.PID), mib(pr.PeakKB), mib(pr.HWMKB), mib(pr.LastKB))
	}
	if len(r.MinuteTotals) > 0 {
		parts := make([]string, len(r.MinuteTotals))
		for i, m := range r.MinuteTotals {
			parts[i] = fmt.Sprintf("%dm %.1f", m.Minute, float64(m.TotalKB)/1024)
		}
		p.linef("          total at minute ends (MiB): %s; end %.1f", strings.Join(parts, ", "), float64(r.LastTotalKB)/1024)
	}
}

// report writes the whole report: every figure again, then the headline
// figures the project is judged by, then whatever looked wrong.
func (p *printer) report(r *Results) {
	p.linef("")
	p.linef("==== parkd bench report (%s, %.0fs in all; load average %s at start, %s at end) ====", r.Mode, r.TotalSeconds, r.LoadStart, r.LoadEnd)
	if r.Topology != "" {
		p.linef("topology  %s", r.Topology)
	}
	p.linef("setup     %d permits in %.1fs", r.Permits, r.SetupSeconds)
	if r.Idle != nil {
		p.idle(*r.Idle)
	}
	if r.Max != nil {
		p.load(*r.Max)
	}
	if r.Half != nil {
		p.load(*r.Half)
	}
	if r.Rights != nil {
		p.rights(*r.Rights)
	}
	if r.Autostop != nil {
		p.autostop(*r.Autostop)
	}
	if r.Outbound != nil {
		p.outbound(*r.Outbound)
	}
	if r.Check != nil {
		p.check(*r.Check)
	}
	if r.Redis != nil {
		p.redis(*r.Redis)
	}
	if r.Pgbench != nil {
		p.pgbench(*r.Pgbench, r.PairsPerTPCB)
	}
	if r.RSS != nil {
		p.memory(*r.RSS)
	}
	if len(r.Logs) > 0 {
		p.linef("logs      %s", cluster.SummarizeLogs(r.Logs))
	}
	for _, s := range r.Skipped {
		p.linef("skipped   %s", s)
	}

	p.linef("")
	p.linef("headline figures (as measured)")
	if r.Max != nil {
		tps := "pgbench not run"
		if r.Pgbench != nil && r.Pgbench.TPS > 0 {
			tps = fmt.Sprintf("TPC-B %.0f tps, ratio %.3f", r.Pgbench.TPS, r.PairsPerTPCB)
		}
		p.linef("  %-32s %.1f   vs %s", "start+stop pairs/s (max)", r.Max.PairsPerSec, tps)
	}
	if r.Half != nil {
		p.linef("  %-32s %s   (%.1f arrivals/s offered, %.1f pairs/s done; p50 %s)", "start p99 at half the max rate", load.FormatMS(r.Half.Start.Latency.P99), r.Half.TargetRate, r.Half.PairsPerSec, load.FormatMS(r.Half.Start.Latency.P50))
	}
	if r.Idle != nil {
		p.linef("  %-32s p50 %s max %s   (%d samples)", "lone start on an idle system", load.FormatMS(r.Idle.Start.Latency.P50), load.FormatMS(r.Idle.Start.Latency.Max), r.Idle.Start.Latency.Count)
	}
	if r.Autostop != nil && r.Autostop.Settled > 0 {
		l := r.Autostop.Lateness
		p.linef("  %-32s p50 %.2fs p99 %.2fs max %.2fs   (%d sessions)", "auto-stop lateness", l.P50, l.P99, l.Max, l.Count)
	}
	if r.Rights != nil {
		p.linef("  %-32s %s   (%.1f/s answered)", fmt.Sprintf("rights check p99 at %.0f/s", r.Rights.TargetRate), load.FormatMS(r.Rights.Checks.Latency.P99), r.Rights.AchievedRate)
	}
	if o := r.Outbound; o != nil && o.Registrar {
		p.linef("  %-32s p50 %.2fs p99 %.2fs   (version 1, committed → stored in the register; %d sessions; newest version p99 %.2fs)",
			"registration lag", o.RegistrationLag.P50, o.RegistrationLag.P99, o.RegistrationLag.Count, o.FinalLag.P99)
	}
	if o := r.Outbound; o != nil && o.Webhook {
		p.linef("  %-32s p50 %.2fs p99 %.2fs   (occurred_at → first receipt; %d events)", "webhook lag", o.WebhookLag.P50, o.WebhookLag.P99, o.WebhookLag.Count)
	}
	if r.RSS != nil {
		growth := ""
		if m := r.RSS.MinuteTotals; len(m) > 0 {
			growth = fmt.Sprintf("; minute 1 to end %+.1f MiB", float64(r.RSS.LastTotalKB-m[0].TotalKB)/1024)
		}
		p.linef("  %-32s %s total%s", "peak RSS of parkd", mib(r.RSS.PeakTotalKB), growth)
	}
	p.linef("")
	if len(r.Problems) == 0 {
		p.linef("problems  none seen")
		return
	}
	p.linef("problems")
	for _, s := range r.Problems {
		p.linef("  - %s", s)
	}
}

// problems lists what looked wrong in parkd during the run.
func problems(r *Results) []string {
	var out []string
	op := func(phase, name string, o OpResult) {
		if n := o.ErrorCount(); n > 0 {
			out = append(out, fmt.Sprintf("%s: %d %s requests failed: %s", phase, n, name, strings.TrimPrefix(errs(o), fmt.Sprintf("errors %d ", n))))
		}
		if o.Pending > 0 {
			out = append(out, fmt.Sprintf("%s: %d %s requests answered 202 pending (outcome not there within the intake's wait)", phase, o.Pending, name))
		}
	}
	if r.Idle != nil {
		op("idle", "start", r.Idle.Start)
		op("idle", "stop", r.Idle.Stop)
	}
	for _, l := range []*LoadResult{r.Max, r.Half} {
		if l != nil {
			op(l.Phase, "start", l.Start)
			op(l.Phase, "stop", l.Stop)
			op(l.Phase, "change", l.Change)
			if l.DispatchDelay != nil && l.DispatchDelay.P99 > 100 {
				out = append(out, fmt.Sprintf("%s: arrivals waited for a free bench user (p99 %s): the pool was too small for the rate, and the latencies include that wait", l.Phase, load.FormatMS(l.DispatchDelay.P99)))
			}
		}
	}
	if r.Rights != nil {
		op("rights", "check", r.Rights.Checks)
		if r.Rights.ParkErrors > 0 {
			out = append(out, fmt.Sprintf("rights: %d of the sessions to park for the phase failed", r.Rights.ParkErrors))
		}
		if r.Rights.AchievedRate < 0.95*r.Rights.TargetRate {
			out = append(out, fmt.Sprintf("rights: %.1f/s answered of %.0f/s offered", r.Rights.AchievedRate, r.Rights.TargetRate))
		}
	}
	if a := r.Autostop; a != nil {
		if a.Unsettled > 0 {
			out = append(out, fmt.Sprintf("autostop: %d sessions past their planned end still open after %.0fs", a.Unsettled, a.WaitedSec))
		}
		if a.Settled > 0 && a.Lateness.Max > 15 {
			out = append(out, fmt.Sprintf("autostop: the latest settlement came %.1fs after its planned end (the reconciler's doing, not the scheduled auto-stop?)", a.Lateness.Max))
		}
	}
	if st := r.Redis; st != nil {
		for _, q := range st.Queues {
			if q.Retry > 0 || q.Archived > 0 {
				out = append(out, fmt.Sprintf("redis: queue %s holds %d tasks to retry and %d archived (failed) after the load", q.Name, q.Retry, q.Archived))
			}
		}
		var sched int
		var mem int64
		for _, q := range st.Queues {
			sched += q.Scheduled
			mem += q.MemoryBytes
		}
		// Every open session has one auto-stop scheduled; many more means
		// tasks outlive their sessions in Redis.
		if sched > 2*st.OpenSessions+100 {
			out = append(out, fmt.Sprintf("redis: %d tasks still scheduled for %d open sessions (~%s in the queues): a stopped session's auto-stop stays scheduled until its planned end",
				sched, st.OpenSessions, mib(mem/1024)))
		}
	}
	if o := r.Outbound; o != nil {
		if !o.WaitDone {
			out = append(out, fmt.Sprintf("outbound: parkd still owed %s after %.0fs", o.Backlog, o.WaitSeconds))
		}
		if o.LagMissing > 0 {
			out = append(out, fmt.Sprintf("outbound: %d right versions never stood in the register", o.LagMissing))
		}
		if o.Webhook && o.Received < o.Events {
			out = append(out, fmt.Sprintf("outbound: the receiver got %d of %d events", o.Received, o.Events))
		}
	}
	if r.Check != nil && !r.Check.OK {
		out = append(out, "parkd check found violations after the run")
	}
	for _, c := range r.Crashed {
		out = append(out, "process exited by itself: "+c)
	}
	for _, name := range slices.Sorted(maps.Keys(r.Logs)) {
		lc := r.Logs[name]
		if lc.Error > 0 {
			out = append(out, fmt.Sprintf("%s logged %d ERROR lines, e.g. %s", name, lc.Error, firstOf(lc.Sample, "level=ERROR")))
		}
		if lc.Warn > 0 {
			out = append(out, fmt.Sprintf("%s logged %d WARN lines, e.g. %s", name, lc.Warn, firstOf(lc.Sample, "level=WARN")))
		}
	}
	return out
}

func firstOf(lines []string, want string) string {
	for _, l := range lines {
		if strings.Contains(l, want) {
			return l
		}
	}
	if len(lines) > 0 {
		return lines[0]
	}
	return "(none kept)"
}
