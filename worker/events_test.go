package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

// events reads the test database's events matching where (SQL on events; ""
// for all), in the order they were written.
func (e *harness) events(where string, args ...any) []repo.Event {
	e.t.Helper()
	var rows []repo.Event
	q := e.store.DB.NewSelect().Model(&rows).OrderExpr("pk")
	if where != "" {
		q = q.Where(where, args...)
	}
	if err := q.Scan(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return rows
}

// sessionEvents are the events of one session, in order.
func (e *harness) sessionEvents(id string) []repo.Event {
	e.t.Helper()
	n, _ := repo.ParseID(id)
	return e.events("session_id = ?", n)
}

// eventData is what the tests read of an event's data.
type eventData struct {
	jobs.Session
	Reason string `json:"reason"`
}

// wantSessionEvent asserts that ev is an event of type typ about session s
// (its permit and ID), written by requestID ("" for none) at at, whose data
// shows the session with its plate masked, in status, with reason.
func wantSessionEvent(t *testing.T, ev repo.Event, typ string, s jobs.Session, requestID string, at time.Time, status, reason string) eventData {
	t.Helper()
	var d eventData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("%s: data %s: %v", typ, ev.Data, err)
	}
	pid, _ := repo.ParseID(s.PermitID)
	sid, _ := repo.ParseID(s.ID)
	switch {
	case ev.Type != typ:
		t.Fatalf("event %s, want %s (%s)", ev.Type, typ, ev.Data)
	case ev.PermitID == nil || *ev.PermitID != pid || ev.SessionID == nil || *ev.SessionID != sid:
		t.Fatalf("%s names permit %v session %v, want %d and %d", typ, ev.PermitID, ev.SessionID, pid, sid)
	case requestID == "" && ev.RequestID != nil, requestID != "" && (ev.RequestID == nil || *ev.RequestID != requestID):
		t.Fatalf("%s: request_id %v, want %q", typ, ev.RequestID, requestID)
	case !ev.OccurredAt.Equal(at):
		t.Fatalf("%s occurred at %s, want %s", typ, ev.OccurredAt, at)
	case d.ID != s.ID || d.PermitID != s.PermitID || d.Status != status || d.Reason != reason:
		t.Fatalf("%s data %s, want session %s %s reason %q", typ, ev.Data, s.ID, status, reason)
	case s.Plate != "" && string(d.Plate) != domain.MaskPlate(string(s.Plate)):
		t.Fatalf("%s shows plate %q, want it masked: %q", typ, d.Plate, domain.MaskPlate(string(s.Plate)))
	case ev.Sequence != nil:
		t.Fatalf("%s written with sequence %d: only the sequencer numbers events", typ, *ev.Sequence)
	}
	return d
}

