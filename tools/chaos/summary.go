package chaos

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

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
