package repo_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Events written with the changes they describe (eventdata.go), each case on
// a database of its own.
func TestEvents(t *testing.T) {
	parallel(t,
		subtest{"a request's events ride in the statement of its outcome", finishRequestWritesItsEvents},
		subtest{"a rejection names the permit the request named, if it exists", rejectionNamesAnExistingPermit},
		subtest{"the rollover writes an event per year closed, set-wise", rolloverWritesYearRolledEvents},
		subtest{"an ending is written once per session and end", endingEventWrittenOnce},
		subtest{"a registered session's right is versioned by its changes", rightVersionGrowsWithEveryChange},
	)
}

func (w *world) events(where string, args ...any) []repo.Event {
	w.t.Helper()
	var rows []repo.Event
	if err := w.store.DB.NewSelect().Model(&rows).Where(where, args...).OrderExpr("pk").Scan(w.ctx); err != nil {
		w.t.Fatal(err)
	}
	return rows
}

// finish claims and finishes a request in one transaction.
func (w *world) finish(id, typ string, f repo.Finish) error {
	return w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		if _, err := repo.ClaimRequest(ctx, tx, id, typ, "fp-"+id, nil); err != nil {
			return err
		}
		f.Type, f.BodyHash = typ, "fp-"+id
		return repo.FinishRequest(ctx, tx, id, f)
	})
}

// session starts a session on p from now for minutes.
func (w *world) session(p *repo.Permit, plate string, now time.Time, minutes int, reg *domain.ZoneRegistration) *repo.Session {
	w.t.Helper()
	plan := domain.SessionPlan{Plate: plate, Country: "NL", StartAt: now, PlannedEndAt: now.Add(time.Duration(minutes) * time.Minute), ReservedMinutes: minutes}
	s, err := repo.ApplyStart(w.ctx, w.store.DB, p, plan, reg, "start-"+plate, now)
	if err != nil {
		w.t.Fatal(err)
	}
	return s
}

// eventWorld is a world with a permit of 600 minutes, issued at now, and an
// open session of AB12CD on it from now for an hour.
func eventWorld(t *testing.T, now time.Time) (*world, *repo.Permit, *repo.Session) {
	w := newWorld(t)
	w.zone("EV", "Europe/Amsterdam", "01-01")
	p := w.permit("EV", now, 600)
	return w, p, w.session(p, "AB12CD", now, 60, nil)
}

func finishRequestWritesItsEvents(t *testing.T) {
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, p, s := eventWorld(t, now)
	rid := "start-AB12CD"
	outbox := []*repo.OutboxTask{{TaskType: jobs.TypeSessionAutoStop, TaskID: "autostop:x", Queue: jobs.QueueCritical,
		Payload: json.RawMessage(`{}`), ProcessAt: now}}
	if err := w.finish(rid, jobs.TypeSessionStart, repo.Finish{Status: repo.RequestApplied, Result: s.View(now), Outbox: outbox,
		Events: []*repo.Event{repo.SessionEvent(jobs.EventSessionStarted, s, now, &rid, "")}}); err != nil {
		t.Fatal(err)
	}
	if outbox[0].ID == 0 {
		t.Fatal("the outbox row has no ID")
	}
	evs := w.events("request_id = ?", rid)
	if len(evs) != 1 || evs[0].Type != jobs.EventSessionStarted || *evs[0].SessionID != s.ID || *evs[0].PermitID != p.ID ||
		!evs[0].OccurredAt.Equal(now) || evs[0].ID == "" || evs[0].Sequence != nil {
		t.Fatalf("events %+v", evs)
	}
	var d map[string]any
	if err := json.Unmarshal(evs[0].Data, &d); err != nil || d["plate"] != "****CD" || d["id"] != repo.FormatID(s.ID) || d["status"] != domain.StatusActive {
		t.Fatalf("data %s, want the session with its plate masked", evs[0].Data)
	}
	if _, ok := d["reason"]; ok {
		t.Fatalf("a started event with a reason: %s", evs[0].Data)
	}

	// Events of a transaction rolled back are not written.
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		if _, err := repo.ClaimRequest(ctx, tx, "rolled", jobs.TypeSessionStop, "fp", nil); err != nil {
			return err
		}
		stopped := "rolled"
		if err := repo.FinishRequest(ctx, tx, "rolled", repo.Finish{Type: jobs.TypeSessionStop, BodyHash: "fp", Status: repo.RequestApplied, Result: s.View(now),
			Events: []*repo.Event{repo.SessionEvent(jobs.EventSessionStopped, s, now, &stopped, jobs.StopReasonManual)}}); err != nil {
			return err
		}
		return context.Canceled
	})
	if err == nil {
		t.Fatal("the transaction was not rolled back")
	}
	if evs := w.events("request_id = ?", "rolled"); len(evs) != 0 {
		t.Fatalf("events of a rolled back transaction: %+v", evs)
	}
}