// Every change of a session writes its event, in the transaction of the
// change: the session as an operator reads it (plate masked), with the
// request that made it and the instant (README "Events and webhooks: how an
// upstream app subscribes").
func TestEveryChangeOfASessionWritesItsEvent(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p := l.newPermit("TEST", 10)

	task, startID := l.sessionTask(p.ID, "ev-12-cd", nil, ptr(t0.Add(time.Hour)))
	var s jobs.Session
	if r := l.run(task, l.h.SessionStart, &s); r.Status != repo.RequestApplied {
		t.Fatalf("start: %s", r.Error)
	}
	evs := l.sessionEvents(s.ID)
	if len(evs) != 1 {
		t.Fatalf("%d events after a start, want 1", len(evs))
	}
	wantSessionEvent(t, evs[0], jobs.EventSessionStarted, s, startID, t0, domain.StatusActive, "")
	if d := wantSessionEvent(t, evs[0], jobs.EventSessionStarted, s, startID, t0, domain.StatusActive, ""); d.Plate != "****CD" {
		t.Fatalf("plate in the event %q, want ****CD", d.Plate)
	}

	// A new end, then a corrected plate: session.changed each.
	l.clk.add(time.Minute)
	changeTask := l.changeTask(s.ID, ptr(t0.Add(90*time.Minute)), nil)
	var changed jobs.Session
	l.run(changeTask, l.h.SessionChange, &changed)
	l.clk.add(time.Minute)
	correctTask := l.changeTask(s.ID, nil, ptr("EV-12-CE"))
	var corrected jobs.Session
	l.run(correctTask, l.h.SessionChange, &corrected)
	// A stop in the future shortens it: session.changed.
	l.clk.add(time.Minute)
	stopAt := l.clk.now().Add(30 * time.Minute)
	shortened, shortID := l.stopAt(s.ID, &stopAt)
	// A stop now settles it: session.stopped, manual; once.
	l.clk.add(time.Minute)
	stopped, stopID := l.stopAt(s.ID, nil)
	l.stopAt(s.ID, nil)
	evs = l.sessionEvents(s.ID)
	if len(evs) != 5 {
		t.Fatalf("%d events, want 5 (started, changed twice, shortened, stopped)", len(evs))
	}
	if d := wantSessionEvent(t, evs[1], jobs.EventSessionChanged, changed, requestIDOf(changeTask), t0.Add(time.Minute), domain.StatusActive, ""); !d.PlannedEndAt.Equal(t0.Add(90 * time.Minute)) {
		t.Fatalf("changed event's planned end %s, want the new one", d.PlannedEndAt)
	}
	if d := wantSessionEvent(t, evs[2], jobs.EventSessionChanged, corrected, requestIDOf(correctTask), t0.Add(2*time.Minute), domain.StatusActive, ""); d.Plate != "****CE" {
		t.Fatalf("corrected plate in the event %q, want ****CE", d.Plate)
	}
	if d := wantSessionEvent(t, evs[3], jobs.EventSessionChanged, shortened, shortID, t0.Add(3*time.Minute), domain.StatusActive, ""); !d.PlannedEndAt.Equal(stopAt) {
		t.Fatalf("shortened event's planned end %s, want %s", d.PlannedEndAt, stopAt)
	}
	if d := wantSessionEvent(t, evs[4], jobs.EventSessionStopped, stopped, stopID, t0.Add(4*time.Minute), domain.StatusStopped, jobs.StopReasonManual); d.EndAt == nil || d.ChargedMinutes == nil {
		t.Fatalf("stopped event without end or charge: %s", evs[4].Data)
	}

	// A planned session stopped before its start is cancelled.
	planned := l.mustStart(p.ID, "EV-PLAN", ptr(l.clk.now().Add(time.Hour)), nil)
	cancelled, cancelID := l.stopAt(planned.ID, nil)
	evs = l.sessionEvents(planned.ID)
	if len(evs) != 2 || evs[0].Type != jobs.EventSessionStarted {
		t.Fatalf("planned session's events %v, want started and cancelled", types(evs))
	}
	wantSessionEvent(t, evs[1], jobs.EventSessionCancelled, cancelled, cancelID, l.clk.now(), domain.StatusCancelled, "")

	// The auto-stop and the reconciler: session.stopped, auto, no request.
	auto := l.mustStart(p.ID, "EV-AUTO", nil, ptr(l.clk.now().Add(10*time.Minute)))
	late := l.mustStart(p.ID, "EV-LATE", nil, ptr(l.clk.now().Add(10*time.Minute)))
	l.clk.set(auto.PlannedEndAt)
	l.autoStopNow(auto)
	evs = l.sessionEvents(auto.ID)
	if len(evs) != 2 {
		t.Fatalf("auto-stopped session's events %v, want started and stopped", types(evs))
	}
	autoView := l.session(auto.ID).View(l.clk.now())
	wantSessionEvent(t, evs[1], jobs.EventSessionStopped, autoView, "", l.clk.now(), domain.StatusStopped, jobs.StopReasonAuto)
	l.clk.set(late.PlannedEndAt.Add(time.Hour))
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.Settled != 1 {
		t.Fatalf("reconcile: %+v %v", rep, err)
	}
	evs = l.sessionEvents(late.ID)
	if len(evs) != 2 {
		t.Fatalf("reconciled session's events %v, want started and stopped", types(evs))
	}
	wantSessionEvent(t, evs[1], jobs.EventSessionStopped, l.session(late.ID).View(l.clk.now()), "", l.clk.now(), domain.StatusStopped, jobs.StopReasonAuto)
	// A second auto-stop of a settled session writes nothing.
	l.autoStopNow(auto)
	if n := len(l.sessionEvents(auto.ID)); n != 2 {
		t.Fatalf("a second auto-stop wrote an event: %d events", n)
	}
	l.checkInvariants()
}

