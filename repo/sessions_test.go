package repo_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
)

// The lab's reads of what a run left: open and overdue sessions (of some or
// all), each session's settlement, and each request's outcome with its code.
func TestLabReadsOfARun(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, st := w.ctx, w.store
	w.zone("LZ", "", "")
	p := w.permit("LZ", time.Now(), 0)
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	// Sessions 1 and 2 are open, 1 overdue at now; 3 was settled 5 s after its planned end.
	for _, q := range []string{
		fmt.Sprintf("INSERT INTO sessions (id, permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) OVERRIDING SYSTEM VALUE VALUES (1, %d, 'LZ', 'X1', 'open', '%s', '%s', 10, 'req-1')", p.ID, ts(-time.Hour), ts(-time.Minute)),
		fmt.Sprintf("INSERT INTO sessions (id, permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) OVERRIDING SYSTEM VALUE VALUES (2, %d, 'LZ', 'X2', 'open', '%s', '%s', 10, 'req-2')", p.ID, ts(-time.Hour), ts(time.Hour)),
		fmt.Sprintf("INSERT INTO sessions (id, permit_id, zone, plate, state, start_at, planned_end_at, end_at, reserved_minutes, charged_minutes, settled_at, request_id) OVERRIDING SYSTEM VALUE VALUES (3, %d, 'LZ', 'X3', 'stopped', '%s', '%s', '%s', 10, 10, '%s', 'req-3')", p.ID, ts(-2*time.Hour), ts(-time.Hour), ts(-time.Hour), ts(-time.Hour+5*time.Second)),
		`INSERT INTO requests (request_id, type, body_hash, status) VALUES ('req-1', 'session:start', 'h', 'applied')`,
		`INSERT INTO requests (request_id, type, body_hash, status, error) VALUES ('req-x', 'session:stop', 'h', 'rejected', '{"code": "session_not_open", "message": "m"}')`,
		`INSERT INTO requests (request_id, type, body_hash, status) VALUES ('req-t', 'permit:topup', 'h', 'pending')`,
	} {
		if _, err := st.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("CountOpenSessions", func(t *testing.T) {
		for _, c := range []struct {
			ids           []int64
			open, overdue int
		}{{nil, 2, 1}, {[]int64{2, 3}, 1, 0}, {[]int64{3}, 0, 0}, {[]int64{1}, 1, 1}} {
			open, overdue, err := repo.CountOpenSessions(ctx, st.DB, now, c.ids...)
			if err != nil || open != c.open || overdue != c.overdue {
				t.Errorf("ids %v: open %d overdue %d (%v); want %d and %d", c.ids, open, overdue, err, c.open, c.overdue)
			}
		}
	})
	t.Run("SessionSettlements", func(t *testing.T) {
		all, err := repo.SessionSettlements(ctx, st.DB)
		if err != nil || len(all) != 3 || all[0].ID != 1 || all[2].ID != 3 {
			t.Fatalf("all: %+v %v", all, err)
		}
		s := all[2]
		if s.RequestID != "req-3" || s.State != domain.StateStopped || s.SettledAt == nil || s.SettledAt.Sub(s.PlannedEndAt) != 5*time.Second {
			t.Errorf("session 3: %+v", s)
		}
		if all[0].SettledAt != nil || all[0].State != domain.StateOpen {
			t.Errorf("session 1: %+v", all[0])
		}
		some, err := repo.SessionSettlements(ctx, st.DB, 2)
		if err != nil || len(some) != 1 || some[0].ID != 2 {
			t.Errorf("of id 2: %+v %v", some, err)
		}
	})
	t.Run("RequestOutcomes", func(t *testing.T) {
		got, err := repo.RequestOutcomes(ctx, st.DB, "session:start", "session:stop")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]repo.RequestOutcome{
			"req-1": {RequestID: "req-1", Type: "session:start", Status: repo.RequestApplied},
			"req-x": {RequestID: "req-x", Type: "session:stop", Status: repo.RequestRejected, Code: "session_not_open"},
		}
		if len(got) != len(want) {
			t.Fatalf("outcomes %+v; want %+v", got, want)
		}
		for _, o := range got {
			if want[o.RequestID] != o {
				t.Errorf("outcome %+v; want %+v", o, want[o.RequestID])
			}
		}
	})
}
