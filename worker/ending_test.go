package worker_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// endingTask is the session:ending task of session s in the default queue,
// or nil when there is none.
func (e *harness) endingTask(s jobs.Session) *asynq.TaskInfo {
	e.t.Helper()
	info, err := e.inspector.GetTaskInfo(jobs.QueueDefault, jobs.EndingTaskID(s.ID, s.PlannedEndAt))
	if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return info
}

// wantEndingAt asserts that session s has its ending notice scheduled at at
// (Redis keeps whole seconds).
func (e *harness) wantEndingAt(s jobs.Session, at time.Time) {
	e.t.Helper()
	info := e.endingTask(s)
	if info == nil {
		e.t.Fatalf("session %s has no ending task for its end %s", s.ID, s.PlannedEndAt)
	}
	if info.Type != jobs.TypeSessionEnding || info.State != asynq.TaskStateScheduled || !info.NextProcessAt.Equal(at.Truncate(time.Second)) {
		e.t.Fatalf("ending task of %s: %s %s at %s, want scheduled at %s", s.ID, info.Type, info.State, info.NextProcessAt, at)
	}
}

// endingNow runs the ending notice of session s for its planned end end.
func (e *harness) endingNow(s jobs.Session, end time.Time) {
	e.t.Helper()
	if err := e.h.SessionEnding(e.ctx, jobs.NewSessionEnding(s.ID, end, end)); err != nil {
		e.t.Fatal(err)
	}
}

func (e *harness) endings(s jobs.Session) []repo.Event {
	e.t.Helper()
	n, _ := repo.ParseID(s.ID)
	return e.events("session_id = ? AND type = ?", n, jobs.EventSessionEnding)
}

// session.ending (DOMAIN.md "Telling others"): scheduled at the start, the
// zone's ending_notice_minutes (default 10) before the planned end, never
// before the start or the receipt; moved with the end by a change or a
// shortening (the old task deleted), deleted by a stop; sent once, and only
// for a session still open with the end it was scheduled for.
func TestSessionEndingIsScheduledWithTheEndAndSentOnce(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	l.zone("END15", domain.ZoneSpec{Name: "Fifteen", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 100, EndingNoticeMinutes: 15})
	fifteen := l.newPermit("END15", 10)
	ten := l.newPermit("TEST", 10)

	a := l.mustStart(fifteen.ID, "EN-12-AB", nil, ptr(t0.Add(time.Hour)))
	l.wantEndingAt(a, t0.Add(45*time.Minute))
	b := l.mustStart(ten.ID, "EN-12-CD", nil, ptr(t0.Add(time.Hour)))
	l.wantEndingAt(b, t0.Add(50*time.Minute))
	// Shorter than the notice: told at the start, at once.
	short := l.mustStart(ten.ID, "EN-12-EF", nil, ptr(t0.Add(5*time.Minute)))
	if info := l.endingTask(short); info == nil || info.State != asynq.TaskStatePending {
		t.Fatalf("ending task of a session shorter than the notice: %+v, want pending now", info)
	}

	// A change moves it: the old task is deleted, and should it run anyway
	// it sends nothing; the new one is sent.
	l.clk.set(t0.Add(10 * time.Minute))
	moved := l.mustChange(b.ID, ptr(t0.Add(2*time.Hour)), nil)
	if l.endingTask(b) != nil {
		t.Fatal("the ending task of the old end is still queued")
	}
	l.wantEndingAt(moved, t0.Add(110*time.Minute))
	l.endingNow(b, b.PlannedEndAt)
	if n := len(l.endings(b)); n != 0 {
		t.Fatalf("the old end's notice was sent: %d events", n)
	}
	// A stop in the future shortens it: moved again.
	stopAt := l.clk.now().Add(20 * time.Minute)
	shortened, _ := l.stopAt(b.ID, &stopAt)
	if l.endingTask(moved) != nil {
		t.Fatal("the ending task of the changed end is still queued after a shortening")
	}
	l.wantEndingAt(shortened, stopAt.Add(-10*time.Minute))
	l.endingNow(moved, moved.PlannedEndAt)
	l.endingNow(shortened, shortened.PlannedEndAt)
	if evs := l.endings(b); len(evs) != 1 || !sameInstant(t, evs[0], shortened.PlannedEndAt) {
		t.Fatalf("session.ending events of the moved session: %d, want 1 for its newest end", len(evs))
	}

	// A stop deletes it, and should it run anyway it sends nothing.
	l.stop(short.ID)
	if l.endingTask(short) != nil {
		t.Fatal("the ending task of a stopped session is still queued")
	}
	l.endingNow(short, short.PlannedEndAt)
	if n := len(l.endings(short)); n != 0 {
		t.Fatalf("a stopped session's notice was sent: %d events", n)
	}
	// Sent once, however often its task runs.
	l.clk.set(t0.Add(45 * time.Minute))
	for range 2 {
		l.endingNow(a, a.PlannedEndAt)
	}
	evs := l.endings(a)
	if len(evs) != 1 {
		t.Fatalf("%d session.ending events after two runs, want 1", len(evs))
	}
	wantSessionEvent(t, evs[0], jobs.EventSessionEnding, a, "", l.clk.now(), domain.StatusActive, "")

	// A session that is gone: archived, not retried.
	if err := l.h.SessionEnding(l.ctx, jobs.NewSessionEnding("987654321", t0, t0)); err == nil || !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("ending of no session: %v, want SkipRetry", err)
	}
	l.checkInvariants()
}