// stopAt runs a session:stop at at (nil: at its receipt), received at the
// test's clock, and returns the session it answered and its request ID.
func (l *lifecycle) stopAt(sessionID string, at *time.Time) (jobs.Session, string) {
	l.t.Helper()
	task, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: rid("stop"), SessionID: sessionID, At: at, ReceivedAt: l.clk.now()})
	if err != nil {
		l.t.Fatal(err)
	}
	var s jobs.Session
	r := l.run(task, l.h.SessionStop, &s)
	if r.Status != repo.RequestApplied {
		l.t.Fatalf("stop of session %s at %v: %s %s", sessionID, at, r.Status, r.Error)
	}
	return s, r.RequestID
}

// requestIDOf is the request ID a request task carries.
func requestIDOf(task *asynq.Task) string {
	var p struct {
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(task.Payload(), &p)
	return p.RequestID
}

func types(evs []repo.Event) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

// wantPermitEvent asserts that ev is an event of type typ about permit p,
// written by requestID ("" for none) at at, whose data is the permit as it
// stands after the change (balance).
func wantPermitEvent(t *testing.T, ev repo.Event, typ, permitID, requestID string, at time.Time, balance int) jobs.Permit {
	t.Helper()
	var d jobs.Permit
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("%s: data %s: %v", typ, ev.Data, err)
	}
	pid, _ := repo.ParseID(permitID)
	switch {
	case ev.Type != typ:
		t.Fatalf("event %s, want %s (%s)", ev.Type, typ, ev.Data)
	case ev.PermitID == nil || *ev.PermitID != pid || ev.SessionID != nil:
		t.Fatalf("%s names permit %v session %v, want %d and none", typ, ev.PermitID, ev.SessionID, pid)
	case requestID == "" && ev.RequestID != nil, requestID != "" && (ev.RequestID == nil || *ev.RequestID != requestID):
		t.Fatalf("%s: request_id %v, want %q", typ, ev.RequestID, requestID)
	case !ev.OccurredAt.Equal(at):
		t.Fatalf("%s occurred at %s, want %s", typ, ev.OccurredAt, at)
	case d.ID != permitID || d.BalanceMinutes != balance:
		t.Fatalf("%s data %s, want permit %s with balance %d", typ, ev.Data, permitID, balance)
	}
	return d
}

// permitEvents are the events of one permit that are no session's, in order.
func (e *harness) permitEvents(id string) []repo.Event {
	e.t.Helper()
	n, _ := repo.ParseID(id)
	return e.events("permit_id = ? AND session_id IS NULL AND type <> ?", n, jobs.EventRequestRejected)
}

// A permit's changes write their events: issued, topped up (once per
// payment), ended after an event for each of its open sessions, and a year
// rolled over, by the nightly rollover and on use alike.
func TestEveryChangeOfAPermitWritesItsEvent(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	addr := l.address("TEST")
	issue, issueID := l.issueTask(l.resident(addr), addr)
	var p jobs.Permit
	if r := l.run(issue, l.h.PermitIssue, &p); r.Status != repo.RequestApplied {
		t.Fatalf("issue: %s", r.Error)
	}
	l.clk.add(time.Minute)
	topup, topupID := l.topupTask(p.ID, 5, "PAY-EV-1")
	l.run(topup, l.h.PermitTopup, nil)
	// The same payment again, under another request ID: nothing added, no event.
	again, _ := l.topupTask(p.ID, 5, "PAY-EV-1")
	if r := l.run(again, l.h.PermitTopup, nil); r.Status != repo.RequestApplied {
		t.Fatalf("repeated payment: %s", r.Error)
	}
	evs := l.permitEvents(p.ID)
	if len(evs) != 2 {
		t.Fatalf("permit events %v, want issued and one topped_up", types(evs))
	}
	wantPermitEvent(t, evs[0], jobs.EventPermitIssued, p.ID, issueID, t0, 0)
	wantPermitEvent(t, evs[1], jobs.EventPermitToppedUp, p.ID, topupID, t0.Add(time.Minute), 300)

	// Ending it settles an active session and cancels a planned one; their
	// events come first, then the permit's.
	active := l.mustStart(p.ID, "EV-END1", nil, nil)
	planned := l.mustStart(p.ID, "EV-END2", ptr(l.clk.now().Add(time.Hour)), nil)
	l.clk.add(10 * time.Minute)
	end, endID := l.endTask(p.ID, nil, "moved")
	var ended jobs.Permit
	if r := l.run(end, l.h.PermitEnd, &ended); r.Status != repo.RequestApplied {
		t.Fatalf("end: %s", r.Error)
	}
	pid, _ := repo.ParseID(p.ID)
	evs = l.events("permit_id = ? AND request_id = ?", pid, endID)
	if len(evs) != 3 {
		t.Fatalf("the end's events %v, want stopped, cancelled, ended", types(evs))
	}
	now := l.clk.now()
	wantSessionEvent(t, evs[0], jobs.EventSessionStopped, l.session(active.ID).View(now), endID, now, domain.StatusStopped, jobs.StopReasonPermitEnded)
	wantSessionEvent(t, evs[1], jobs.EventSessionCancelled, l.session(planned.ID).View(now), endID, now, domain.StatusCancelled, "")
	if d := wantPermitEvent(t, evs[2], jobs.EventPermitEnded, p.ID, endID, now, 0); d.Status != domain.PermitEnded || d.EndedAt == nil {
		t.Fatalf("ended event's permit %s", evs[2].Data)
	}
	// Ending it again changes nothing: no event.
	again, _ = l.endTask(p.ID, nil, "moved")
	l.run(again, l.h.PermitEnd, nil)
	if n := len(l.events("permit_id = ?", pid)); n != 7 {
		t.Fatalf("%d events of the permit after a second end, want 7", n)
	}
	l.checkInvariants()
}

