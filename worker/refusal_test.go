package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

// exec runs DDL or SQL on the test's own database: here, the constraints that
// make Postgres refuse a write for good, the way the schema's 1-8 plate check
// refuses a 9-12 character plate once the rules allow one.
func (e *harness) exec(q string, args ...any) {
	e.t.Helper()
	if _, err := e.store.DB.NewRaw(q, args...).Exec(e.ctx); err != nil {
		e.t.Fatalf("%s: %v", q, err)
	}
}

// wantFailed asserts the recorded outcome of a request the database refused
// for good: rejected, request_failed, a message naming the kind of record and
// no plate.
func (e *harness) wantFailed(requestID, record string, plates ...string) {
	e.t.Helper()
	r := e.outcome(requestID, nil)
	var ro jobs.Rejection
	_ = json.Unmarshal(r.Error, &ro)
	if r.Status != repo.RequestRejected || ro.Code != string(domain.CodeRequestFailed) {
		e.t.Fatalf("request %s: %s %s, want rejected request_failed", requestID, r.Status, r.Error)
	}
	if !strings.Contains(ro.Message, record) || !strings.Contains(ro.Message, "SQLSTATE 23514") {
		e.t.Errorf("message %q does not name the refusal (%s, SQLSTATE 23514)", ro.Message, record)
	}
	for _, p := range plates {
		if strings.Contains(ro.Message, p) {
			e.t.Errorf("message %q shows the plate", ro.Message)
		}
	}
}

// Every request handler ends a write the database refuses for good (here a
// CHECK constraint, deterministic and permanent) as a recorded outcome,
// rejected with request_failed, which the client reads, instead of an error
// that asynq retries for an hour and then archives while the client sees 202.
// Nothing of the request is written.
func TestRefusedForGoodIsARecordedOutcome(t *testing.T) {
	for _, c := range []struct {
		name    string
		record  string
		prepare func(e *harness) (task *asynq.Task, handler func(context.Context, *asynq.Task) error)
	}{
		{"session:start", "of a session", func(e *harness) (*asynq.Task, func(context.Context, *asynq.Task) error) {
			pid := e.permit(10)
			e.exec("ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (plate <> 'ZZ99ZZ')")
			task, _ := e.startTask(pid, "zz-99-zz", nil, nil)
			return task, e.h.SessionStart
		}},
		{"session:stop", "of a session", func(e *harness) (*asynq.Task, func(context.Context, *asynq.Task) error) {
			pid := e.permit(10)
			start, _ := e.startTask(pid, "zz-99-zz", nil, nil)
			var s jobs.Session
			e.run(start, e.h.SessionStart, &s)
			e.exec("ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (state <> 'stopped')")
			task, _ := e.stopTask(s.ID, nil)
			return task, e.h.SessionStop
		}},
		{"permit:topup", "of a ledger entry", func(e *harness) (*asynq.Task, func(context.Context, *asynq.Task) error) {
			pid := e.permit(10)
			e.exec("ALTER TABLE ledger ADD CONSTRAINT refuse CHECK (payment_ref IS DISTINCT FROM 'PAY-REFUSED')")
			task, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: rid("topup"), PermitID: pid, Hours: 2, PaymentRef: "PAY-REFUSED"})
			if err != nil {
				t.Fatal(err)
			}
			return task, e.h.PermitTopup
		}},
		{"permit:issue", "of a permit", func(e *harness) (*asynq.Task, func(context.Context, *asynq.Task) error) {
			addr, resident, zone := rid("A"), rid("R"), "TEST"
			if err := repo.PutAddress(e.ctx, e.store.DB, &repo.Address{ID: addr, Zone: &zone}); err != nil {
				t.Fatal(err)
			}
			if _, err := repo.PutRegistration(e.ctx, e.store.DB, &repo.Registration{ResidentID: resident, AddressID: addr}); err != nil {
				t.Fatal(err)
			}
			e.exec("ALTER TABLE permits ADD CONSTRAINT refuse CHECK (address_id <> ?)", addr)
			task, err := jobs.NewPermitIssue(jobs.PermitIssue{RequestID: rid("issue"), ResidentID: resident, AddressID: addr})
			if err != nil {
				t.Fatal(err)
			}
			return task, e.h.PermitIssue
		}},
		{"permit:end", "of a permit", func(e *harness) (*asynq.Task, func(context.Context, *asynq.Task) error) {
			pid := e.permit(10)
			e.exec("ALTER TABLE permits ADD CONSTRAINT refuse CHECK (status <> 'ended')")
			task, err := jobs.NewPermitEnd(jobs.PermitEnd{RequestID: rid("end"), PermitID: pid, Reason: "moved"})
			if err != nil {
				t.Fatal(err)
			}
			return task, e.h.PermitEnd
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := setupParallel(t)
			task, handler := c.prepare(e)
			var before []string
			snapshot := func() []string {
				var rows []string
				if err := e.store.DB.NewRaw(`SELECT format('%s %s %s %s', p.id, p.status, p.balance_minutes, p.reserved_minutes)
					|| (SELECT string_agg(kind || ' ' || minutes, ',' ORDER BY id) FROM ledger l WHERE l.permit_id = p.id)
					FROM permits p ORDER BY p.id`).Scan(e.ctx, &rows); err != nil {
					t.Fatal(err)
				}
				var s []string
				if err := e.store.DB.NewRaw(`SELECT format('%s %s', id, state) FROM sessions ORDER BY id`).Scan(e.ctx, &s); err != nil {
					t.Fatal(err)
				}
				return append(rows, s...)
			}
			before = snapshot()
			if err := handler(e.ctx, task); err != nil {
				t.Fatalf("%s: %v (a refusal for good must end as an outcome, not be retried)", task.Type(), err)
			}
			var p struct {
				RequestID string `json:"request_id"`
			}
			_ = json.Unmarshal(task.Payload(), &p)
			e.wantFailed(p.RequestID, c.record, "ZZ99ZZ", "zz-99-zz")
			if after := snapshot(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Errorf("the refused request changed something:\nbefore %v\nafter  %v", before, after)
			}
			// A second delivery reads the outcome and changes nothing.
			if err := handler(e.ctx, task); err != nil {
				t.Fatal(err)
			}
			e.wantFailed(p.RequestID, c.record)
			e.checkInvariants()
		})
	}
}