func rejectionNamesAnExistingPermit(t *testing.T) {
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, p, s := eventWorld(t, now)
	pid, sid := repo.FormatID(p.ID), repo.FormatID(s.ID)
	for _, c := range []struct {
		name, permit, session string
		want                  *int64
	}{
		{"an existing permit", pid, "", &p.ID},
		{"a permit that does not exist", "987654321", "", nil},
		{"no ID at all", "abc", "", nil},
		{"an existing session's permit", "", sid, &p.ID},
		{"a session that does not exist", "", "987654321", nil},
		{"nothing named", "", "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "rej-" + strings.ReplaceAll(strings.ReplaceAll(c.name, " ", "-"), "'", "")
			if err := w.finish(id, jobs.TypeSessionStop, repo.Finish{Status: repo.RequestRejected,
				Rejection: &jobs.Rejection{Code: "session_not_open", Message: "the session is ****CD's"},
				At:        now, PermitID: c.permit, SessionID: c.session}); err != nil {
				t.Fatal(err)
			}
			evs := w.events("request_id = ?", id)
			if len(evs) != 1 || evs[0].Type != jobs.EventRequestRejected || evs[0].SessionID != nil || !evs[0].OccurredAt.Equal(now) {
				t.Fatalf("events %+v, want one request.rejected", evs)
			}
			if got := evs[0].PermitID; (got == nil) != (c.want == nil) || (got != nil && *got != *c.want) {
				t.Fatalf("permit_id %v, want %v", got, c.want)
			}
			var d map[string]string
			if err := json.Unmarshal(evs[0].Data, &d); err != nil || len(d) != 4 || d["request_id"] != id ||
				d["type"] != jobs.TypeSessionStop || d["code"] != "session_not_open" || d["message"] != "the session is ****CD's" {
				t.Fatalf("data %s", evs[0].Data)
			}
		})
	}
}

func rolloverWritesYearRolledEvents(t *testing.T) {
	w := newWorld(t)
	w.zone("EV", "Europe/Amsterdam", "01-01")
	issued := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	var ps []*repo.Permit
	for range 5 {
		ps = append(ps, w.permit("EV", issued, 60))
	}
	// Nightly, in batches of 2 (three statements): one event per permit, as
	// the permit stands in its new year, at the run's instant.
	now := time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC)
	if res, err := repo.RollOver(w.ctx, w.store.DB, now, 2); err != nil || res.Years != 5 {
		t.Fatalf("rollover: %+v %v", res, err)
	}
	evs := w.events("type = ?", jobs.EventPermitYearRolled)
	if len(evs) != 5 {
		t.Fatalf("%d year_rolled events, want 5", len(evs))
	}
	seen := map[int64]bool{}
	for _, ev := range evs {
		var d jobs.Permit
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if ev.PermitID == nil || d.ID != repo.FormatID(*ev.PermitID) || ev.SessionID != nil || ev.RequestID != nil ||
			!ev.OccurredAt.Equal(now) || !d.Year.StartsAt.Equal(ps[0].YearEndsAt) || d.BalanceMinutes != 60 {
			t.Fatalf("year_rolled %+v %s", ev, ev.Data)
		}
		seen[*ev.PermitID] = true
	}
	if len(seen) != 5 {
		t.Fatalf("year_rolled of %d permits, want 5", len(seen))
	}
	// On use, two years missed: one event per year, in the caller's transaction.
	later := time.Date(2029, 1, 2, 0, 0, 0, 0, time.UTC)
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		locked, err := repo.LockPermit(ctx, tx, ps[0].ID)
		if err != nil {
			return err
		}
		n, err := repo.RollPermitYears(ctx, tx, w.zones["EV"], locked, later)
		if err == nil && n != 2 {
			t.Errorf("rolled %d years, want 2", n)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if evs := w.events("type = ? AND permit_id = ?", jobs.EventPermitYearRolled, ps[0].ID); len(evs) != 3 {
		t.Fatalf("%d year_rolled events of the permit, want 3", len(evs))
	}
	w.checkLedger()
}

