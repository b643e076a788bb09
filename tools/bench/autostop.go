package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/load"
)

// AutostopResult is how late the sessions left to their auto-stop were settled.
type AutostopResult struct {
	Sessions  int         `json:"sessions"`   // left to their auto-stop
	Settled   int         `json:"settled"`    // settled when the wait ended
	Unsettled int         `json:"unsettled"`  // still open then, planned end passed
	WaitedSec float64     `json:"waited_s"`   // how long the bench waited after the phases
	Early     int         `json:"early"`      // settled before their planned end
	Lateness  load.Spread `json:"lateness_s"` // settled_at - planned_end_at, seconds
}

// waitAutostops waits (up to limit) until every one of ids whose planned end
// has passed is settled, then reads settled_at - planned_end_at of each.
func waitAutostops(ctx context.Context, dsn string, ids []int64, limit time.Duration, progress func(open, overdue int, left time.Duration)) (AutostopResult, error) {
	res := AutostopResult{Sessions: len(ids)}
	if len(ids) == 0 {
		return res, nil
	}
	st, err := repo.Open(dsn, repo.PoolConfig{MaxConns: 2})
	if err != nil {
		return res, fmt.Errorf("autostop: %w", err)
	}
	defer st.Close()
	// Queries outlive an interrupt: what was settled so far is still worth reporting.
	qctx := context.WithoutCancel(ctx)
	t0 := time.Now()
	deadline := t0.Add(limit)
	lastSaid := t0
	for {
		open, overdue, err := repo.CountOpenSessions(qctx, st.DB, time.Now(), ids...)
		if err != nil {
			return res, fmt.Errorf("autostop: %w", err)
		}
		// Done when nothing is open; or, at the deadline, with what is overdue
		// counted as unsettled.
		if open == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			res.Unsettled = overdue
			break
		}
		if progress != nil && time.Since(lastSaid) >= 15*time.Second {
			progress(open, overdue, time.Until(deadline).Round(time.Second))
			lastSaid = time.Now()
		}
		load.SleepCtx(ctx, 500*time.Millisecond)
	}
	res.WaitedSec = time.Since(t0).Seconds()
	sessions, err := repo.SessionSettlements(qctx, st.DB, ids...)
	if err != nil {
		return res, fmt.Errorf("autostop: %w", err)
	}
	var late []float64
	for _, s := range sessions {
		if s.SettledAt == nil {
			continue
		}
		d := s.SettledAt.Sub(s.PlannedEndAt).Seconds()
		late = append(late, d)
		if d < 0 {
			res.Early++
		}
	}
	res.Settled = len(late)
	res.Lateness = load.SpreadOf(late)
	return res, nil
}