// A failure that may pass is still retried, never recorded: the classes
// Postgres gives a lost connection, a serialization failure, a deadlock, a
// shutdown, a cancelled statement. The trigger raises each on the session's
// insert; once it is gone, the retry applies the request.
func TestTransientFailureIsRetriedNotRecorded(t *testing.T) {
	e := setupParallel(t)
	pid := e.permit(10)
	for _, code := range []string{"40001", "40P01", "08006", "57P01", "57014", "55P03"} {
		e.exec(fmt.Sprintf(`CREATE OR REPLACE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
			$$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '%s'; END $$`, code))
		e.exec("CREATE OR REPLACE TRIGGER refuse BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION refuse()")
		task, id := e.startTask(pid, "ab-12-cd", nil, nil)
		if err := e.h.SessionStart(e.ctx, task); err == nil {
			t.Fatalf("SQLSTATE %s: no error, so asynq would not retry", code)
		}
		// Rolled back whole, its claim on the request ID included.
		if r, err := repo.GetRequest(e.ctx, e.store.DB, id); !errors.Is(err, repo.ErrNotFound) {
			t.Fatalf("SQLSTATE %s: recorded %v (%v), want nothing (retried)", code, r, err)
		}
		e.exec("DROP TRIGGER refuse ON sessions")
		var s jobs.Session
		if r := e.run(task, e.h.SessionStart, &s); r.Status != repo.RequestApplied {
			t.Fatalf("SQLSTATE %s: the retry: %s %s", code, r.Status, r.Error)
		}
		stop, _ := e.stopTask(s.ID, nil)
		e.run(stop, e.h.SessionStop, nil)
	}
	e.checkInvariants()
}

