package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// harness is one integration test's world: its own Postgres database, its own
// Redis index, and (when started) a real asynq server running parkd's handlers.
type harness struct {
	t         testing.TB
	ctx       context.Context
	store     *repo.Store
	rdb       *redis.Client
	redisOpt  asynq.RedisClientOpt
	client    *asynq.Client
	inspector *asynq.Inspector
	h         *worker.Handlers
	srv       *worker.Server
	shared    bool // Redis is shared with other tests (setupParallel)
}

var seq atomic.Int64

func rid(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// setup gives a test that runs alone its own database and this process's Redis
// index, flushed. It is for tests that start a worker server (which takes every
// task queued in the index, whichever test queued it) or look at what is in
// Redis: the queues, a task by its ID, the reconciler's epoch.
func setup(t testing.TB) *harness {
	t.Helper()
	rdb, idx := repotest.NewRedis(t)
	return newHarness(t, rdb, idx)
}

// setupParallel marks t parallel and gives it its own database and the Redis
// index it shares with the other parallel tests, not flushed (a test process
// has one index). It is for tests that call the handlers directly, with no
// worker server. Sharing is safe because Go runs parallel tests only when no test that
// runs alone is running, so no worker server takes their tasks; and what the
// handlers write to Redis cannot collide: auto-stops, whose task IDs are made
// of session IDs, and each database numbers its sessions from its own offset.
// Such a test may look up its own tasks by ID, but nothing shared: not the
// queues' counts, nor the reconciler's epoch, which its neighbours change.
func setupParallel(t *testing.T) *harness {
	t.Helper()
	t.Parallel()
	sharedRedis.Do(func() { _, sharedRedis.idx = repotest.NewRedis(t) }) // flushed once
	rdb := redis.NewClient(&redis.Options{Addr: repotest.RedisAddr(), DB: sharedRedis.idx})
	t.Cleanup(func() { rdb.Close() })
	e := newHarness(t, rdb, sharedRedis.idx)
	e.shared = true
	e.exec(fmt.Sprintf("ALTER TABLE sessions ALTER COLUMN id RESTART WITH %d", sessionOffsets.Add(1)*1_000_000_000))
	return e
}

var (
	sharedRedis struct {
		sync.Once
		idx int
	}
	sessionOffsets atomic.Int64
)

func newHarness(t testing.TB, rdb *redis.Client, idx int) *harness {
	t.Helper()
	store, _ := repotest.NewDB(t)
	opt := asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx}
	e := &harness{t: t, ctx: context.Background(), store: store, rdb: rdb, redisOpt: opt,
		client: asynq.NewClient(opt), inspector: asynq.NewInspector(opt)}
	t.Cleanup(func() { e.client.Close(); e.inspector.Close() })
	// Every test goes through the Coalescer, as parkd's worker does: concurrent
	// requests share transactions (PARKD_TEST_NO_COALESCE=1 gives each its own).
	var co *repo.Coalescer
	if os.Getenv("PARKD_TEST_NO_COALESCE") != "1" {
		co = repo.NewCoalescer(store.DB, repo.CoalescerConfig{})
		t.Cleanup(co.Close)
	}
	// A horizon of two days: these tests look at the hand-over of a
	// session's scheduled tasks at the change that sets them, for ends hours
	// ahead; schedule_test.go tests parkd's own horizon (worker.ScheduleHorizon).
	// Answers and OutboundReads, too: the registrar's and the webhooks'
	// answers, and what their tasks read first, are a batch per statement,
	// as in parkd's worker.
	answers := repo.NewAnswers(store.DB, repo.AnswersConfig{})
	t.Cleanup(answers.Close)
	reads := repo.NewOutboundReads(store.DB, repo.AnswersConfig{})
	t.Cleanup(reads.Close)
	e.h = &worker.Handlers{Store: store, Client: e.client, Redis: rdb, Log: quietLog(), Coalescer: co, Answers: answers, Reads: reads,
		ScheduleHorizon: 48 * time.Hour}
	// A zone with no invalid weekday, so that tests pass on any day of the week.
	z, err := domain.CompileZone("TEST", domain.ZoneSpec{Name: "Test", TimeZone: "Europe/Amsterdam", TariffCentsPerHour: 210, InvalidWeekdays: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.PutZone(e.ctx, store.DB, z); err != nil {
		t.Fatal(err)
	}
	return e
}

// start runs a real asynq server with parkd's handlers against the test Redis.
func (e *harness) start() {
	e.t.Helper()
	if e.shared {
		e.t.Fatal("a worker server on a shared Redis index would take other tests' tasks: use setup, not setupParallel")
	}
	e.srv = worker.NewServer(e.redisOpt, worker.Config{
		Concurrency: 10, TaskCheckInterval: 10 * time.Millisecond,
		DelayedTaskCheckInterval: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	}, quietLog())
	if err := e.srv.Start(e.h.Mux()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.srv.Shutdown)
}

// permit issues a permit at a fresh address of the TEST zone and buys hours on it.
func (e *harness) permit(hours int) string { return e.permitIn("TEST", hours) }

// permitIn issues a permit at a fresh address of zone and buys hours on it,
// received at the handlers' clock when the test set one.
func (e *harness) permitIn(zone string, hours int) string {
	e.t.Helper()
	addr, resident := rid("A"), rid("R")
	if err := repo.PutAddress(e.ctx, e.store.DB, &repo.Address{ID: addr, Zone: &zone}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := repo.PutRegistration(e.ctx, e.store.DB, &repo.Registration{ResidentID: resident, AddressID: addr}); err != nil {
		e.t.Fatal(err)
	}
	var received time.Time // stamped by the constructor
	if e.h.Clock != nil {
		received = e.h.Clock.Now()
	}
	task, err := jobs.NewPermitIssue(jobs.PermitIssue{RequestID: rid("issue"), ResidentID: resident, AddressID: addr, ReceivedAt: received})
	if err != nil {
		e.t.Fatal(err)
	}
	var pv jobs.Permit
	if r := e.run(task, e.h.PermitIssue, &pv); r.Status != repo.RequestApplied {
		e.t.Fatalf("issue: %s %s", r.Status, r.Error)
	}
	if hours > 0 {
		task, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: rid("topup"), PermitID: pv.ID, Hours: hours, PaymentRef: rid("pay"), ReceivedAt: received})
		if err != nil {
			e.t.Fatal(err)
		}
		e.run(task, e.h.PermitTopup, &pv)
	}
	return pv.ID
}

// run calls a handler directly (no Redis) and decodes the applied result.
func (e *harness) run(task *asynq.Task, fn func(context.Context, *asynq.Task) error, into any) *repo.Request {
	e.t.Helper()
	if err := fn(e.ctx, task); err != nil {
		e.t.Fatalf("%s: %v", task.Type(), err)
	}
	var p struct {
		RequestID string `json:"request_id"`
	}
	_ = json.Unmarshal(task.Payload(), &p)
	return e.outcome(p.RequestID, into)
}

func (e *harness) outcome(requestID string, into any) *repo.Request {
	e.t.Helper()
	r, err := repo.GetRequest(e.ctx, e.store.DB, requestID)
	if err != nil {
		e.t.Fatal(err)
	}
	if into != nil && r.Status == repo.RequestApplied {
		if err := json.Unmarshal(r.Result, into); err != nil {
			e.t.Fatal(err)
		}
	}
	return r
}

// enqueue hands a task to the real queue.
func (e *harness) enqueue(task *asynq.Task) {
	e.t.Helper()
	if _, err := e.client.Enqueue(task); err != nil {
		e.t.Fatalf("enqueue %s: %v", task.Type(), err)
	}
}

// await waits for a request's outcome to be recorded.
func (e *harness) await(requestID string, into any) *repo.Request {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: a loaded CI machine
	for {
		r, err := repo.GetRequest(e.ctx, e.store.DB, requestID)
		if err == nil && r.Status != repo.RequestPending {
			return e.outcome(requestID, into)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("request %s: no outcome after 30s (last: %v %v)", requestID, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *harness) startTask(permitID, plate string, startAt, endAt *time.Time) (*asynq.Task, string) {
	e.t.Helper()
	id := rid("start")
	task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: id, PermitID: permitID, Plate: plate, StartAt: startAt, EndAt: endAt})
	if err != nil {
		e.t.Fatal(err)
	}
	return task, id
}

func (e *harness) stopTask(sessionID string, at *time.Time) (*asynq.Task, string) {
	e.t.Helper()
	id := rid("stop")
	task, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: id, SessionID: sessionID, At: at})
	if err != nil {
		e.t.Fatal(err)
	}
	return task, id
}

