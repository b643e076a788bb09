package chaos

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/parkd/parkd/tools/cluster"
)

// maxViolationsShown bounds the violations printed per check (all are in
// the result).
const maxViolationsShown = 20

// maxLogKindsShown bounds the kinds of log warning and error printed.
const maxLogKindsShown = 25

// report writes a chaos run's whole report.
func (c *chaosRun) report() {
	r, p := c.res, c.pr
	p.linef("")
	p.linef("==== parkd chaos report (%.0fs in all; %d CPUs, load average %s at start, %s at end) ====", r.TotalSeconds, r.CPUs, r.LoadStart, r.LoadEnd)
	p.linef("topology  %s, on a private postgres %s and redis %s", r.Topology, r.Postgres, r.Redis)
	p.linef("permits   %d (+1 for the probes), set up through the API in %.1fs", r.Permits, r.SetupSeconds)
	l := r.Load
	p.linef("load      %d users for %.0fs: %d starts (%d left to their auto-stop), %d stops, %d probe requests",
		l.Users, l.Seconds, l.Starts, l.AutostopStarts, l.Stops, l.Probes)
	p.linef("          answers: %d applied, %s, %d without a definitive answer (%d more answered only in the follow-up)",
		l.Applied, countsLine("rejected", l.Rejected), l.Unanswered, l.Late)
	p.linef("          first send to definitive answer: start %s; stop %s", l.StartAnswer.String(), l.StopAnswer.String())
	p.linef("          retries: %s (%d requests sent more than once, at most %d times)", retriesLine(l.Retries), l.Retried, l.MaxAttempts)
	if slow := slowest(r.Requests, 5); len(slow) > 0 && slow[0].Answered.Sub(slow[0].Sent) > 10*time.Second {
		p.linef("          slowest to a definitive answer:")
		for _, rq := range slow {
			p.linef("            %s %s: %.1fs, %d attempts, first sent %s (window %d), answered %d",
				rq.Kind, rq.Key, rq.Answered.Sub(rq.Sent).Seconds(), rq.Attempts, rq.Sent.UTC().Format("15:04:05.000"), rq.Window, rq.Status)
		}
	}
	if r.FollowUp != "" {
		p.linef("follow-up %s", r.FollowUp)
	}
	if len(r.Unanswered) > 0 {
		p.linef("requests not answered before their deadline, with their database status")
		for i, u := range r.Unanswered {
			if i == maxViolationsShown {
				p.linef("  ... and %d more", len(r.Unanswered)-maxViolationsShown)
				break
			}
			p.linef("  - %s", u)
		}
	}
	p.linef("faults")
	for i, f := range r.Faults {
		p.linef("  %d. +%.0fs  %s (took %.1fs)", i+1, f.AtSec, f.What, f.InjectSec)
		if f.Fault == FaultKillWorker {
			p.linef("        %s", orphanLine(f.Orphaned))
		}
		if f.Fault == FaultRedisFailover && f.Promoted != "" {
			p.linef("        time to recover from the SIGKILL: the Sentinels' promotion %.1fs, a probe start+stop answered through the API %.1fs; the killed node back as a replica at %.1fs",
				f.PromotedSec, f.ProbeSec, f.RejoinedSec)
		}
		if f.Recovered {
			p.linef("        recovery: every intake's /readyz 200 after %.1fs, probe start+stop answered after %.1fs", f.ReadySec, f.ProbeSec)
		} else {
			p.linef("        NOT RECOVERED: %s", f.Problem)
		}
		p.linef("        until the next fault (%.0fs): %d requests sent (%.1f/s; %.1f/s before the first fault), %d without an answer before their deadline, %s; retries: %s",
			f.Seconds, f.Sent, f.PerSec, r.WarmupPerSec, f.Unanswered, countsLine("rejected", f.Rejected), retriesLine(f.Retries))
		for _, cr := range f.Crashed {
			p.linef("        CRASHED: %s", cr)
		}
		p.linef("        parkd check --grace %s after %.1fs: %s", fmtDur(c.o.Grace), f.CheckAfterS, checkSummary(f.Check))
	}
	if r.Lateness.Count > 0 {
		s := r.Lateness
		p.linef("auto-stop lateness (settled_at - planned_end_at, %d sessions left to their auto-stop): p50 %.2fs p99 %.2fs max %.2fs (min %.2fs; %d settled before their planned end)",
			s.Count, s.P50, s.P99, s.Max, s.Min, r.Early)
		for _, w := range r.LatenessBy {
			p.linef("          %-45s %5d sessions: p50 %.2fs p99 %.2fs max %.2fs", w.Window, w.Lateness.Count, w.Lateness.P50, w.Lateness.P99, w.Lateness.Max)
		}
	} else {
		p.linef("auto-stop lateness: no session left to its auto-stop was settled")
	}
	p.linef("settle    %.0fs waited after the load for every session to settle", r.SettleSeconds)
	c.reportOutbound()
	redisLine := "parkd:epoch " + r.EpochAtEnd
	if st := r.RedisAfter; st != nil {
		for _, q := range st.Queues {
			redisLine += fmt.Sprintf("; %s: %d scheduled, %d pending, %d retry, %d archived", q.Name, q.Scheduled, q.Pending, q.Retry, q.Archived)
		}
	}
	p.linef("redis     at the end: %s", redisLine)
	if len(r.Logs) > 0 {
		p.linef("logs      %s", cluster.SummarizeLogs(r.Logs))
	}
	if len(r.LogKinds) > 0 {
		p.linef("parkd's warnings and errors by kind (numbers replaced by N; the first line of each in full)")
		for i, k := range r.LogKinds {
			if i == maxLogKindsShown {
				p.linef("  ... and %d more kinds", len(r.LogKinds)-maxLogKindsShown)
				break
			}
			procs := slices.Sorted(maps.Keys(k.Procs))
			parts := make([]string, len(procs))
			for j, pn := range procs {
				parts[j] = fmt.Sprintf("%s %d", pn, k.Procs[pn])
			}
			p.linef("  %4d× %s  [%s]", k.Count, k.Kind, strings.Join(parts, ", "))
			p.linef("         e.g. %s", clip(k.First, 500))
		}
	}
	if len(r.Crashed) > 0 {
		p.linef("crashes")
		for _, cr := range r.Crashed {
			p.linef("  - %s", cr)
		}
	}
	if len(r.Findings) > 0 {
		p.linef("findings (not checks of their own)")
		for _, f := range r.Findings {
			p.linef("  - %s", f)
		}
	}
	p.linef("")
	p.linef("checks")
	for _, ch := range r.Checks {
		mark := "ok  "
		if !ch.OK {
			mark = "FAIL"
		}
		note := ""
		if ch.Note != "" {
			note = "  (" + ch.Note + ")"
		}
		p.linef("  %s  %s%s", mark, ch.Name, note)
		for i, v := range ch.Violations {
			if i == maxViolationsShown {
				p.linef("          ... and %d more", len(ch.Violations)-maxViolationsShown)
				break
			}
			p.linef("          - %s", v)
		}
	}
	if failed := r.Failed(); len(failed) > 0 {
		p.linef("verdict   FAIL: %d of %d checks failed", len(failed), len(r.Checks))
	} else {
		p.linef("verdict   PASS: all %d checks hold", len(r.Checks))
	}
}

