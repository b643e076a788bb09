package worker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

func (l *lifecycle) changeTask(sessionID string, end *time.Time, plate *string) *asynq.Task {
	l.t.Helper()
	task, err := jobs.NewSessionChange(jobs.SessionChange{RequestID: rid("change"), SessionID: sessionID,
		EndAt: end, Plate: plate, ReceivedAt: l.clk.now()})
	if err != nil {
		l.t.Fatal(err)
	}
	return task
}

// change runs a session:change and returns its outcome and, when applied, the
// changed session.
func (l *lifecycle) change(sessionID string, end *time.Time, plate *string) (*repo.Request, jobs.Session) {
	l.t.Helper()
	var s jobs.Session
	r := l.run(l.changeTask(sessionID, end, plate), l.h.SessionChange, &s)
	return r, s
}

func (l *lifecycle) mustChange(sessionID string, end *time.Time, plate *string) jobs.Session {
	l.t.Helper()
	r, s := l.change(sessionID, end, plate)
	if r.Status != repo.RequestApplied {
		l.t.Fatalf("change of session %s: %s %s", sessionID, r.Status, r.Error)
	}
	return s
}

// stop runs a session:stop received at the test's clock.
func (l *lifecycle) stop(sessionID string) jobs.Session {
	l.t.Helper()
	task, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: rid("stop"), SessionID: sessionID, ReceivedAt: l.clk.now()})
	if err != nil {
		l.t.Fatal(err)
	}
	var s jobs.Session
	if r := l.run(task, l.h.SessionStop, &s); r.Status != repo.RequestApplied {
		l.t.Fatalf("stop of session %s: %s %s", sessionID, r.Status, r.Error)
	}
	return s
}

func hasNotice(s jobs.Session, code string) bool {
	for _, n := range s.Notices {
		if n.Code == code {
			return true
		}
	}
	return false
}

// An extension reserves the extra minutes at once, cut by the balance exactly
// as a start is (with its notice); the settlement then releases whatever is
// reserved, so the session's ledger nets to its charge and `parkd check` holds.
func TestChangeExtendCutByBalanceWithNotice(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p := l.newPermit("TEST", 1) // 60 minutes
	s := l.mustStart(p.ID, "EXT1", nil, ptr(t0.Add(30*time.Minute)))
	l.clk.add(5 * time.Minute)
	c := l.mustChange(s.ID, ptr(t0.Add(2*time.Hour)), nil)
	if !c.PlannedEndAt.Equal(t0.Add(time.Hour)) || c.ReservedMinutes != 60 || !hasNotice(c, domain.NoticeCutByBalance) {
		t.Fatalf("extended: end %s reserved %d notices %+v, want %s, 60 and %s",
			c.PlannedEndAt, c.ReservedMinutes, c.Notices, t0.Add(time.Hour), domain.NoticeCutByBalance)
	}
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 0 || pr.ReservedMinutes != 60 {
		t.Fatalf("permit after the extension: balance %d reserved %d, want 0 and 60", pr.BalanceMinutes, pr.ReservedMinutes)
	}
	if k := l.ledgerKinds(p.ID); k["reserve"] != 2 {
		t.Fatalf("ledger: %v, want the start's reserve and the change's", k)
	}
	l.checkInvariants()
	// Nothing left to extend with: the end stays where the balance cut it,
	// with the notice, and nothing is booked.
	again := l.mustChange(s.ID, ptr(t0.Add(90*time.Minute)), nil)
	if !again.PlannedEndAt.Equal(c.PlannedEndAt) || !hasNotice(again, domain.NoticeCutByBalance) {
		t.Fatalf("extended with no balance: %+v", again)
	}
	if k := l.ledgerKinds(p.ID); k["reserve"] != 2 {
		t.Fatalf("ledger: %v, want no further reserve", k)
	}
	l.clk.set(t0.Add(20 * time.Minute))
	if stopped := l.stop(s.ID); *stopped.ChargedMinutes != 20 {
		t.Fatalf("stop: %+v, want 20 minutes charged", stopped)
	}
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 40 || pr.ReservedMinutes != 0 || pr.UsedMinutes != 20 {
		t.Fatalf("permit after the stop: balance %d reserved %d used %d, want 40, 0, 20", pr.BalanceMinutes, pr.ReservedMinutes, pr.UsedMinutes)
	}
	l.checkInvariants()
}