// A permit year closed writes permit.year_rolled, with the permit in its new
// year: by the nightly rollover (set-wise, one event per year closed) and by a
// request that finds the year ended (on use) alike, and never twice.
func TestYearRolledOverWritesItsEvent(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	nightly := l.newPermit("TEST", 2)
	onUse := l.newPermit("TEST", 2)
	end := l.permitRow(nightly.ID).YearEndsAt
	l.clk.set(end.Add(time.Hour))

	// On use: a top-up after the anniversary rolls the year first.
	topup, topupID := l.topupTask(onUse.ID, 1, rid("pay"))
	l.run(topup, l.h.PermitTopup, nil)
	evs := l.permitEvents(onUse.ID)
	if got := types(evs); len(got) != 4 || got[2] != jobs.EventPermitYearRolled || got[3] != jobs.EventPermitToppedUp {
		t.Fatalf("on-use events %v, want issued, topped_up, year_rolled, topped_up", got)
	}
	if d := wantPermitEvent(t, evs[2], jobs.EventPermitYearRolled, onUse.ID, "", l.clk.now(), 120); !d.Year.StartsAt.Equal(end) {
		t.Fatalf("rolled permit's year starts %s, want %s", d.Year.StartsAt, end)
	}
	wantPermitEvent(t, evs[3], jobs.EventPermitToppedUp, onUse.ID, topupID, l.clk.now(), 180)

	// Nightly: the other permit's year, and nothing of the first again.
	if res, err := l.h.Rollover(l.ctx); err != nil || res.Years != 1 {
		t.Fatalf("rollover: %+v %v, want 1 year", res, err)
	}
	evs = l.permitEvents(nightly.ID)
	if len(evs) != 3 {
		t.Fatalf("nightly events %v, want issued, topped_up, year_rolled", types(evs))
	}
	if d := wantPermitEvent(t, evs[2], jobs.EventPermitYearRolled, nightly.ID, "", l.clk.now(), 120); !d.Year.StartsAt.Equal(end) || d.Year.PurchasedMinutes != 0 {
		t.Fatalf("rolled permit's year %+v", d.Year)
	}
	if n := len(l.events("type = ?", jobs.EventPermitYearRolled)); n != 2 {
		t.Fatalf("%d year_rolled events, want 2", n)
	}

	// Two years missed: one event per year closed, in one run.
	l.clk.set(l.permitRow(nightly.ID).YearEndsAt.AddDate(1, 0, 1))
	if res, err := l.h.Rollover(l.ctx); err != nil || res.Years != 4 {
		t.Fatalf("rollover of two missed years: %+v %v, want 4 years", res, err)
	}
	if n := len(l.events("type = ?", jobs.EventPermitYearRolled)); n != 6 {
		t.Fatalf("%d year_rolled events, want 6", n)
	}
	l.checkInvariants()
}

