package repo_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestRegisterForgetAdopt: the intake's bookkeeping on the requests table.
func TestRegisterForgetAdopt(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	r, created, err := repo.RegisterRequest(ctx, st.DB, "k1", "session:start", "fp", "resident:a", []byte(`{"plate":"X"}`))
	if err != nil || !created || r.Status != repo.RequestPending || r.Subject == nil || *r.Subject != "resident:a" {
		t.Fatalf("first register: %+v %v %v", r, created, err)
	}
	r, created, err = repo.RegisterRequest(ctx, st.DB, "k1", "session:stop", "other", "resident:b", nil)
	if err != nil || created || r.Type != "session:start" || r.BodyHash != "fp" || *r.Subject != "resident:a" {
		t.Fatalf("second register must return the first row unchanged: %+v %v %v", r, created, err)
	}
	// Forget removes only a pending row of the same subject.
	if err := repo.ForgetPendingRequest(ctx, st.DB, "k1", "resident:b"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.GetRequest(ctx, st.DB, "k1"); err != nil {
		t.Fatalf("another subject's forget removed the row: %v", err)
	}
	if err := repo.ForgetPendingRequest(ctx, st.DB, "k1", "resident:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.GetRequest(ctx, st.DB, "k1"); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("forgotten row still there: %v", err)
	}
	// A finished request is never forgotten.
	if err := st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		if _, err := repo.ClaimRequest(ctx, tx, "k2", "session:start", "fp", nil); err != nil {
			return err
		}
		return repo.FinishRequest(ctx, tx, "k2", repo.Finish{Type: "session:start", BodyHash: "fp", Status: repo.RequestApplied, Result: map[string]string{"id": "1"}})
	}); err != nil {
		t.Fatal(err)
	}
	if err := repo.ForgetPendingRequest(ctx, st.DB, "k2", "resident:a"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.GetRequest(ctx, st.DB, "k2"); err != nil {
		t.Fatalf("finished row forgotten: %v", err)
	}
	// k2 has no subject (the worker made it): the same request adopts it, another does not.
	if ok, err := repo.AdoptRequest(ctx, st.DB, "k2", "session:start", "different", "resident:a"); err != nil || ok {
		t.Fatalf("adopt with another fingerprint: %v %v", ok, err)
	}
	if ok, err := repo.AdoptRequest(ctx, st.DB, "k2", "session:start", "fp", "resident:a"); err != nil || !ok {
		t.Fatalf("adopt: %v %v", ok, err)
	}
	if ok, err := repo.AdoptRequest(ctx, st.DB, "k2", "session:start", "fp", "resident:b"); err != nil || ok {
		t.Fatalf("adopt of an adopted request: %v %v", ok, err)
	}
}

// TestRequestRecordedWhenAnswered202: the intake records a request only when
// it answers 202, with its task's payload; the worker's claim makes the row
// of any other (keeping who asked, from the task); the payload is what the
// reconciler enqueues again while the request is pending, and it is gone once
// the request is finished (it names a plate).
func TestRequestRecordedWhenAnswered202(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	payload := []byte(`{"request_id":"p1","plate":"AB12CD"}`)
	if _, created, err := repo.RegisterRequest(ctx, st.DB, "p1", "session:start", "fp", "resident:a", payload); err != nil || !created {
		t.Fatalf("register: %v %v", created, err)
	}
	if got, err := repo.StrandedRequests(ctx, st.DB, time.Hour, 10); err != nil || len(got) != 0 {
		t.Fatalf("a request recorded a moment ago is stranded: %+v %v", got, err)
	}
	got, err := repo.StrandedRequests(ctx, st.DB, 0, 10)
	if err != nil || len(got) != 1 || got[0].RequestID != "p1" || got[0].Type != "session:start" ||
		string(got[0].TaskPayload) != string(payload) || got[0].Subject == nil || *got[0].Subject != "resident:a" {
		t.Fatalf("stranded = %+v %v, want p1 with its payload and subject", got, err)
	}
	// The worker claims it (the row is there: locked and read, its subject
	// kept) and finishes it: the payload goes.
	other := "resident:other"
	finish := func(id, subject string) *repo.Request {
		var claimed *repo.Request
		if err := st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
			var err error
			if claimed, err = repo.ClaimRequest(ctx, tx, id, "session:start", "fp", &subject); err != nil {
				return err
			}
			return repo.FinishRequest(ctx, tx, id, repo.Finish{Type: "session:start", BodyHash: "fp", Status: repo.RequestApplied, Result: map[string]string{"id": "1"}})
		}); err != nil {
			t.Fatal(err)
		}
		return claimed
	}
	if c := finish("p1", other); *c.Subject != "resident:a" {
		t.Fatalf("the claim took the task's subject over the record's: %s", *c.Subject)
	}
	r, err := repo.GetRequest(ctx, st.DB, "p1")
	if err != nil || r.Status != repo.RequestApplied || r.TaskPayload != nil {
		t.Fatalf("finished: %+v %v, want applied without its payload", r, err)
	}
	if got, err := repo.StrandedRequests(ctx, st.DB, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("a finished request is stranded: %+v %v", got, err)
	}
	// No record: the claim makes the row, with who asked.
	if c := finish("p2", other); c.Subject == nil || *c.Subject != other {
		t.Fatalf("claimed without a record: %+v", c)
	}
	r, err = repo.GetRequest(ctx, st.DB, "p2")
	if err != nil || r.Subject == nil || *r.Subject != other || r.Status != repo.RequestApplied {
		t.Fatalf("row the claim made: %+v %v", r, err)
	}
	// The intake recording it after the worker finished meets the outcome.
	r, created, err := repo.RegisterRequest(ctx, st.DB, "p2", "session:start", "fp", other, payload)
	if err != nil || created || r.Status != repo.RequestApplied || r.TaskPayload != nil {
		t.Fatalf("register after the outcome: %+v %v %v", r, created, err)
	}
}

