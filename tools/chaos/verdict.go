package chaos

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/load"
)

// Check is one named check of a chaos run's verdict, with the IDs of
// every violation.
type Check struct {
	Name       string   `json:"name"`
	OK         bool     `json:"ok"`
	Note       string   `json:"note,omitempty"` // what was counted, or why it failed
	Violations []string `json:"violations,omitempty"`
}

func passIf(name, note string, violations []string) Check {
	return Check{Name: name, OK: len(violations) == 0, Note: note, Violations: violations}
}

// dbRequest is a row of requests as the verdict needs it.
type dbRequest struct {
	Type   string
	Status string // pending, applied, rejected
	Code   string // a rejection's code
}

// dbSession is a row of sessions as the verdict needs it.
type dbSession struct {
	ID         int64
	RequestID  string
	State      string // open, stopped, cancelled
	PlannedEnd time.Time
	Settled    *time.Time
}

// dbSnapshot is what the database holds of sessions and of the requests
// about them, read once the run has settled.
type dbSnapshot struct {
	Requests map[string]dbRequest // by request ID: session:start and session:stop only
	Sessions []dbSession
}

// readSnapshot reads the snapshot the verdict is computed from.
func readSnapshot(ctx context.Context, st *repo.Store) (dbSnapshot, error) {
	snap := dbSnapshot{Requests: map[string]dbRequest{}}
	outcomes, err := repo.RequestOutcomes(ctx, st.DB, jobs.TypeSessionStart, jobs.TypeSessionStop)
	if err != nil {
		return snap, err
	}
	for _, o := range outcomes {
		snap.Requests[o.RequestID] = dbRequest{Type: o.Type, Status: o.Status, Code: o.Code}
	}
	sessions, err := repo.SessionSettlements(ctx, st.DB)
	if err != nil {
		return snap, err
	}
	for _, s := range sessions {
		snap.Sessions = append(snap.Sessions, dbSession{ID: s.ID, RequestID: s.RequestID, State: string(s.State),
			PlannedEnd: s.PlannedEndAt, Settled: s.SettledAt})
	}
	return snap, nil
}

const utcSecond = "2006-01-02T15:04:05Z07:00"

// chaosVerdict holds the database to what the client was told: the checks of
// a chaos run that need no parkd process, computed from the requests the
// client sent and a snapshot of the database. grace is how long after its
// planned end a session may be settled.
func chaosVerdict(reqs []*chaosRequest, snap dbSnapshot, grace time.Duration) []Check {
	var out []Check

	// Every session settled, and within grace of its planned end.
	var open, late []string
	for _, s := range snap.Sessions {
		switch {
		case s.State == "open" || s.Settled == nil:
			open = append(open, fmt.Sprintf("session %d (request %s): %s, planned end %s", s.ID, s.RequestID, s.State, s.PlannedEnd.UTC().Format(utcSecond)))
		case s.Settled.After(s.PlannedEnd.Add(grace)):
			late = append(late, fmt.Sprintf("session %d (request %s): settled %s, %.1fs after its planned end %s",
				s.ID, s.RequestID, s.Settled.UTC().Format(utcSecond), s.Settled.Sub(s.PlannedEnd).Seconds(), s.PlannedEnd.UTC().Format(utcSecond)))
		}
	}
	out = append(out,
		passIf("no session open", fmt.Sprintf("%d sessions in the database", len(snap.Sessions)), open),
		passIf(fmt.Sprintf("every session settled (stopped or cancelled) within %s of its planned end", fmtDur(grace)), "", late))

	// What the client was told, the database must say.
	sessionByRequest := map[string]dbSession{}
	for _, s := range snap.Sessions {
		sessionByRequest[s.RequestID] = s
	}
	var notApplied, notRejected, wrongSession, unanswered []string
	var nApplied, nRejected, nUnanswered, nLate int
	sent := map[string]bool{}
	for _, rq := range reqs {
		if rq.Kind == kindStart {
			sent[rq.Key] = true
		}
		db, inDB := snap.Requests[rq.Key]
		status := "absent"
		if inDB {
			status = db.Status
		}
		switch rq.Answer {
		case answerApplied:
			nApplied++
			if status != "applied" {
				notApplied = append(notApplied, fmt.Sprintf("%s %s: the client got %d, the database says %s", rq.Kind, rq.Key, rq.Status, status))
			}
			if rq.Kind == kindStart {
				s, ok := sessionByRequest[rq.Key]
				switch {
				case !ok:
					wrongSession = append(wrongSession, fmt.Sprintf("start %s: the client was given session %s, the database has no session of this request", rq.Key, orNone(rq.SessionID)))
				case strconv.FormatInt(s.ID, 10) != rq.SessionID:
					wrongSession = append(wrongSession, fmt.Sprintf("start %s: the client was given session %s, the database has session %d", rq.Key, orNone(rq.SessionID), s.ID))
				}
			}
		case answerRejected:
			nRejected++
			if status != "rejected" {
				notRejected = append(notRejected, fmt.Sprintf("%s %s: the client got %d %s, the database says %s", rq.Kind, rq.Key, rq.Status, rq.Code, status))
			}
		default:
			nUnanswered++
			if status != "applied" && status != "rejected" && status != "absent" {
				unanswered = append(unanswered, fmt.Sprintf("%s %s (sent %d times from %s): the database says %s", rq.Kind, rq.Key, rq.Attempts, rq.Sent.UTC().Format(utcSecond), status))
			}
		}
		if rq.Late {
			nLate++
		}
	}
	out = append(out,
		passIf("every request the client saw succeed (200/201) is applied", fmt.Sprintf("%d requests", nApplied), notApplied),
		passIf("every request the client saw rejected (4xx but 429) is rejected", fmt.Sprintf("%d requests", nRejected), notRejected),
		passIf("every start the client saw succeed made the session it was told of", "", wrongSession))

	// No phantom effects: every session is of a start the client sent, and
	// there are as many sessions as applied starts.
	var phantom []string
	for _, s := range snap.Sessions {
		if !sent[s.RequestID] {
			phantom = append(phantom, fmt.Sprintf("session %d: made by request %s, which the client never sent", s.ID, s.RequestID))
		}
	}
	out = append(out, passIf("every session belongs to a start request the client sent", "", phantom))
	var appliedStarts int
	var mismatch []string
	for id, r := range snap.Requests {
		if r.Type != jobs.TypeSessionStart || r.Status != "applied" {
			continue
		}
		appliedStarts++
		if _, ok := sessionByRequest[id]; !ok {
			mismatch = append(mismatch, fmt.Sprintf("start %s: applied, but no session", id))
		}
	}
	for _, s := range snap.Sessions {
		if r, ok := snap.Requests[s.RequestID]; !ok || r.Type != jobs.TypeSessionStart || r.Status != "applied" {
			st := "absent"
			if ok {
				st = r.Type + " " + r.Status
			}
			mismatch = append(mismatch, fmt.Sprintf("session %d: its request %s is %s, not an applied start", s.ID, s.RequestID, st))
		}
	}
	slices.Sort(mismatch)
	out = append(out, passIf("the sessions are exactly the applied starts",
		fmt.Sprintf("%d sessions, %d applied starts", len(snap.Sessions), appliedStarts), mismatch))

	note := fmt.Sprintf("%d never answered definitively; %d more answered only after their deadline, in the follow-up", nUnanswered, nLate)
	out = append(out, passIf("requests without a definitive answer are applied, rejected or absent in the database (never pending)", note, unanswered))
	return out
}

