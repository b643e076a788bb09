package worker_test

import (
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// A session's auto-stop and ending notice reach Redis at the change that sets
// them only when due within worker.ScheduleHorizon; a later one is handed
// over by the reconciler once it comes within the horizon, and is then in
// Redis, due at its instant, minutes ahead of it (schedule.go).
//
// Alone (setup): it reconciles, which reads the epoch in Redis.
func TestScheduledTasksReachRedisWithinTheHorizon(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setup(t), t0)
	l.h.ScheduleHorizon = 0                         // parkd's own
	if _, err := l.h.Reconcile(l.ctx); err != nil { // the epoch set: Redis has lost nothing from here
		t.Fatal(err)
	}
	p := l.newPermit("TEST", 10)

	far := l.mustStart(p.ID, "SC-12-AB", nil, ptr(t0.Add(time.Hour)))
	near := l.mustStart(p.ID, "SC-12-CD", nil, ptr(t0.Add(worker.ScheduleHorizon-time.Minute)))
	if info := l.wantTask(jobs.AutoStopTaskID(far.ID, far.PlannedEndAt), false); info != nil {
		t.Fatalf("auto-stop an hour ahead handed over at the start: %+v", info)
	}
	if info := l.endingTask(far); info != nil {
		t.Fatalf("ending notice 50 minutes ahead handed over at the start: %+v", info)
	}
	l.wantTask(jobs.AutoStopTaskID(near.ID, near.PlannedEndAt), true)
	if l.endingTask(near) == nil { // its notice is due at once: 9 minutes is within the 10
		t.Fatal("ending notice of a session ending within the horizon not handed over at its start")
	}
	// Nothing of the far session waits in the outbox either.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n, err := repo.OutboxBacklog(l.ctx, l.store.DB); err == nil && n == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("outbox backlog %d (%v), want 0", n, err)
		}
	}

	// A notice already due is never handed over again: once sent, its task
	// is gone from Redis, and a second would run for nothing.
	if err := l.inspector.DeleteTask(jobs.QueueDefault, jobs.EndingTaskID(near.ID, near.PlannedEndAt)); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.Scheduled != 0 {
		t.Fatalf("reconcile after the near notice was sent: %+v %v, want nothing scheduled", rep, err)
	}
	if info := l.endingTask(near); info != nil {
		t.Fatalf("a sent ending notice handed over again: %+v", info)
	}

	// A reconciliation before the horizon reaches it hands nothing over.
	l.clk.set(t0.Add(30 * time.Minute))
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.Scheduled != 0 {
		t.Fatalf("reconcile 30 minutes before the end: %+v %v, want nothing scheduled", rep, err)
	}
	// Once the ending notice (due at 50 minutes) is within the horizon, it
	// is handed over; the auto-stop follows when the end is.
	l.clk.set(t0.Add(41 * time.Minute))
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.Scheduled != 1 {
		t.Fatalf("reconcile 9 minutes before the notice: %+v %v, want the notice scheduled", rep, err)
	}
	l.wantEndingAt(far, t0.Add(50*time.Minute))
	l.wantTask(jobs.AutoStopTaskID(far.ID, far.PlannedEndAt), false)
	l.clk.set(t0.Add(51 * time.Minute))
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.Scheduled != 1 {
		t.Fatalf("reconcile 9 minutes before the end: %+v %v, want the auto-stop scheduled", rep, err)
	}
	info := l.wantTask(jobs.AutoStopTaskID(far.ID, far.PlannedEndAt), true)
	if info.State != asynq.TaskStateScheduled || !info.NextProcessAt.Equal(far.PlannedEndAt) {
		t.Fatalf("auto-stop %s at %s, want scheduled at %s", info.State, info.NextProcessAt, far.PlannedEndAt)
	}
	// Again: Redis holds them, nothing new.
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.Scheduled != 0 {
		t.Fatalf("second reconcile: %+v %v, want nothing new", rep, err)
	}
	// And it settles the session at its end, as ever.
	l.clk.set(far.PlannedEndAt)
	l.autoStopNow(far)
	if s := l.session(far.ID); s.State != "stopped" || !s.EndAt.Equal(far.PlannedEndAt) {
		t.Fatalf("far session after its auto-stop: %+v", s)
	}
}

// A stop of a session whose tasks are beyond the horizon deletes nothing
// (nothing was handed over), and the reconciler never schedules the tasks of
// a session no longer open.
func TestStoppedSessionIsNeverScheduled(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setup(t), t0)
	l.h.ScheduleHorizon = 0
	if _, err := l.h.Reconcile(l.ctx); err != nil { // the epoch set
		t.Fatal(err)
	}
	p := l.newPermit("TEST", 10)
	s := l.mustStart(p.ID, "SC-34-AB", nil, ptr(t0.Add(2*time.Hour)))
	l.clk.set(t0.Add(time.Minute))
	l.stop(s.ID)
	l.clk.set(s.PlannedEndAt.Add(-5 * time.Minute))
	if rep, err := l.h.Reconcile(l.ctx); err != nil || rep.Scheduled != 0 {
		t.Fatalf("reconcile near the end of a stopped session: %+v %v, want nothing scheduled", rep, err)
	}
	l.wantTask(jobs.AutoStopTaskID(s.ID, s.PlannedEndAt), false)
	if info := l.endingTask(s); info != nil {
		t.Fatalf("ending notice of a stopped session in Redis: %+v", info)
	}
}

// When Redis lost its data, the reconciler queues again what is due within
// the horizon; a later task is left for scheduleDueSoon, as it would be
// after any start (it is not in Redis to be lost, nor should it be).
func TestRedisLostRequeuesOnlyWhatIsDueSoon(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setup(t), t0)
	l.h.ScheduleHorizon = 0
	p := l.newPermit("TEST", 10)
	far := l.mustStart(p.ID, "SC-56-AB", nil, ptr(t0.Add(time.Hour)))
	near := l.mustStart(p.ID, "SC-56-CD", nil, ptr(t0.Add(5*time.Minute)))
	repotest.FlushRedis(t, l.rdb)
	rep, err := l.h.Reconcile(l.ctx)
	if err != nil || !rep.RedisEmpty || rep.Requeued != 1 || rep.Endings != 1 {
		t.Fatalf("reconcile after the loss: %+v %v, want the near session's auto-stop and notice queued again", rep, err)
	}
	// By key: after a flush asynq's client does not list its queues again,
	// so the Inspector finds none.
	for _, c := range []struct {
		queue, id string
		want      bool
	}{
		{jobs.QueueCritical, jobs.AutoStopTaskID(near.ID, near.PlannedEndAt), true},
		{jobs.QueueDefault, jobs.EndingTaskID(near.ID, near.PlannedEndAt), true},
		{jobs.QueueCritical, jobs.AutoStopTaskID(far.ID, far.PlannedEndAt), false},
		{jobs.QueueDefault, jobs.EndingTaskID(far.ID, far.PlannedEndAt), false},
	} {
		if got := l.taskInRedis(c.queue, c.id); got != c.want {
			t.Errorf("%s in Redis: %v, want %v", c.id, got, c.want)
		}
	}
}
