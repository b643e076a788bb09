package worker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

// startTasks is what a start leaves in the outbox: its auto-stop and its
// ending notice.
const startTasks = 2

// leftBehind starts a session whose hand-over is lost (the process died
// between commit and enqueue): its auto-stop and ending notice wait in the
// outbox, not in Redis.
func (e *harness) leftBehind(plate string) jobs.Session {
	e.t.Helper()
	client := e.h.Client
	e.h.Client = nil
	defer func() { e.h.Client = client }()
	task, id := e.startTask(e.permit(5), plate, nil, nil)
	var s jobs.Session
	if r := e.run(task, e.h.SessionStart, &s); r.Status != repo.RequestApplied {
		e.t.Fatalf("start %s: %s %s", id, r.Status, r.Error)
	}
	e.wantBacklog(startTasks)
	e.wantTask(jobs.AutoStopTaskID(s.ID, s.PlannedEndAt), false)
	return s
}

func (e *harness) wantBacklog(want int64) {
	e.t.Helper()
	if n, err := repo.OutboxBacklog(e.ctx, e.store.DB); err != nil || n != want {
		e.t.Fatalf("outbox backlog = %d (%v), want %d", n, err, want)
	}
}

// wantTask asserts whether the task with this ID is in the critical queue now;
// it returns the task when it is.
func (e *harness) wantTask(id string, present bool) *asynq.TaskInfo {
	e.t.Helper()
	info, err := e.inspector.GetTaskInfo(jobs.QueueCritical, id)
	if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
		e.t.Fatal(err)
	}
	if (err == nil) != present {
		e.t.Fatalf("task %s in Redis: %v, want %v", id, err == nil, present)
	}
	return info
}

func (e *harness) relay() *worker.Relay {
	return &worker.Relay{Store: e.store, Client: e.client, Log: quietLog(), MinAge: time.Nanosecond}
}