// TestSessionHolder: the intake's one read before a write on a session: its
// permit and who holds it; a session that does not exist is ErrNotFound.
func TestSessionHolder(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, p, s := eventWorld(t, now)
	permitID, holder, err := repo.SessionHolder(w.ctx, w.store.DB, s.ID)
	if err != nil || permitID != p.ID || holder != p.ResidentID {
		t.Fatalf("SessionHolder = %d %q %v, want %d %q", permitID, holder, err, p.ID, p.ResidentID)
	}
	if _, _, err := repo.SessionHolder(w.ctx, w.store.DB, s.ID+1000); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("SessionHolder of no session: %v, want ErrNotFound", err)
	}
}

// TestPreparedStatementsSurviveAnAddedColumn: a migration that adds a column
// (deploy/README.md: migrations keep working with the previous release's
// code) changes nothing for the prepared statements of the hot path, whether
// a connection prepared them before the column came or after: they name
// their columns (columns in prepared.go), so bun is never handed one its
// model lacks and Postgres never sees a prepared result change its type.
func TestPreparedStatementsSurviveAnAddedColumn(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, p, _ := eventWorld(t, now)
	st := w.store
	round := func(n int) {
		t.Helper()
		id := fmt.Sprintf("col-%d", n)
		plate := fmt.Sprintf("COL%d", n)
		err := st.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
			if _, err := repo.ClaimRequest(ctx, tx, id, "session:start", "fp", nil); err != nil {
				return err
			}
			locked, sid, err := repo.LockPermitForStart(ctx, tx, p.ID)
			if err != nil {
				return err
			}
			plan := domain.SessionPlan{Plate: plate, Country: "NL", StartAt: now, PlannedEndAt: now.Add(time.Hour), ReservedMinutes: 60}
			s, b := repo.StartSession(locked, sid, plan, nil, id, now)
			if err := repo.FinishRequest(ctx, tx, id, repo.Finish{Type: "session:start", BodyHash: "fp", Status: repo.RequestApplied, Result: s.View(now), Booking: &b,
				Events: []*repo.Event{repo.SessionEvent(jobs.EventSessionStarted, s, now, &id, "")}}); err != nil {
				return err
			}
			_, _, err = repo.LockSessionAndPermit(ctx, tx, s.ID)
			return err
		})
		if err != nil {
			t.Fatalf("round %d: %v", n, err)
		}
		if r, err := repo.GetRequest(w.ctx, st.DB, id); err != nil || r.Status != repo.RequestApplied {
			t.Fatalf("round %d: request %+v %v", n, r, err)
		}
	}
	round(1)
	for _, table := range []string{"requests", "sessions", "permits", "events", "webhooks", "webhook_deliveries", "ledger"} {
		if _, err := st.DB.ExecContext(w.ctx, "ALTER TABLE "+table+" ADD COLUMN added_later int"); err != nil {
			t.Fatal(err)
		}
	}
	for n := 2; n <= 8; n++ { // past the five runs after which Postgres keeps a generic plan
		round(n)
	}
	// The other writes that read back their row: an issue and a top-up, a
	// webhook.
	p2 := w.permit("EV", now, 60)
	if err := repo.ApplyTopup(w.ctx, st.DB, p2, domain.Topup{Minutes: 60, Cents: 60}, "col-pay", "col-topup", now); err != nil {
		t.Fatalf("top-up after the added column: %v", err)
	}
	if _, err := repo.PutWebhook(w.ctx, st.DB, &repo.Webhook{Name: "col", URL: "http://127.0.0.1:1/", Secret: "whsec_" + strings.Repeat("A", 32), Active: true}); err != nil {
		t.Fatalf("put webhook after the added column: %v", err)
	}
	if _, err := repo.GetWebhook(w.ctx, st.DB, "col"); err != nil {
		t.Fatalf("get webhook after the added column: %v", err)
	}
	w.checkLedger()
}