// wantRejectedEvent asserts the one event of a rejected request: request.rejected
// naming permitID ("": none), with the request's ID, type, code and message.
func (e *harness) wantRejectedEvent(t *testing.T, requestID, typ, code, permitID string) repo.Event {
	t.Helper()
	evs := e.events("request_id = ?", requestID)
	if len(evs) != 1 || evs[0].Type != jobs.EventRequestRejected {
		t.Fatalf("events of rejected request %s: %v, want one request.rejected", requestID, types(evs))
	}
	ev := evs[0]
	var d struct {
		RequestID string `json:"request_id"`
		Type      string `json:"type"`
		Code      string `json:"code"`
		Message   string `json:"message"`
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatal(err)
	}
	r := e.outcome(requestID, nil)
	var rej jobs.Rejection
	_ = json.Unmarshal(r.Error, &rej)
	if d.RequestID != requestID || d.Type != typ || d.Code != code || d.Message != rej.Message || d.Message == "" {
		t.Fatalf("request.rejected data %s, want %s %s %s %q", ev.Data, requestID, typ, code, rej.Message)
	}
	switch {
	case permitID == "" && ev.PermitID != nil:
		t.Fatalf("request.rejected of %s names permit %d, want none", requestID, *ev.PermitID)
	case permitID != "" && (ev.PermitID == nil || repo.FormatID(*ev.PermitID) != permitID):
		t.Fatalf("request.rejected of %s names permit %v, want %s", requestID, ev.PermitID, permitID)
	case ev.SessionID != nil:
		t.Fatalf("request.rejected names session %d", *ev.SessionID)
	}
	return ev
}

// A rejected request is an event of its own, request.rejected, naming the
// permit the request named when it exists (a start, top-up or end names a
// permit, a stop or change a session, whose permit counts), and nothing else
// of it is written: a rejected start has no session.started. A rule's, a
// refusal's (request_failed) and an unreadable payload's (bad_request) alike.
// A duplicate delivery and an idempotency conflict write nothing.
func TestARejectedRequestIsAnEvent(t *testing.T) {
	e := setupParallel(t)
	rich := e.permit(5)
	poor := e.permit(0)
	task, id := e.startTask(rich, "RJ-12-AB", nil, nil)
	var s jobs.Session
	e.run(task, e.h.SessionStart, &s)
	stop, _ := e.stopTask(s.ID, nil)
	e.run(stop, e.h.SessionStop, nil)

	for _, c := range []struct {
		name, typ, code, permit string
		prepare                 func() (*asynq.Task, func(context.Context, *asynq.Task) error)
	}{
		{"a rule refuses a start", jobs.TypeSessionStart, "insufficient_balance", poor, func() (*asynq.Task, func(context.Context, *asynq.Task) error) {
			task, _ := e.startTask(poor, "RJ-12-CD", nil, nil)
			return task, e.h.SessionStart
		}},
		{"a start on no permit", jobs.TypeSessionStart, "not_found", "", func() (*asynq.Task, func(context.Context, *asynq.Task) error) {
			task, _ := e.startTask("987654321", "RJ-12-CD", nil, nil)
			return task, e.h.SessionStart
		}},
		{"a change of a stopped session names its permit", jobs.TypeSessionChange, "session_not_open", rich, func() (*asynq.Task, func(context.Context, *asynq.Task) error) {
			task, err := jobs.NewSessionChange(jobs.SessionChange{RequestID: rid("change"), SessionID: s.ID, EndAt: ptr(time.Now().Add(time.Hour))})
			if err != nil {
				t.Fatal(err)
			}
			return task, e.h.SessionChange
		}},
		{"a stop of no session", jobs.TypeSessionStop, "not_found", "", func() (*asynq.Task, func(context.Context, *asynq.Task) error) {
			task, _ := e.stopTask("987654321", nil)
			return task, e.h.SessionStop
		}},
		{"an issue names no permit", jobs.TypePermitIssue, "not_found", "", func() (*asynq.Task, func(context.Context, *asynq.Task) error) {
			task, err := jobs.NewPermitIssue(jobs.PermitIssue{RequestID: rid("issue"), ResidentID: "nobody", AddressID: "nowhere"})
			if err != nil {
				t.Fatal(err)
			}
			return task, e.h.PermitIssue
		}},
		{"an unreadable payload", jobs.TypePermitTopup, "bad_request", rich, func() (*asynq.Task, func(context.Context, *asynq.Task) error) {
			payload := fmt.Sprintf(`{"request_id":%q,"permit_id":%q,"hours":"two","payment_ref":"P"}`, rid("topup"), rich)
			return asynq.NewTask(jobs.TypePermitTopup, []byte(payload)), e.h.PermitTopup
		}},
		{"a write the database refuses for good", jobs.TypeSessionStart, "request_failed", rich, func() (*asynq.Task, func(context.Context, *asynq.Task) error) {
			e.exec("ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (plate <> 'RJ99ZZ')")
			task, _ := e.startTask(rich, "rj-99-zz", nil, nil)
			return task, e.h.SessionStart
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			task, handler := c.prepare()
			id := requestIDOf(task)
			if err := handler(e.ctx, task); err != nil {
				t.Fatal(err)
			}
			if r := e.outcome(id, nil); rejection(t, r) != c.code {
				t.Fatalf("outcome %s %s, want %s", r.Status, r.Error, c.code)
			}
			ev := e.wantRejectedEvent(t, id, c.typ, c.code, c.permit)
			if strings.Contains(string(ev.Data), "RJ99ZZ") || strings.Contains(string(ev.Data), "RJ12CD") {
				t.Fatalf("request.rejected shows a plate: %s", ev.Data)
			}
			// Delivered again: answered from the outcome, no second event.
			_ = handler(e.ctx, task)
			if n := len(e.events("request_id = ?", id)); n != 1 {
				t.Fatalf("%d events after a second delivery, want 1", n)
			}
		})
	}
	if n := len(e.events("type = ?", jobs.EventSessionStarted)); n != 1 {
		t.Fatalf("%d session.started events, want the one applied start's", n)
	}

	// The request ID of the applied start, reused for another start: an
	// idempotency conflict, which changes nothing and writes no event.
	before := len(e.events(""))
	other, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: id, PermitID: rich, Plate: "RJ-OTHER"})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.h.SessionStart(e.ctx, other); err == nil {
		t.Fatal("a reused request ID was applied")
	}
	if n := len(e.events("")); n != before {
		t.Fatalf("an idempotency conflict wrote %d events", n-before)
	}
	e.checkInvariants()
}