// retriesLine is retries by cause, most frequent first.
func retriesLine(m map[string]int64) string {
	var total int64
	for _, n := range m {
		total += n
	}
	if total == 0 {
		return "none"
	}
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b string) int {
		if m[a] != m[b] {
			return int(m[b] - m[a])
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return fmt.Sprintf("%d (%s)", total, strings.Join(parts, ", "))
}

// countsLine is "0 <what>" or "<n> <what> (k× a, ...)".
func countsLine(what string, m map[string]int) string {
	total := 0
	for _, n := range m {
		total += n
	}
	if total == 0 {
		return "0 " + what
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d× %s", m[k], k)
	}
	return fmt.Sprintf("%d %s (%s)", total, what, strings.Join(parts, ", "))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// slowest is the n answered requests that took longest to their definitive
// answer.
func slowest(reqs []*chaosRequest, n int) []*chaosRequest {
	var answered []*chaosRequest
	for _, rq := range reqs {
		if !rq.Answered.IsZero() {
			answered = append(answered, rq)
		}
	}
	slices.SortFunc(answered, func(a, b *chaosRequest) int {
		return cmp.Compare(b.Answered.Sub(b.Sent), a.Answered.Sub(a.Sent))
	})
	return answered[:min(n, len(answered))]
}

// printer writes the report's lines, from any goroutine.
type printer struct {
	mu sync.Mutex
	w  io.Writer
}

func (p *printer) linef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}