func (e *harness) session(id string) *repo.Session {
	e.t.Helper()
	n, _ := repo.ParseID(id)
	s, err := repo.GetSession(e.ctx, e.store.DB, n)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *harness) permitRow(id string) *repo.Permit {
	e.t.Helper()
	n, _ := repo.ParseID(id)
	p, err := repo.GetPermit(e.ctx, e.store.DB, n)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// awaitSettled waits until a session is no longer open.
func (e *harness) awaitSettled(id string, limit time.Duration) *repo.Session {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		s := e.session(id)
		if s.State != domain.StateOpen {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("session %s still open after %s (planned end %s)", id, limit, s.PlannedEndAt)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkInvariants asserts the ledger invariant for every permit: its balance is
// the sum of its ledger and not negative, and its reservations are its open
// sessions'.
func (e *harness) checkInvariants() {
	e.t.Helper()
	bad, err := repo.LedgerMismatches(e.ctx, e.store.DB)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(bad) > 0 {
		e.t.Errorf("balance != sum(ledger) for %+v", bad)
	}
	res, err := repo.ReservationMismatches(e.ctx, e.store.DB)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(res) > 0 {
		e.t.Errorf("reserved_minutes != open sessions' reservations for permits %v", res)
	}
	// And the whole audit of `parkd check` (sessions may legitimately still be
	// open past their end for a moment in a test, hence the long grace).
	_, findings, err := repo.Audit(e.ctx, e.store.DB, time.Hour, 20)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, f := range findings {
		e.t.Errorf("audit: %s: %s", f.Check, f.Detail)
	}
}

func (e *harness) ledgerKinds(permitID string) map[string]int {
	e.t.Helper()
	n, _ := repo.ParseID(permitID)
	var rows []repo.LedgerEntry
	if err := e.store.DB.NewSelect().Model(&rows).Where("permit_id = ?", n).Scan(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.Kind]++
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// testClock is the handlers' clock in tests that move time: set by the test,
// read by the worker's goroutines.
type testClock struct{ *clockwork.FakeClock }

func newTestClock(t time.Time) *testClock {
	return &testClock{clockwork.NewFakeClockAt(t.UTC())}
}

func (c *testClock) now() time.Time      { return c.Now() }
func (c *testClock) set(t time.Time)     { c.Advance(t.Sub(c.Now())) }
func (c *testClock) add(d time.Duration) { c.Advance(d) }

// awaitTask waits until the task with this ID is (or is no longer) in the
// critical queue.
func (e *harness) awaitTask(id string, present bool) {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := e.inspector.GetTaskInfo(jobs.QueueCritical, id)
		if err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			e.t.Fatal(err)
		}
		if (err == nil) == present {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s: present = %v after 5s, want %v", id, err == nil, present)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// putZone replaces a zone, as PUT /v1/admin/zones/{code} does.
func (e *harness) putZone(code string, spec domain.ZoneSpec) *domain.Zone {
	e.t.Helper()
	z, err := domain.CompileZone(code, spec)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := repo.PutZone(e.ctx, e.store.DB, z); err != nil {
		e.t.Fatal(err)
	}
	return z
}

// autoStopNow runs a session's auto-stop at the worker's clock.
func (e *harness) autoStopNow(s jobs.Session) *repo.Session {
	e.t.Helper()
	if err := e.h.SessionAutoStop(e.ctx, jobs.NewSessionAutoStop(s.ID, s.PlannedEndAt)); err != nil {
		e.t.Fatal(err)
	}
	return e.session(s.ID)
}

// awaitQueueEmpty waits until a queue holds no pending or active task.
func (e *harness) awaitQueueEmpty(queue string) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := e.inspector.GetQueueInfo(queue)
		if err == nil && info.Pending == 0 && info.Active == 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("queue %s not empty after 10s: %+v %v", queue, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// awaitArchived waits until the task with this ID is archived in queue.
func (e *harness) awaitArchived(queue, id string) *asynq.TaskInfo {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := e.inspector.GetTaskInfo(queue, id)
		if err == nil && info.State == asynq.TaskStateArchived {
			return info
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("task %s not archived after 10s: %+v %v", id, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countingObserver keeps what the worker told its Observer.
type countingObserver struct {
	mu       sync.Mutex
	relayed  int
	settled  []string        // how each session was settled
	lateness []time.Duration // and how late
	rights   map[string]int  // right:register outcomes
	rightLag []time.Duration // lags of acknowledgements
}

func (o *countingObserver) RequestDone(string, string, string, time.Duration) {}
func (o *countingObserver) Reconciled(int, int)                               {}

func (o *countingObserver) SessionSettled(how string, lateness time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.settled, o.lateness = append(o.settled, how), append(o.lateness, lateness)
}

func (o *countingObserver) OutboxRelayed(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.relayed += n
}

func (o *countingObserver) RightRegistered(outcome string, lag time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rights == nil {
		o.rights = map[string]int{}
	}
	o.rights[outcome]++
	if lag > 0 {
		o.rightLag = append(o.rightLag, lag)
	}
}

// registrations is a copy of the right:register outcomes counted so far.
func (o *countingObserver) registrations() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int{}
	for k, v := range o.rights {
		out[k] = v
	}
	return out
}

func (o *countingObserver) relayedTasks() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.relayed
}