// Events ride with their unit's writes in a shared transaction: when one unit
// of a batch fails, the batch is rolled back and each unit runs again alone
// (repo.Coalescer). The healthy units' changes and events are then written
// once, and the failing one's change has none (only its request.rejected).
func TestEventsOfASharedTransactionRolledBackAreNotWritten(t *testing.T) {
	e := setupParallel(t)
	co := repo.NewCoalescer(e.store.DB, repo.CoalescerConfig{Committers: 1})
	t.Cleanup(co.Close)
	e.h.Coalescer = co
	e.exec("ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (plate NOT LIKE 'SH99%')")

	// Three starts queued behind a unit that holds the only committer, so that
	// they share the next transaction; the middle one's plate is refused.
	// Whether they did is seen afterwards (the Coalescer's Fallbacks): on a
	// loaded machine a start may come late, and the round is run again.
	round := func(n int, wait time.Duration) {
		permits := []string{e.permit(5), e.permit(5), e.permit(5)}
		release := make(chan struct{})
		held := make(chan error, 1)
		units := co.Units.Load()
		go func() {
			held <- co.Do(e.ctx, func(context.Context, repo.Tx) error { <-release; return nil })
		}()
		for co.Units.Load() == units {
			time.Sleep(time.Millisecond)
		}
		plates := []string{fmt.Sprintf("SH%d-AB", n), fmt.Sprintf("SH99-%d", n), fmt.Sprintf("SH%d-CD", n)}
		ids := make([]string, len(plates))
		var wg sync.WaitGroup
		for i, plate := range plates {
			task, id := e.startTask(permits[i], plate, nil, nil)
			ids[i] = id
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := e.h.SessionStart(e.ctx, task); err != nil {
					t.Error(err)
				}
			}()
		}
		time.Sleep(wait) // the starts queue behind the held unit (arrangement, not an assert)
		close(release)
		wg.Wait()
		if err := <-held; err != nil {
			t.Fatal(err)
		}
		for i, id := range ids {
			r := e.outcome(id, nil)
			evs := e.events("request_id = ?", id)
			if i == 1 {
				if rejection(t, r) != string(domain.CodeRequestFailed) {
					t.Fatalf("refused start: %s %s", r.Status, r.Error)
				}
				e.wantRejectedEvent(t, id, jobs.TypeSessionStart, string(domain.CodeRequestFailed), permits[i])
				continue
			}
			if r.Status != repo.RequestApplied || len(evs) != 1 || evs[0].Type != jobs.EventSessionStarted {
				t.Fatalf("start %d: %s, events %v, want applied with one session.started", i, r.Status, types(evs))
			}
		}
		if got := len(e.events("type = ?", jobs.EventSessionStarted)); got != 2*(n+1) {
			t.Fatalf("%d session.started events after %d rounds, want 2 a round", got, n+1)
		}
	}
	for n := 0; co.Fallbacks.Load() == 0; n++ {
		if n == 5 {
			t.Fatal("in 5 rounds the starts never shared a transaction that failed: the test proves nothing")
		}
		round(n, time.Duration(n+1)*200*time.Millisecond)
	}
	e.checkInvariants()
}