// A shortening releases the minutes at once, with a release entry of the
// change's request.
func TestChangeShortenReleasesAtOnce(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p := l.newPermit("TEST", 5) // 300 minutes
	s := l.mustStart(p.ID, "SHORT1", nil, nil)
	task := l.changeTask(s.ID, ptr(t0.Add(time.Hour)), nil)
	var c jobs.Session
	if r := l.run(task, l.h.SessionChange, &c); r.Status != repo.RequestApplied {
		t.Fatalf("shorten: %s %s", r.Status, r.Error)
	}
	if c.ReservedMinutes != 60 || !c.PlannedEndAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("shortened: %+v", c)
	}
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 240 || pr.ReservedMinutes != 60 {
		t.Fatalf("permit: balance %d reserved %d, want 240 and 60", pr.BalanceMinutes, pr.ReservedMinutes)
	}
	last := l.ledger(p.ID)
	if e := last[len(last)-1]; e.Kind != repo.LedgerRelease || e.Minutes != 120 || e.RequestID == nil {
		t.Fatalf("last entry %+v, want a release of 120 by the change", e)
	}
	// The same request again (a duplicate delivery) has one effect.
	if err := l.h.SessionChange(l.ctx, task); err != nil {
		t.Fatal(err)
	}
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 240 {
		t.Fatalf("after a duplicate delivery: balance %d, want 240", pr.BalanceMinutes)
	}
	l.checkInvariants()
}

// The plate may be corrected up to 2 minutes after the start, not later, and
// never onto a plate parked in the zone.
func TestChangePlateCorrectionWindow(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p := l.newPermit("TEST", 10)
	s := l.mustStart(p.ID, "TYPO1", nil, nil)
	l.mustStart(p.ID, "TAKEN1", nil, nil)
	l.clk.add(time.Minute)
	if r, _ := l.change(s.ID, nil, ptr("taken-1")); rejection(t, r) != string(domain.CodePlateAlreadyParked) {
		t.Fatalf("onto a parked plate: %s %s, want %s", r.Status, r.Error, domain.CodePlateAlreadyParked)
	}
	c := l.mustChange(s.ID, nil, ptr("ty-po-2"))
	if c.Plate != "TYPO2" || c.ReservedMinutes != s.ReservedMinutes || !c.PlannedEndAt.Equal(s.PlannedEndAt) {
		t.Fatalf("corrected: %+v, want plate TYPO2 and the rest unchanged", c)
	}
	l.clk.set(t0.Add(2*time.Minute + time.Second))
	r, _ := l.change(s.ID, nil, ptr("TYPO3"))
	wantRejected(t, r, domain.CodePlateChangeWindowClosed)
	// The same plate again is no change, at any time.
	if c := l.mustChange(s.ID, nil, ptr("TYPO2")); c.Plate != "TYPO2" {
		t.Fatalf("same plate: %+v", c)
	}
	if k := l.ledgerKinds(p.ID); k["reserve"] != 2 || k["release"] != 0 {
		t.Fatalf("ledger after plate changes: %v, want only the two starts' reserves", k)
	}
	l.checkInvariants()
}

// A stopped or cancelled session is session_not_open before any other check:
// even a change that names nothing.
func TestChangeSessionNotOpen(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p := l.newPermit("TEST", 10)
	s := l.mustStart(p.ID, "GONE1", nil, nil)
	planned := l.mustStart(p.ID, "GONE2", ptr(t0.Add(time.Hour)), nil)
	l.clk.add(time.Minute)
	if st := l.stop(s.ID); st.Status != domain.StatusStopped {
		t.Fatalf("stopped: %+v", st)
	}
	if st := l.stop(planned.ID); st.Status != domain.StatusCancelled {
		t.Fatalf("cancelled: %+v", st)
	}
	for _, id := range []string{s.ID, planned.ID} {
		r, _ := l.change(id, ptr(t0.Add(time.Hour)), nil)
		wantRejected(t, r, domain.CodeSessionNotOpen)
		r, _ = l.change(id, nil, nil)
		wantRejected(t, r, domain.CodeSessionNotOpen)
	}
	// An open session with nothing to change is a bad request.
	open := l.mustStart(p.ID, "OPEN1", nil, nil)
	r, _ := l.change(open.ID, nil, nil)
	wantRejected(t, r, domain.CodeBadRequest)
	l.checkInvariants()
}