// TestFinishRequestWritesTheRowOnce: a request's row is written with its
// outcome, claimed or not; a row already there is finished only when it is
// the same request, pending, and (a 202's record) the same task. Otherwise
// the statement writes nothing at all (no outcome, event, ledger entry nor
// permit change) and says ErrRequestKnown.
func TestFinishRequestWritesTheRowOnce(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	task := []byte(`{"request_id":"x","plate":"AB12CD"}`)
	cases := []struct {
		name    string
		before  func(ctx context.Context, st *repo.Store, id string) error // what is recorded under id first
		typ, fp string
		payload []byte
		known   bool
	}{
		{name: "no row: inserted with the outcome", typ: "session:start", fp: "fp", payload: task},
		{name: "the intake's record of the same task: finished", typ: "session:start", fp: "fp", payload: task,
			before: func(ctx context.Context, st *repo.Store, id string) error {
				_, _, err := repo.RegisterRequest(ctx, st.DB, id, "session:start", "fp", "resident:R1", task)
				return err
			}},
		{name: "the intake's record, decided outside a task: finished", typ: "session:start", fp: "fp",
			before: func(ctx context.Context, st *repo.Store, id string) error {
				_, _, err := repo.RegisterRequest(ctx, st.DB, id, "session:start", "fp", "resident:R1", task)
				return err
			}},
		{name: "the intake's record of another task (a repeat's receipt): known", typ: "session:start", fp: "fp", payload: []byte(`{"other":1}`), known: true,
			before: func(ctx context.Context, st *repo.Store, id string) error {
				_, _, err := repo.RegisterRequest(ctx, st.DB, id, "session:start", "fp", "resident:R1", task)
				return err
			}},
		{name: "another fingerprint under the ID: known", typ: "session:start", fp: "other", payload: task, known: true,
			before: func(ctx context.Context, st *repo.Store, id string) error {
				_, _, err := repo.RegisterRequest(ctx, st.DB, id, "session:start", "fp", "resident:R1", task)
				return err
			}},
		{name: "another type under the ID: known", typ: "session:stop", fp: "fp", payload: task, known: true,
			before: func(ctx context.Context, st *repo.Store, id string) error {
				_, _, err := repo.RegisterRequest(ctx, st.DB, id, "session:start", "fp", "resident:R1", task)
				return err
			}},
		{name: "already finished: known", typ: "session:start", fp: "fp", payload: task, known: true,
			before: func(ctx context.Context, st *repo.Store, id string) error {
				return st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error {
					return repo.FinishRequest(ctx, tx, id, repo.Finish{Type: "session:start", BodyHash: "fp", Status: repo.RequestApplied, Result: map[string]string{"id": "0"}})
				})
			}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			w, p, _ := eventWorld(t, now)
			id := fmt.Sprintf("once-%d", i)
			if c.before != nil {
				if err := c.before(w.ctx, w.store, id); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := repo.GetRequest(w.ctx, w.store.DB, id)
			reserved := w.reload(p).ReservedMinutes
			subject := "resident:R1"
			var started *repo.Session
			err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
				locked, sid, err := repo.LockPermitForStart(ctx, tx, p.ID)
				if err != nil {
					return err
				}
				plan := domain.SessionPlan{Plate: "ONCE1", Country: "NL", StartAt: now, PlannedEndAt: now.Add(time.Hour), ReservedMinutes: 60}
				s, b := repo.StartSession(locked, sid, plan, nil, id, now)
				started = s
				return repo.FinishRequest(ctx, tx, id, repo.Finish{Type: c.typ, BodyHash: c.fp, Subject: &subject, TaskPayload: c.payload,
					Status: repo.RequestApplied, Result: s.View(now), Booking: &b,
					Events: []*repo.Event{repo.SessionEvent(jobs.EventSessionStarted, s, now, &id, "")}})
			})
			got, gerr := repo.GetRequest(w.ctx, w.store.DB, id)
			if c.known {
				if !errors.Is(err, repo.ErrRequestKnown) {
					t.Fatalf("finish: %v, want ErrRequestKnown", err)
				}
				// The transaction was rolled back: the row is as it was.
				if gerr != nil || got.Status != before.Status || got.Type != before.Type || got.BodyHash != before.BodyHash {
					t.Fatalf("row after a refused finish: %+v %v (before %+v)", got, gerr, before)
				}
				if r := w.reload(p); r.ReservedMinutes != reserved {
					t.Fatalf("reserved %d after a refused finish, was %d", r.ReservedMinutes, reserved)
				}
				return
			}
			if err != nil {
				t.Fatalf("finish: %v", err)
			}
			if gerr != nil || got.Status != repo.RequestApplied || got.TaskPayload != nil || got.Subject == nil || *got.Subject != subject {
				t.Fatalf("row: %+v %v", got, gerr)
			}
			if ev := w.events("request_id = ?", id); len(ev) != 1 {
				t.Fatalf("events: %d, want 1", len(ev))
			}
			if r := w.reload(p); r.ReservedMinutes != reserved+60 || started == nil {
				t.Fatalf("reservation not booked: %+v", r)
			}
			w.checkLedger()
		})
	}
}