// autostopLateness is settled_at - planned_end_at, in seconds, of every
// settled session of a start left to its auto-stop, and how many of them
// settled before their planned end.
func autostopLateness(reqs []*chaosRequest, snap dbSnapshot) (load.Spread, int) {
	auto := map[string]bool{}
	for _, rq := range reqs {
		if rq.Kind == kindStart && rq.Autostop {
			auto[rq.Key] = true
		}
	}
	var late []float64
	early := 0
	for _, s := range snap.Sessions {
		if !auto[s.RequestID] || s.Settled == nil {
			continue
		}
		d := s.Settled.Sub(s.PlannedEnd).Seconds()
		if d < 0 {
			early++
		}
		late = append(late, d)
	}
	return load.SpreadOf(late), early
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// fmtDur writes whole minutes and seconds the way a person would ("2m",
// "90s", "1m30s").
func fmtDur(d time.Duration) string {
	switch {
	case d%time.Minute == 0 && d > 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0 && d < time.Minute:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// WindowSpread is the auto-stop lateness of the sessions whose planned end
// fell in one window of a chaos run (before the first fault, or from one
// fault to the next).
type WindowSpread struct {
	Window   string      `json:"window"`
	Lateness load.Spread `json:"lateness_s"`
}

// autostopLatenessByWindow splits the auto-stop lateness by the window the
// planned end fell in: window i runs from starts[i] (the zero time for the
// first) to starts[i+1], and is called names[i]. Empty windows are left out.
func autostopLatenessByWindow(reqs []*chaosRequest, snap dbSnapshot, starts []time.Time, names []string) []WindowSpread {
	auto := map[string]bool{}
	for _, rq := range reqs {
		if rq.Kind == kindStart && rq.Autostop {
			auto[rq.Key] = true
		}
	}
	samples := make([][]float64, len(starts))
	for _, s := range snap.Sessions {
		if !auto[s.RequestID] || s.Settled == nil {
			continue
		}
		w := 0
		for i := range starts {
			if !s.PlannedEnd.Before(starts[i]) {
				w = i
			}
		}
		samples[w] = append(samples[w], s.Settled.Sub(s.PlannedEnd).Seconds())
	}
	var out []WindowSpread
	for i, sm := range samples {
		if len(sm) > 0 {
			out = append(out, WindowSpread{Window: names[i], Lateness: load.SpreadOf(sm)})
		}
	}
	return out
}

// unansweredLines lists every request that had no definitive answer before
// its deadline, with what the database says of it.
func unansweredLines(reqs []*chaosRequest, snap dbSnapshot) []string {
	var out []string
	for _, rq := range reqs {
		if rq.Answer != answerNone && !rq.Late {
			continue
		}
		status := "absent"
		if db, ok := snap.Requests[rq.Key]; ok {
			status = db.Status
		}
		client := "never answered definitively"
		if rq.Late {
			client = fmt.Sprintf("answered %d %s only in the follow-up", rq.Status, rq.Code)
		}
		out = append(out, fmt.Sprintf("%s %s (first sent %s, %d attempts): %s; the database says %s",
			rq.Kind, rq.Key, rq.Sent.UTC().Format(utcSecond), rq.Attempts, client, status))
	}
	return out
}