// The auto-stop follows the new end: the old end's task is deleted from Redis
// and, run anyway, does nothing; the new end's settles the session there.
func TestChangeAutoStopFollowsTheNewEnd(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p := l.newPermit("TEST", 5)
	s := l.mustStart(p.ID, "FOLLOW1", nil, ptr(t0.Add(30*time.Minute)))
	oldID := jobs.AutoStopTaskID(s.ID, s.PlannedEndAt)
	l.wantTask(oldID, true)
	c := l.mustChange(s.ID, ptr(t0.Add(time.Hour)), nil)
	l.wantTask(oldID, false)
	l.wantTask(jobs.AutoStopTaskID(s.ID, c.PlannedEndAt), true)

	l.clk.set(s.PlannedEndAt.Add(time.Second)) // the old end is due
	if row := l.autoStopNow(s); row.State != domain.StateOpen {
		t.Fatalf("the old end's auto-stop settled the session: %s", row.State)
	}
	l.clk.set(c.PlannedEndAt.Add(time.Second))
	row := l.autoStopNow(c)
	if row.State != domain.StateStopped || !row.EndAt.Equal(c.PlannedEndAt) || *row.ChargedMinutes != 60 {
		t.Fatalf("new end's auto-stop: %s end %v charged %v, want stopped at %s, 60", row.State, row.EndAt, row.ChargedMinutes, c.PlannedEndAt)
	}
	l.checkInvariants()
}

// Redis loses its data after a change: the reconciler queues the auto-stop of
// the session's end as it now is, not the one it was started with.
func TestChangeThenRedisLostRequeuesTheNewEnd(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setup(t), t0)
	p := l.newPermit("TEST", 5)
	s := l.mustStart(p.ID, "LOST1", nil, ptr(t0.Add(30*time.Minute)))
	c := l.mustChange(s.ID, ptr(t0.Add(100*time.Minute)), nil)
	repotest.FlushRedis(t, l.rdb)
	l.h.Client = asynq.NewClient(l.redisOpt)
	t.Cleanup(func() { l.h.Client.Close() })
	rep, err := l.h.Reconcile(l.ctx)
	if err != nil || !rep.RedisEmpty || rep.Requeued != 1 {
		t.Fatalf("reconcile after the loss: %+v %v, want 1 requeued", rep, err)
	}
	info := l.wantTask(jobs.AutoStopTaskID(s.ID, c.PlannedEndAt), true)
	if !info.NextProcessAt.Equal(c.PlannedEndAt) {
		t.Fatalf("requeued auto-stop at %s, want %s", info.NextProcessAt, c.PlannedEndAt)
	}
	l.wantTask(jobs.AutoStopTaskID(s.ID, s.PlannedEndAt), false)
	l.checkInvariants()
}