// TestFinishRequestOfATwiceDecidedRequest: two transactions deciding the
// same request at once (a retry beside the first delivery) cannot both
// finish it: the second waits for the first on the row's key, then finds it
// finished and writes nothing.
func TestFinishRequestOfATwiceDecidedRequest(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	first, err := st.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	finish := func(tx bun.IDB) error {
		return repo.FinishRequest(ctx, tx, "twice", repo.Finish{Type: "permit:end", BodyHash: "fp", Status: repo.RequestApplied, Result: map[string]string{"id": "1"}})
	}
	if err := finish(first); err != nil {
		t.Fatal(err)
	}
	second := make(chan error, 1)
	go func() {
		second <- st.InTx(ctx, func(ctx context.Context, tx repo.Tx) error { return finish(tx) })
	}()
	select {
	case err := <-second:
		t.Fatalf("the second finished before the first committed: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-second; !errors.Is(err, repo.ErrRequestKnown) {
		t.Fatalf("second finish: %v, want ErrRequestKnown", err)
	}
}

// TestFinishRequestOfAStartWhosePlateIsParked: a start's session is
// inserted by the outcome's own statement; when the plate's exclusion
// constraint refuses it, the statement writes nothing (no session, request
// row, event, ledger entry or permit change) and says ErrPlateParked, and
// the transaction can still record the rejection.
func TestFinishRequestOfAStartWhosePlateIsParked(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, p, _ := eventWorld(t, now) // AB12CD is parked on p from now for an hour
	before := w.reload(p)
	id := "parked-again"
	sessions := func() int {
		n, err := w.store.DB.NewSelect().Model((*repo.Session)(nil)).Count(w.ctx)
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	nSessions := sessions()
	var parked error
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		locked, sid, err := repo.LockPermitForStart(ctx, tx, p.ID)
		if err != nil {
			return err
		}
		plan := domain.SessionPlan{Plate: "AB12CD", Country: "NL", StartAt: now.Add(10 * time.Minute), PlannedEndAt: now.Add(30 * time.Minute), ReservedMinutes: 20}
		s, b := repo.StartSession(locked, sid, plan, nil, id, now)
		parked = repo.FinishRequest(ctx, tx, id, repo.Finish{Type: "session:start", BodyHash: "fp", Status: repo.RequestApplied,
			Result: s.View(now), Booking: &b, Events: []*repo.Event{repo.SessionEvent(jobs.EventSessionStarted, s, now, &id, "")}})
		if !errors.Is(parked, repo.ErrPlateParked) {
			return fmt.Errorf("finish: %v, want ErrPlateParked", parked)
		}
		if n := len(w.events("request_id = ?", id)); n != 0 {
			return fmt.Errorf("%d events written by the refused start", n)
		}
		return repo.FinishRequest(ctx, tx, id, repo.Finish{Type: "session:start", BodyHash: "fp", Status: repo.RequestRejected,
			Rejection: &jobs.Rejection{Code: "plate_already_parked", Message: "parked"}, At: now, PermitID: repo.FormatID(p.ID)})
	})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := repo.GetRequest(w.ctx, w.store.DB, id); err != nil || r.Status != repo.RequestRejected {
		t.Fatalf("request: %+v %v, want rejected", r, err)
	}
	if n := sessions(); n != nSessions {
		t.Errorf("sessions: %d, want %d", n, nSessions)
	}
	if after := w.reload(p); after.BalanceMinutes != before.BalanceMinutes || after.ReservedMinutes != before.ReservedMinutes {
		t.Errorf("permit changed: %+v, was %+v", after, before)
	}
	w.checkLedger()
}
