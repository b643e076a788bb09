package worker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
)

// oneBatch runs every task (with its handler) in one transaction shared by
// all of them: the harness's Coalescer is replaced by one with a single
// committer, held busy until every task waits for it. It returns the
// Coalescer, for its counters.
func oneBatch(t *testing.T, l *lifecycle, tasks []*asynq.Task, fns []func(context.Context, *asynq.Task) error) *repo.Coalescer {
	t.Helper()
	co := repo.NewCoalescer(l.store.DB, repo.CoalescerConfig{Committers: 1})
	t.Cleanup(co.Close)
	l.h.Coalescer = co
	release := make(chan struct{})
	go func() {
		_ = co.Do(context.Background(), func(context.Context, repo.Tx) error { <-release; return nil })
	}()
	for co.Units.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	errs := make(chan error, len(tasks))
	for i, task := range tasks {
		go func() { errs <- fns[i](context.Background(), task) }()
		deadline := time.Now().Add(10 * time.Second)
		for co.Waiting() < i+1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if co.Waiting() != len(tasks) {
		t.Fatalf("%d of %d tasks wait for the committer", co.Waiting(), len(tasks))
	}
	close(release)
	for range tasks {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if co.Batches.Load() != 2 {
		t.Fatalf("%d transactions, want the held one and one for every task", co.Batches.Load())
	}
	return co
}

// Starts and stops share a transaction, their outcomes held and sent
// together before its commit (repo.Coalescer.DoPipelined): each is applied
// as it would be alone, balances and ledgers agree, and nothing falls back.
func TestStartsAndStopsInOneBatch(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("PIPE", domain.ZoneSpec{Name: "Pipe", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210})
	var tasks []*asynq.Task
	var fns []func(context.Context, *asynq.Task) error
	var ids []string
	for i := range 4 {
		p := l.newPermit("PIPE", 10)
		s := l.mustStart(p.ID, fmt.Sprintf("PIPEA%d", i), nil, nil)
		stop, id := l.stopTask(s.ID, nil)
		tasks, fns, ids = append(tasks, stop), append(fns, l.h.SessionStop), append(ids, id)
		other := l.newPermit("PIPE", 10)
		start, id := l.sessionTask(other.ID, fmt.Sprintf("PIPEB%d", i), nil, nil)
		tasks, fns, ids = append(tasks, start), append(fns, l.h.SessionStart), append(ids, id)
	}
	co := oneBatch(t, l, tasks, fns)
	if co.Fallbacks.Load() != 0 || co.Deferred.Load() != 0 {
		t.Fatalf("fallbacks %d, deferred %d: want none", co.Fallbacks.Load(), co.Deferred.Load())
	}
	for _, id := range ids {
		if r := l.outcome(id, nil); r.Status != repo.RequestApplied {
			t.Errorf("request %s: %s %s", id, r.Status, r.Error)
		}
	}
	l.checkInvariants()
}

// One permit, one unit per shared transaction: a second start on a permit
// that a start of the same batch locked would not see that start's session,
// whose outcome is held, and the zone's max_concurrent_sessions of 1 would
// let both park. It runs alone after the commit instead, and is refused.
func TestABatchGivesAPermitToOneUnit(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("PIPE1", domain.ZoneSpec{Name: "Pipe", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210, MaxConcurrentSessions: ptr(1)})
	p := l.newPermit("PIPE1", 10)
	var tasks []*asynq.Task
	var fns []func(context.Context, *asynq.Task) error
	var ids []string
	for i := range 3 {
		task, id := l.sessionTask(p.ID, fmt.Sprintf("ONEP%d", i), nil, nil)
		tasks, fns, ids = append(tasks, task), append(fns, l.h.SessionStart), append(ids, id)
	}
	co := oneBatch(t, l, tasks, fns)
	if co.Deferred.Load() != 2 {
		t.Errorf("deferred %d, want the two later starts on the permit", co.Deferred.Load())
	}
	started := 0
	for _, id := range ids {
		switch code := rejection(t, l.outcome(id, nil)); code {
		case "":
			started++
		case string(domain.CodeTooManySessions):
		default:
			t.Errorf("start %s: %s", id, code)
		}
	}
	if started != 1 {
		t.Fatalf("%d of 3 starts on one permit in one batch started, want 1 (max_concurrent_sessions)", started)
	}
	l.checkInvariants()
}

// One plate started on two permits in one batch: the second held session
// meets the first's in the plate's exclusion constraint at the flush and
// writes nothing; it runs again alone after the commit and is refused as
// parked, and the batch does not fall back.
func TestAPlateParkedTwiceInOneBatch(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("PIPE2", domain.ZoneSpec{Name: "Pipe", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210})
	var tasks []*asynq.Task
	var fns []func(context.Context, *asynq.Task) error
	var ids []string
	for range 2 {
		p := l.newPermit("PIPE2", 10)
		task, id := l.sessionTask(p.ID, "TWICE1", nil, nil)
		tasks, fns, ids = append(tasks, task), append(fns, l.h.SessionStart), append(ids, id)
	}
	co := oneBatch(t, l, tasks, fns)
	if co.Fallbacks.Load() != 0 || co.Deferred.Load() != 1 {
		t.Errorf("fallbacks %d, deferred %d: want the second start run again alone", co.Fallbacks.Load(), co.Deferred.Load())
	}
	if code := rejection(t, l.outcome(ids[0], nil)); code != "" {
		t.Errorf("the first start: %s", code)
	}
	if code := rejection(t, l.outcome(ids[1], nil)); code != string(domain.CodePlateAlreadyParked) {
		t.Errorf("the second start of the plate: %q, want %s", code, domain.CodePlateAlreadyParked)
	}
	l.checkInvariants()
}

// A start of a plate parked long before, in a batch with others: its held
// outcome wrote nothing, so it alone runs again after the commit, where it
// is refused as parked; the others are applied in the batch, which does not
// fall back.
func TestAParkedPlateInABatchRunsAloneWithoutTheOthers(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("PIPE3", domain.ZoneSpec{Name: "Pipe", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210})
	l.mustStart(l.newPermit("PIPE3", 10).ID, "PARKED1", nil, nil)
	var tasks []*asynq.Task
	var fns []func(context.Context, *asynq.Task) error
	var ids []string
	for i := range 6 {
		plate := fmt.Sprintf("FREE%d", i)
		if i == 2 {
			plate = "PARKED1"
		}
		task, id := l.sessionTask(l.newPermit("PIPE3", 10).ID, plate, nil, nil)
		tasks, fns, ids = append(tasks, task), append(fns, l.h.SessionStart), append(ids, id)
	}
	co := oneBatch(t, l, tasks, fns)
	if co.Fallbacks.Load() != 0 || co.Deferred.Load() != 1 {
		t.Errorf("fallbacks %d, deferred %d: want only the parked plate's start run again alone", co.Fallbacks.Load(), co.Deferred.Load())
	}
	for i, id := range ids {
		want := ""
		if i == 2 {
			want = string(domain.CodePlateAlreadyParked)
		}
		if code := rejection(t, l.outcome(id, nil)); code != want {
			t.Errorf("start %d: %q, want %q", i, code, want)
		}
	}
	l.checkInvariants()
}

// Units that are not pipelined write at once, and those after them read
// it: two top-ups on one permit still share a transaction.
func TestUnitsNotPipelinedShareAPermit(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("PIPE4", domain.ZoneSpec{Name: "Pipe", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210})
	p := l.newPermit("PIPE4", 10)
	var tasks []*asynq.Task
	var fns []func(context.Context, *asynq.Task) error
	for i := range 2 {
		task, _ := l.topupTask(p.ID, 1, rid(fmt.Sprintf("pay%d", i)))
		tasks, fns = append(tasks, task), append(fns, l.h.PermitTopup)
	}
	co := oneBatch(t, l, tasks, fns)
	if co.Deferred.Load() != 0 || co.Fallbacks.Load() != 0 {
		t.Errorf("deferred %d, fallbacks %d: two top-ups on one permit no longer share a transaction", co.Deferred.Load(), co.Fallbacks.Load())
	}
	if got := l.permitRow(p.ID).PurchasedMinutes; got != 12*60 {
		t.Errorf("purchased %d minutes, want 720 (10 h and two top-ups of 1 h)", got)
	}
	l.checkInvariants()
}

// The rows a shared transaction locks ahead for its starts and stops
// (repo.Prelock) are forgotten once a unit that is not pipelined has run:
// it may write them. Here a top-up between two starts buys the second
// start's permit its only minutes; read ahead and kept, that permit would
// still have none, and the start would be refused for its balance.
func TestATopupInABatchIsSeenByTheStartAfterIt(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("PIPE5", domain.ZoneSpec{Name: "Pipe", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210})
	rich, poor := l.newPermit("PIPE5", 10), l.newPermit("PIPE5", 0)
	first, _ := l.sessionTask(rich.ID, "PIPEC1", nil, nil)
	topup, _ := l.topupTask(poor.ID, 1, rid("pay"))
	second, id := l.sessionTask(poor.ID, "PIPEC2", nil, nil)
	oneBatch(t, l, []*asynq.Task{first, topup, second},
		[]func(context.Context, *asynq.Task) error{l.h.SessionStart, l.h.PermitTopup, l.h.SessionStart})
	if code := rejection(t, l.outcome(id, nil)); code != "" {
		t.Fatalf("the start after the top-up: %s, want applied (it read its permit as it was before the top-up)", code)
	}
	l.checkInvariants()
}