// A unique or exclusion violation may be a concurrent writer's doing, which the
// next attempt sees: it is tried ConflictTries times through the real queue,
// then recorded as failed (the sequence counts the attempts: it is not rolled
// back with them).
func TestConflictIsTriedAFewTimesThenRecorded(t *testing.T) {
	e := setup(t)
	e.start()
	pid := e.permit(10)
	e.exec("CREATE SEQUENCE attempts")
	e.exec(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN PERFORM nextval('attempts'); RAISE EXCEPTION 'injected' USING ERRCODE = '23505'; END $$`)
	e.exec("CREATE TRIGGER refuse BEFORE INSERT ON sessions FOR EACH ROW EXECUTE FUNCTION refuse()")
	task, id := e.startTask(pid, "ab-12-cd", nil, nil)
	e.enqueue(task)
	r := e.await(id, nil)
	var ro jobs.Rejection
	_ = json.Unmarshal(r.Error, &ro)
	if r.Status != repo.RequestRejected || ro.Code != string(domain.CodeRequestFailed) || !strings.Contains(ro.Message, "SQLSTATE 23505") {
		t.Fatalf("outcome %s %s, want rejected request_failed (23505)", r.Status, r.Error)
	}
	var n int
	if err := e.store.DB.NewRaw("SELECT last_value FROM attempts").Scan(e.ctx, &n); err != nil {
		t.Fatal(err)
	}
	if n != worker.ConflictTries {
		t.Fatalf("%d attempts, want %d", n, worker.ConflictTries)
	}
	e.awaitTask(jobs.RequestTaskID(id), false) // done, neither retrying nor archived
}

// Tasks that are no request have no outcome to record: one the database refuses
// for good is archived at once (asynq.SkipRetry), with an error in the log,
// instead of being retried to the same refusal.
func TestMaintenanceRefusedForGoodIsArchivedNotRetried(t *testing.T) {
	e := setupParallel(t)
	pid := e.permit(10)
	start, _ := e.startTask(pid, "ab-12-cd", nil, nil)
	var s jobs.Session
	e.run(start, e.h.SessionStart, &s)
	e.exec("ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (state <> 'stopped')")
	e.exec("ALTER TABLE permit_years ADD CONSTRAINT refuse CHECK (false) NOT VALID")
	later := time.Now().Add(400 * 24 * time.Hour) // past the planned end and the permit year
	e.h.Clock = clockwork.NewFakeClockAt(later)
	mux := e.h.Mux()
	for _, task := range []*asynq.Task{jobs.NewSessionAutoStop(s.ID, s.PlannedEndAt), jobs.NewPermitRollover(later)} {
		err := mux.ProcessTask(e.ctx, task)
		if !errors.Is(err, asynq.SkipRetry) {
			t.Errorf("%s: %v, want an error that skips the retries", task.Type(), err)
		}
	}
	if st := e.session(s.ID).State; st != domain.StateOpen {
		t.Fatalf("session %s, want still open", st)
	}
	// A transient failure is still retried.
	e.exec("ALTER TABLE sessions DROP CONSTRAINT refuse")
	e.exec(`CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '40P01'; END $$`)
	e.exec("CREATE TRIGGER refuse BEFORE UPDATE ON sessions FOR EACH ROW EXECUTE FUNCTION refuse()")
	if err := mux.ProcessTask(e.ctx, jobs.NewSessionAutoStop(s.ID, s.PlannedEndAt)); err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("deadlock: %v, want an error asynq retries", err)
	}
}

// The reconciler goes on past a session the database refuses to settle: the
// others are settled, the refused one stays open (`parkd check` lists it), and
// the run does not fail (it would fail every minute, forever).
func TestReconcilerGoesPastASessionItCannotSettle(t *testing.T) {
	e := setupParallel(t)
	pid := e.permit(10)
	now := time.Now()
	bad, _ := e.startTask(pid, "aa-11-bb", nil, ptr(now.Add(30*time.Minute)))
	good, _ := e.startTask(pid, "cc-22-dd", nil, nil)
	var b, g jobs.Session
	e.run(bad, e.h.SessionStart, &b)
	e.run(good, e.h.SessionStart, &g)
	bid, _ := repo.ParseID(b.ID)
	e.exec("ALTER TABLE sessions ADD CONSTRAINT refuse CHECK (state = 'open' OR id <> ?)", bid)
	e.h.Clock = clockwork.NewFakeClockAt(now.Add(4 * time.Hour))
	rep, err := e.h.Reconcile(e.ctx)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	if rep.Settled != 1 || rep.Failed != 1 {
		t.Fatalf("report %+v, want 1 settled and 1 failed", rep)
	}
	if e.session(g.ID).State != domain.StateStopped || e.session(b.ID).State != domain.StateOpen {
		t.Fatalf("good %s, refused %s; want stopped and open", e.session(g.ID).State, e.session(b.ID).State)
	}
}

// The rollover goes on past a permit whose year the database refuses to close:
// the others get their new year, the refused one is left as it is and named,
// and the task is archived at once (not retried) for an operator to see.
// Before, the one permit failed every batch it was in, every hour.
func TestRolloverGoesPastAPermitItCannotRoll(t *testing.T) {
	e := setupParallel(t)
	good, bad := e.permit(1), e.permit(1)
	bid, _ := repo.ParseID(bad)
	e.exec("ALTER TABLE permit_years ADD CONSTRAINT refuse CHECK (permit_id <> ?)", bid)
	later := time.Now().Add(400 * 24 * time.Hour)
	e.h.Clock = clockwork.NewFakeClockAt(later)
	badYear := e.permitRow(bad).YearEndsAt
	res, err := e.h.Rollover(e.ctx)
	if _, refused := repo.AsRefusal(err); !refused || fmt.Sprint(res.Refused) != fmt.Sprint([]int64{bid}) {
		t.Fatalf("rollover: %+v, %v; want permit %d refused", res, err, bid)
	}
	if !e.permitRow(good).YearEndsAt.After(later) || !e.permitRow(bad).YearEndsAt.Equal(badYear) {
		t.Fatalf("good permit's year ends %s (want after %s), refused one's %s (want %s)",
			e.permitRow(good).YearEndsAt, later, e.permitRow(bad).YearEndsAt, badYear)
	}
	if err := e.h.Mux().ProcessTask(e.ctx, jobs.NewPermitRollover(later)); !errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("the rollover task: %v, want archived at once", err)
	}
}