// The outbox relay is the slow path of the hand-over: it enqueues what a lost
// hand-over left in the outbox, then deletes it. Each case has its own
// database; the tasks they look at in the shared Redis index are their own
// (auto-stops named after their own sessions).
func TestRelay(t *testing.T) {
	t.Run("EnqueuesWhatALostHandOverLeftAndDeletesIt", func(t *testing.T) {
		e := setupParallel(t)
		s := e.leftBehind("RELAY1")
		n, err := e.relay().RunOnce(e.ctx)
		if err != nil || n != startTasks {
			t.Fatalf("relay: %d %v, want %d handed over", n, err, startTasks)
		}
		e.wantBacklog(0)
		info := e.wantTask(jobs.AutoStopTaskID(s.ID, s.PlannedEndAt), true)
		// Redis keeps the due time in whole seconds.
		if info.State != asynq.TaskStateScheduled || !info.NextProcessAt.Equal(s.PlannedEndAt.Truncate(time.Second)) {
			t.Fatalf("auto-stop task = %s at %s, want scheduled at %s", info.State, info.NextProcessAt, s.PlannedEndAt)
		}
		if n, err := e.relay().RunOnce(e.ctx); err != nil || n != 0 {
			t.Fatalf("a run with nothing left: %d %v, want 0", n, err)
		}
		e.checkInvariants()
	})

	// Two relays, or a relay that died after enqueueing and before deleting:
	// the same row is handed over again, and Redis still holds one task.
	t.Run("RunTwiceIsHarmless", func(t *testing.T) {
		e := setupParallel(t)
		s := e.leftBehind("RELAY2")
		id := jobs.AutoStopTaskID(s.ID, s.PlannedEndAt)
		if n, err := e.relay().RunOnce(e.ctx); err != nil || n != startTasks {
			t.Fatalf("first relay: %d %v", n, err)
		}
		if err := repo.AddOutbox(e.ctx, e.store.DB, &repo.OutboxTask{TaskType: jobs.TypeSessionAutoStop,
			TaskID: id, Queue: jobs.QueueCritical, Payload: jobs.AutoStopPayload(s.ID, s.PlannedEndAt), ProcessAt: s.PlannedEndAt}); err != nil {
			t.Fatal(err)
		}
		if n, err := e.relay().RunOnce(e.ctx); err != nil || n != 1 {
			t.Fatalf("second relay of the same task: %d %v, want it taken as handed over", n, err)
		}
		e.wantBacklog(0)
		if info := e.wantTask(id, true); info.State != asynq.TaskStateScheduled {
			t.Fatalf("auto-stop task is %s, want scheduled", info.State)
		}
	})

	// A row another relay has claimed (and is enqueueing) is skipped, not
	// waited for and not handed over twice; once that relay let go, it is
	// this one's.
	t.Run("SkipsRowsAnotherRelayHolds", func(t *testing.T) {
		e := setupParallel(t)
		s := e.leftBehind("RELAY3")
		other, err := e.store.DB.BeginTx(e.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Rollback() //nolint:errcheck
		if held, err := repo.ClaimOutbox(e.ctx, other, 0, 10); err != nil || len(held) != startTasks {
			t.Fatalf("the other relay claims %d rows (%v), want %d", len(held), err, startTasks)
		}
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second) // waiting for the lock would end here
		defer cancel()
		if n, err := e.relay().RunOnce(ctx); err != nil || n != 0 {
			t.Fatalf("relay beside a holder: %d %v, want 0 without waiting", n, err)
		}
		e.wantBacklog(startTasks)
		e.wantTask(jobs.AutoStopTaskID(s.ID, s.PlannedEndAt), false)
		if err := other.Rollback(); err != nil { // the other relay died
			t.Fatal(err)
		}
		if n, err := e.relay().RunOnce(e.ctx); err != nil || n != startTasks {
			t.Fatalf("relay once the holder let go: %d %v, want %d", n, err, startTasks)
		}
		e.wantBacklog(0)
	})

	// Rows younger than MinAge are still the hand-over's (it runs right after
	// its commit); older ones are the relay's.
	t.Run("LeavesYoungRowsToTheHandOver", func(t *testing.T) {
		e := setupParallel(t)
		e.leftBehind("RELAY4")
		young := &worker.Relay{Store: e.store, Client: e.client, Log: quietLog(), MinAge: time.Hour}
		if n, err := young.RunOnce(e.ctx); err != nil || n != 0 {
			t.Fatalf("relay with a row younger than MinAge: %d %v, want 0", n, err)
		}
		e.wantBacklog(startTasks)
	})

	// While Redis cannot be reached, rows stay in the outbox for the next round.
	t.Run("KeepsRowsWhileRedisIsDown", func(t *testing.T) {
		e := setupParallel(t)
		e.leftBehind("RELAY5")
		nowhere := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialerRetries: 1})
		defer nowhere.Close()
		down := asynq.NewClientFromRedisClient(nowhere)
		r := &worker.Relay{Store: e.store, Client: down, Log: quietLog(), MinAge: time.Nanosecond}
		if n, err := r.RunOnce(e.ctx); err != nil || n != 0 {
			t.Fatalf("relay without Redis: %d %v, want 0 and no error", n, err)
		}
		e.wantBacklog(startTasks)
		if n, err := e.relay().RunOnce(e.ctx); err != nil || n != startTasks {
			t.Fatalf("relay with Redis back: %d %v, want %d", n, err, startTasks)
		}
	})

	// The loop looks every Interval of its own clock, and tells the Observer.
	t.Run("RunsOnItsClock", func(t *testing.T) {
		e := setupParallel(t)
		e.leftBehind("RELAY6")
		clk := newTestClock(time.Now())
		obs := &countingObserver{}
		r := e.relay()
		r.Clock, r.Interval, r.Observer = clk, time.Hour, obs
		ctx, cancel := context.WithCancel(e.ctx)
		done := make(chan struct{})
		go func() { defer close(done); r.Run(ctx) }()
		defer func() { cancel(); <-done }()
		set, cancelSet := context.WithTimeout(ctx, 5*time.Second)
		defer cancelSet()
		if err := clk.BlockUntilContext(set, 1); err != nil {
			t.Fatalf("the loop set no ticker on its clock: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
		e.wantBacklog(startTasks) // nothing before the first tick
		clk.add(time.Hour)
		deadline := time.Now().Add(5 * time.Second)
		for obs.relayedTasks() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("nothing relayed 5 s after the clock moved an Interval")
			}
			time.Sleep(10 * time.Millisecond)
		}
		e.wantBacklog(0)
		if n := obs.relayedTasks(); n != startTasks {
			t.Fatalf("observer told of %d relayed tasks, want %d", n, startTasks)
		}
	})
}
