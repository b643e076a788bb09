package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

// addEvents writes n events of typ, as part A's writers will (sequence NULL).
func (e *harness) addEvents(n int, typ string) {
	e.t.Helper()
	evs := make([]*repo.Event, n)
	permit := int64(7)
	for i := range evs {
		evs[i] = &repo.Event{Type: typ, OccurredAt: time.Now(), PermitID: &permit, Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}
	}
	if err := repo.AddEvents(e.ctx, e.store.DB, evs...); err != nil {
		e.t.Fatal(err)
	}
}

// feed is every numbered event, oldest first.
func (e *harness) feed() []repo.Event {
	e.t.Helper()
	evs, err := repo.EventsAfter(e.ctx, e.store.DB, 0, nil, 500)
	if err != nil {
		e.t.Fatal(err)
	}
	return evs
}

func (e *harness) sequencer() *worker.Sequencer {
	return &worker.Sequencer{Store: e.store, Client: e.client, Log: quietLog()}
}

// awaitDeliverTask waits until the event:deliver task of this webhook and event is in Redis.
func (e *harness) awaitDeliverTask(webhook, eventID string) *asynq.TaskInfo {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := e.inspector.GetTaskInfo(jobs.QueueWebhooks, jobs.DeliverTaskID(webhook, eventID))
		if err == nil {
			return info
		}
		if !errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			e.t.Fatal(err)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("event:deliver %s/%s not in Redis after 5s", webhook, eventID)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The sequencer's loop runs a pass when kicked (what Handlers.EventsWritten
// is set to) and on its tick; each pass hands its deliveries to Redis and
// leaves nothing in the outbox.
func TestSequencer(t *testing.T) {
	t.Run("KickedAfterCommit", func(t *testing.T) {
		e := setupParallel(t)
		e.putWebhook(uniqueName("kick"), "http://127.0.0.1:1/", nil, true)
		clk := clockwork.NewFakeClock()
		s := e.sequencer()
		s.Clock, s.Interval = clk, time.Hour // never ticks: only the kick runs a pass
		s.Kick()                             // kicks before Run are kept, coalesced
		s.Kick()
		ctx, stop := context.WithCancel(e.ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		defer func() { stop(); <-done }()

		e.addEvents(3, jobs.EventSessionStarted)
		s.Kick()
		e.awaitNumbered(3)
		for _, ev := range e.feed() {
			for _, d := range e.deliveries(ev.ID) {
				e.awaitDeliverTask(d.Webhook, ev.ID)
			}
		}
		e.awaitBacklog(0)
	})
	t.Run("TickedWithoutAKick", func(t *testing.T) {
		e := setupParallel(t)
		clk := clockwork.NewFakeClock()
		s := e.sequencer()
		s.Clock, s.Interval = clk, time.Second
		ctx, stop := context.WithCancel(e.ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		defer func() { stop(); <-done }()
		e.addEvents(2, jobs.EventPermitIssued)
		if err := clk.BlockUntilContext(e.ctx, 1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Second)
		e.awaitNumbered(2)
	})
	t.Run("KicksWithinTheGapAreOnePass", func(t *testing.T) {
		e := setupParallel(t)
		s := e.sequencer()
		s.Interval, s.Gap = time.Hour, 700*time.Millisecond
		ctx, stop := context.WithCancel(e.ctx)
		done := make(chan struct{})
		go func() { defer close(done); s.Run(ctx) }()
		defer func() { stop(); <-done }()
		s.Kick()
		for s.Passes.Load() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		// Five commits' kicks right after the first pass: none may start a
		// pass before the gap is out, and the next pass numbers all five.
		for range 5 {
			e.addEvents(1, jobs.EventSessionStarted)
			s.Kick()
		}
		time.Sleep(300 * time.Millisecond)
		if n := s.Passes.Load(); n != 1 {
			t.Fatalf("%d passes within the gap, want 1", n)
		}
		e.awaitNumbered(5)
		if n := s.Passes.Load(); n != 2 {
			t.Fatalf("%d passes numbered five kicked events, want 2 (one after the gap)", n)
		}
	})
	t.Run("PassesOfBatchUntilDone", func(t *testing.T) {
		e := setupParallel(t)
		e.addEvents(7, jobs.EventSessionStopped)
		s := e.sequencer()
		s.Batch = 3
		if n, err := s.RunOnce(e.ctx); err != nil || n != 7 {
			t.Fatalf("RunOnce numbered %d (%v), want all 7 in passes of 3", n, err)
		}
		for i, ev := range e.feed() {
			if *ev.Sequence != int64(i+1) {
				t.Fatalf("event %d has sequence %d", i, *ev.Sequence)
			}
		}
	})
	t.Run("WithoutRedisTheRelayHandsOver", func(t *testing.T) {
		e := setupParallel(t)
		name := uniqueName("relay")
		e.putWebhook(name, "http://127.0.0.1:1/", nil, true)
		e.addEvents(1, jobs.EventSessionStarted)
		e.numberOnly()
		e.wantBacklog(1)
		if n, err := e.relay().RunOnce(e.ctx); err != nil || n != 1 {
			t.Fatalf("relay: %d %v", n, err)
		}
		e.awaitDeliverTask(name, e.feed()[0].ID)
	})
}

// numberOnly numbers the events written so far and leaves their delivery
// tasks in the outbox, not in Redis: the test runs or enqueues them itself.
func (e *harness) numberOnly() {
	e.t.Helper()
	s := e.sequencer()
	s.Client = nil
	if _, err := s.RunOnce(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

// awaitNumbered waits until n events are numbered.
func (e *harness) awaitNumbered(n int) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(e.feed()) < n {
		if time.Now().After(deadline) {
			e.t.Fatalf("%d events numbered after 5s, want %d", len(e.feed()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (e *harness) awaitBacklog(want int64) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := repo.OutboxBacklog(e.ctx, e.store.DB)
		if err == nil && n == want {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("outbox backlog = %d (%v) after 5s, want %d", n, err, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deliveries are the delivery rows of an event.
func (e *harness) deliveries(eventID string) []repo.WebhookDelivery {
	e.t.Helper()
	var out []repo.WebhookDelivery
	if err := e.store.DB.NewSelect().Model(&out).Where("event_id = ?::uuid", eventID).OrderExpr("webhook").Scan(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return out
}