// max_concurrent_sessions: a start or an extension past the cap is
// too_many_sessions; sessions one after another are not at once.
func TestTooManySessionsOnStartAndChange(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	l.zone("CAP2", domain.ZoneSpec{Name: "Cap", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210, MaxConcurrentSessions: ptr(2)})
	p := l.newPermit("CAP2", 20)
	l.mustStart(p.ID, "CAPA", nil, ptr(t0.Add(time.Hour)))
	l.mustStart(p.ID, "CAPB", nil, ptr(t0.Add(time.Hour)))
	task, _ := l.sessionTask(p.ID, "CAPC", nil, nil)
	wantRejected(t, l.run(task, l.h.SessionStart, nil), domain.CodeTooManySessions)
	later := l.mustStart(p.ID, "CAPC", ptr(t0.Add(time.Hour)), ptr(t0.Add(2*time.Hour))) // after both end
	// Moving the later one's end is fine; moving another's end into it is not.
	l.mustChange(later.ID, ptr(t0.Add(3*time.Hour)), nil)
	l.mustStart(p.ID, "CAPD", ptr(t0.Add(2*time.Hour)), ptr(t0.Add(150*time.Minute)))
	task, _ = l.sessionTask(p.ID, "CAPE", ptr(t0.Add(30*time.Minute)), ptr(t0.Add(50*time.Minute)))
	wantRejected(t, l.run(task, l.h.SessionStart, nil), domain.CodeTooManySessions)
	// CAPA extended to overlap CAPC and CAPD at once: three.
	sessions, err := repo.PermitSessions(l.ctx, l.store.DB, mustID(t, p.ID), "", l.clk.now())
	if err != nil {
		t.Fatal(err)
	}
	var capa string
	for _, s := range sessions {
		if s.Plate == "CAPA" {
			capa = repo.FormatID(s.ID)
		}
	}
	r, _ := l.change(capa, ptr(t0.Add(150*time.Minute)), nil)
	wantRejected(t, r, domain.CodeTooManySessions)
	l.checkInvariants()
}

func mustID(t testing.TB, s string) int64 {
	t.Helper()
	n, ok := repo.ParseID(s)
	if !ok {
		t.Fatalf("id %q", s)
	}
	return n
}

// Concurrent starts on one permit of a zone with max_concurrent_sessions:
// the permit's lock serialises them, in the Coalescer's shared transactions
// too (units of one transaction see each other's sessions; a unit meeting
// another transaction's lock runs again alone): exactly the cap is started.
func TestConcurrentStartsKeepTheSessionCap(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("CAP3", domain.ZoneSpec{Name: "Cap", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210, MaxConcurrentSessions: ptr(3)})
	p := l.newPermit("CAP3", 100)
	codes := make([]string, 12)
	var wg sync.WaitGroup
	for i := range codes {
		wg.Go(func() {
			task, id := l.sessionTask(p.ID, fmt.Sprintf("RACE%d", i), nil, nil)
			if err := l.h.SessionStart(context.Background(), task); err != nil {
				t.Error(err)
				return
			}
			r, err := repo.GetRequest(context.Background(), l.store.DB, id)
			if err != nil {
				t.Error(err)
				return
			}
			codes[i] = rejection(t, r)
		})
	}
	wg.Wait()
	started := 0
	for _, c := range codes {
		switch c {
		case "":
			started++
		case string(domain.CodeTooManySessions):
		default:
			t.Fatalf("a racing start: %q", c)
		}
	}
	if started != 3 {
		t.Fatalf("%d of 12 racing starts started, want the cap, 3 (%v)", started, codes)
	}
	l.checkInvariants()
}

// An extension into a later session of the same plate (on another permit or
// the same) is plate_already_parked, as a start into it is: the plate's
// exclusion constraint would refuse the write, and the request must not end
// as request_failed. (Found by a colleague's attack: only a new plate was
// looked at.)
func TestChangeExtendIntoALaterSessionOfThePlate(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p, other := l.newPermit("TEST", 10), l.newPermit("TEST", 10)
	s := l.mustStart(p.ID, "LATER1", nil, ptr(t0.Add(10*time.Minute)))
	l.mustStart(other.ID, "LATER1", ptr(t0.Add(20*time.Minute)), ptr(t0.Add(40*time.Minute)))
	if r, _ := l.change(s.ID, ptr(t0.Add(30*time.Minute)), nil); rejection(t, r) != string(domain.CodePlateAlreadyParked) {
		t.Fatalf("extended into a later session of its plate: %s %s, want %s", r.Status, r.Error, domain.CodePlateAlreadyParked)
	}
	// Up to that session's start is fine.
	if c := l.mustChange(s.ID, ptr(t0.Add(20*time.Minute)), nil); !c.PlannedEndAt.Equal(t0.Add(20 * time.Minute)) {
		t.Fatalf("extended up to the later session: %+v", c)
	}
	l.checkInvariants()
}