func endingEventWrittenOnce(t *testing.T) {
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, _, s := eventWorld(t, now)
	for i, want := range []bool{true, false} {
		wrote, err := repo.AddEndingEvent(w.ctx, w.store.DB, repo.SessionEvent(jobs.EventSessionEnding, s, now.Add(time.Duration(i)*time.Minute), nil, ""))
		if err != nil || wrote != want {
			t.Fatalf("ending %d: wrote %v (%v), want %v", i, wrote, err, want)
		}
	}
	// Another planned end is another ending.
	s.PlannedEndAt = s.PlannedEndAt.Add(time.Hour)
	if wrote, err := repo.AddEndingEvent(w.ctx, w.store.DB, repo.SessionEvent(jobs.EventSessionEnding, s, now, nil, "")); err != nil || !wrote {
		t.Fatalf("ending of another end: %v %v", wrote, err)
	}
}

func rightVersionGrowsWithEveryChange(t *testing.T) {
	w := newWorld(t)
	w.zone("EV", "Europe/Amsterdam", "01-01")
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	p := w.permit("EV", now, 600)
	codes := &domain.ZoneRegistration{AreaManagerID: "363", AreaID: "363_A", UsageID: "BZP"}
	reg, plain := w.session(p, "AB12CD", now, 60, codes), w.session(p, "AB12CE", now, 60, nil)
	wantVersion := func(s *repo.Session, version int, at time.Time) {
		t.Helper()
		got, err := repo.GetSession(w.ctx, w.store.DB, s.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.RightVersion != version || s.RightVersion != version {
			t.Fatalf("session %d: right version %d (the caller's %d), want %d", s.ID, got.RightVersion, s.RightVersion, version)
		}
		if version > 0 && (got.RightChangedAt == nil || !got.RightChangedAt.Equal(at) || *got.Registration != *codes) {
			t.Fatalf("session %d: changed %v, codes %+v", s.ID, got.RightChangedAt, got.Registration)
		}
		if version == 0 && (got.RightChangedAt != nil || got.Registration != nil) {
			t.Fatalf("unregistered session %d: changed %v, codes %+v", s.ID, got.RightChangedAt, got.Registration)
		}
	}
	wantVersion(reg, 1, now)
	wantVersion(plain, 0, now)
	at := now.Add(time.Minute)
	for _, s := range []*repo.Session{reg, plain} {
		plan := domain.ChangePlan{EndChanged: true, Plate: s.Plate, Country: s.Country, StartAt: s.StartAt,
			PlannedEndAt: s.PlannedEndAt.Add(30 * time.Minute), ReservedMinutes: 90, DeltaMinutes: 30}
		if err := repo.ApplyChange(w.ctx, w.store.DB, w.reload(p), s, plan, "change-"+s.Plate, at); err != nil {
			t.Fatal(err)
		}
	}
	wantVersion(reg, 2, at)
	wantVersion(plain, 0, at)
	at = at.Add(time.Minute)
	for _, s := range []*repo.Session{reg, plain} {
		shorten := domain.StopPlan{Kind: domain.StopShorten, EndAt: s.StartAt.Add(time.Hour), Release: 30, NewReserved: 60}
		if err := repo.ApplyStop(w.ctx, w.store.DB, w.reload(p), s, shorten, nil, at); err != nil {
			t.Fatal(err)
		}
	}
	wantVersion(reg, 3, at)
	wantVersion(plain, 0, at)
	at = at.Add(time.Minute)
	for _, s := range []*repo.Session{reg, plain} {
		settle := domain.StopPlan{Kind: domain.StopSettle, EndAt: at, Release: 60, Charge: 3}
		if err := repo.ApplyStop(w.ctx, w.store.DB, w.reload(p), s, settle, nil, at); err != nil {
			t.Fatal(err)
		}
	}
	wantVersion(reg, 4, at)
	wantVersion(plain, 0, at)
	w.checkLedger()
}