// A change that rolls back takes its event with it, and an event that cannot
// be written takes its change with it: they commit together or not at all.
func TestAChangeAndItsEventCommitTogether(t *testing.T) {
	e := setupParallel(t)
	pid := e.permit(5)
	// Postgres refuses the event: the start is not applied either.
	e.exec("ALTER TABLE events ADD CONSTRAINT refuse CHECK (type <> 'session.started')")
	task, id := e.startTask(pid, "TG-12-AB", nil, nil)
	e.run(task, e.h.SessionStart, nil)
	if r := e.outcome(id, nil); rejection(t, r) != string(domain.CodeRequestFailed) {
		t.Fatalf("start whose event was refused: %s %s, want request_failed", r.Status, r.Error)
	}
	var sessions int
	if err := e.store.DB.NewRaw("SELECT count(*) FROM sessions").Scan(e.ctx, &sessions); err != nil {
		t.Fatal(err)
	}
	if sessions != 0 {
		t.Fatalf("%d sessions written without their event", sessions)
	}
	e.wantRejectedEvent(t, id, jobs.TypeSessionStart, string(domain.CodeRequestFailed), pid)
	e.checkInvariants()
}

// A session started in a zone with register codes while a registrar is
// configured is registered: it keeps the codes, its right is at version 1,
// and every change (a new end, a shortening, a stop, an auto-stop, a permit
// end) is a new version in the statement of the change, with a right:register
// task for that version on the registrar queue (README "Pointing parkd at a
// register").
func TestEveryChangeOfARegisteredSessionIsANewRightVersion(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	codes := &domain.ZoneRegistration{AreaManagerID: "363", AreaID: "363_CTR", UsageID: "BZP"}
	l.zone("NPR", domain.ZoneSpec{Name: "Registered", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 100, Registration: codes})
	l.h.Registrar = nopRegistrar{}
	p := l.newPermit("NPR", 10)

	wantRight := func(id string, version int) {
		t.Helper()
		s := l.session(id)
		if s.Registration == nil || *s.Registration != *codes || s.RightVersion != version || s.RightChangedAt == nil || !s.RightChangedAt.Equal(l.clk.now()) {
			t.Fatalf("session %s: registration %+v version %d changed %v, want %+v, %d at %s",
				id, s.Registration, s.RightVersion, s.RightChangedAt, codes, version, l.clk.now())
		}
		if v := s.View(l.clk.now()).Registration; v.Status != jobs.RegistrationPending || v.Version != version {
			t.Fatalf("session %s shows registration %+v, want pending version %d", id, v, version)
		}
		taskID := jobs.RightTaskID(id, version)
		info, err := l.inspector.GetTaskInfo(jobs.QueueRegistrar, taskID)
		if err != nil {
			t.Fatalf("right:register task %s: %v", taskID, err)
		}
		var payload jobs.RightRegister
		if info.Type != jobs.TypeRightRegister || json.Unmarshal(info.Payload, &payload) != nil ||
			payload.SessionID != id || payload.Version != version || info.MaxRetry != jobs.RegisterMaxRetry {
			t.Fatalf("right:register task %s: %s %s retry %d", taskID, info.Type, info.Payload, info.MaxRetry)
		}
	}

	s := l.mustStart(p.ID, "NP-12-AB", nil, ptr(t0.Add(2*time.Hour)))
	wantRight(s.ID, 1)
	l.clk.add(time.Minute)
	l.mustChange(s.ID, ptr(t0.Add(3*time.Hour)), nil)
	wantRight(s.ID, 2)
	l.clk.add(time.Minute)
	l.stopAt(s.ID, ptr(t0.Add(time.Hour)))
	wantRight(s.ID, 3)
	l.clk.add(time.Minute)
	l.stop(s.ID)
	wantRight(s.ID, 4)

	// An auto-stop, and a permit end (of a planned session: cancelled).
	auto := l.mustStart(p.ID, "NP-12-CD", nil, ptr(l.clk.now().Add(10*time.Minute)))
	planned := l.mustStart(p.ID, "NP-12-EF", ptr(l.clk.now().Add(time.Hour)), nil)
	l.clk.set(auto.PlannedEndAt)
	l.autoStopNow(auto)
	wantRight(auto.ID, 2)
	end, _ := l.endTask(p.ID, nil, "moved")
	l.run(end, l.h.PermitEnd, nil)
	wantRight(planned.ID, 2)
	// Handed-over rows go with the next sweep (worker.OutboxSweep).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		backlog, err := repo.OutboxBacklog(l.ctx, l.store.DB)
		if err == nil && backlog == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox backlog %d (%v): the hand-over left rows behind", backlog, err)
		}
	}

	// No register codes, or no registrar: not registered, nothing queued.
	plain := l.mustStart(l.newPermit("TEST", 2).ID, "NP-12-GH", nil, nil)
	l.h.Registrar = nil
	unsent := l.mustStart(l.newPermit("NPR", 2).ID, "NP-12-IJ", nil, nil)
	for _, id := range []string{plain.ID, unsent.ID} {
		l.clk.add(time.Minute)
		l.stop(id)
		row := l.session(id)
		if row.Registration != nil || row.RightVersion != 0 || row.View(l.clk.now()).Registration.Status != jobs.RegistrationOff {
			t.Fatalf("unregistered session %s: %+v version %d", id, row.Registration, row.RightVersion)
		}
		for v := range 3 {
			if _, err := l.inspector.GetTaskInfo(jobs.QueueRegistrar, jobs.RightTaskID(id, v)); err == nil {
				t.Fatalf("right:register of unregistered session %s queued", id)
			}
		}
	}
	l.checkInvariants()
}