// sameInstant reports whether a session.ending event is for the planned end.
func sameInstant(t *testing.T, ev repo.Event, end time.Time) bool {
	t.Helper()
	d := wantSessionEventData(t, ev)
	return d.PlannedEndAt.Equal(end)
}

func wantSessionEventData(t *testing.T, ev repo.Event) eventData {
	t.Helper()
	var d eventData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		t.Fatalf("%s data %s: %v", ev.Type, ev.Data, err)
	}
	return d
}

// The notice end to end, through a real worker server: a session shorter than
// the notice gets its session.ending as soon as it starts.
func TestSessionEndingRunsOnTheWorker(t *testing.T) {
	e := setup(t)
	e.start()
	task, id := e.startTask(e.permit(5), "EN-RUN1", nil, ptr(time.Now().Add(3*time.Minute)))
	e.enqueue(task)
	var s jobs.Session
	if r := e.await(id, &s); r.Status != repo.RequestApplied {
		t.Fatalf("start: %s", r.Error)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(e.endings(s)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no session.ending 30 s after the start")
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.awaitQueueEmpty(jobs.QueueDefault)
	if n := len(e.endings(s)); n != 1 {
		t.Fatalf("%d session.ending events, want 1", n)
	}
}

// Ending notices live only in Redis until they run. When Redis lost its data,
// the reconciler queues again the notice of every open session whose end is
// still ahead and whose notice is not sent yet; one already sent is not
// queued (it would run again only to send nothing).
func TestReconcileRequeuesEndingsWhenRedisLostItsEpoch(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setup(t), t0)
	p := l.newPermit("TEST", 10)
	active := l.mustStart(p.ID, "ENR-1", nil, ptr(t0.Add(time.Hour)))
	planned := l.mustStart(p.ID, "ENR-2", ptr(t0.Add(time.Hour)), ptr(t0.Add(2*time.Hour)))
	sent := l.mustStart(p.ID, "ENR-3", nil, ptr(t0.Add(5*time.Minute)))
	stopped := l.mustStart(p.ID, "ENR-4", nil, nil)
	l.endingNow(sent, sent.PlannedEndAt)
	l.clk.add(time.Minute)
	l.stop(stopped.ID)
	if rep, err := l.h.Reconcile(l.ctx); err != nil || !rep.RedisEmpty || rep.Endings != 0 {
		t.Fatalf("first reconcile: %+v %v, want nothing requeued (the hand-over queued them)", rep, err)
	}

	repotest.FlushRedis(t, l.rdb)
	l.h.Client = asynq.NewClient(l.redisOpt)
	t.Cleanup(func() { l.h.Client.Close() })
	rep, err := l.h.Reconcile(l.ctx)
	if err != nil || !rep.RedisEmpty || rep.Endings != 2 {
		t.Fatalf("reconcile after the loss: %+v %v, want 2 endings requeued", rep, err)
	}
	l.wantEndingAt(active, t0.Add(50*time.Minute))
	l.wantEndingAt(planned, t0.Add(110*time.Minute))
	if l.endingTask(sent) != nil {
		t.Fatal("a notice already sent was requeued")
	}
	if l.endingTask(stopped) != nil {
		t.Fatal("a stopped session's notice was requeued")
	}
	l.endingNow(sent, sent.PlannedEndAt)
	if n := len(l.endings(sent)); n != 1 {
		t.Fatalf("a notice run again after the loss: %d events, want 1", n)
	}
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.RedisEmpty || rep.Endings != 0 {
		t.Fatalf("reconcile with the epoch set: %+v %v", rep, err)
	}
}