// nopRegistrar is a configured registrar; the tests here do not run its tasks.
type nopRegistrar struct{}

func (nopRegistrar) Register(context.Context, worker.Right) error { return nil }

// EventsWritten is called after each transaction that wrote events has
// committed (the sequencer's nudge): the events are there for any other
// connection to read when it is called. A request delivered again, and a
// notice already sent, write nothing and call nothing.
func TestEventsWrittenIsCalledAfterTheCommit(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	var calls, seen []int
	l.h.EventsWritten = func() {
		calls = append(calls, 1)
		seen = append(seen, len(l.events(""))) // another connection: what has committed
	}
	step := func(what string, wantCall bool, do func()) {
		t.Helper()
		before := len(l.events(""))
		n := len(calls)
		do()
		after := len(l.events(""))
		switch {
		case wantCall && (len(calls) != n+1 || seen[n] != after || after == before):
			t.Fatalf("%s: %d calls seeing %v events, want one call seeing all %d", what, len(calls)-n, seen[n:], after)
		case !wantCall && (len(calls) != n || after != before):
			t.Fatalf("%s: %d calls, %d new events, want none", what, len(calls)-n, after-before)
		}
	}
	var p jobs.Permit
	step("issue", true, func() { p = l.newPermit("TEST", 0) })
	topup, _ := l.topupTask(p.ID, 2, rid("pay"))
	step("top-up", true, func() { l.run(topup, l.h.PermitTopup, nil) })
	step("the top-up delivered again", false, func() { l.run(topup, l.h.PermitTopup, nil) })
	refused, _ := l.sessionTask(p.ID, "NOT A PLATE!", nil, nil)
	step("a rejected start", true, func() { wantRejected(t, l.run(refused, l.h.SessionStart, nil), domain.CodeInvalidPlate) })
	var s jobs.Session
	step("start", true, func() { s = l.mustStart(p.ID, "NU-12-AB", nil, ptr(t0.Add(30*time.Minute))) })
	step("ending", true, func() { l.endingNow(s, s.PlannedEndAt) })
	step("ending again", false, func() { l.endingNow(s, s.PlannedEndAt) })
	l.clk.set(s.PlannedEndAt)
	step("auto-stop", true, func() { l.autoStopNow(s) })
	step("auto-stop again", false, func() { l.autoStopNow(s) })
	l.clk.set(l.permitRow(p.ID).YearEndsAt.Add(time.Minute))
	step("rollover", true, func() {
		if _, err := l.h.Rollover(l.ctx); err != nil {
			t.Fatal(err)
		}
	})
}
