package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestOneStatementOfManyOutcomes: a shared transaction's held outcomes are
// written by one statement (finish.go), and each unit must come out of it as
// it would alone: a start whose plate is parked writes nothing of itself and
// is ErrPlateParked, a request ID already finished writes nothing and is
// ErrRequestKnown, and neither touches the others; two starts of one plate
// in the statement park once; two bookings on one permit both count (a
// set-wise UPDATE that met its row twice would count one); events follow the
// units' order; every outbox row has its ID.
func TestOneStatementOfManyOutcomes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, _, _ := eventWorld(t, now) // AB12CD is parked
	p2 := w.permit("EV", now, 600)
	p3 := w.permit("EV", now, 600)
	p4 := w.permit("EV", now, 600)
	if err := w.finish("known", jobs.TypeSessionStart, repo.Finish{Status: repo.RequestApplied, Result: map[string]string{}}); err != nil {
		t.Fatal(err)
	}
	var ids []string
	var fs []repo.Finish
	var started []*repo.Session
	add := func(id string, f repo.Finish) {
		f.Type, f.BodyHash = jobs.TypeSessionStart, "fp-"+id
		ids, fs = append(ids, id), append(fs, f)
	}
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		start := func(id string, p *repo.Permit, plate string, outbox bool) {
			locked, sid, err := repo.LockPermitForStart(ctx, tx, p.ID)
			if err != nil {
				t.Fatal(err)
			}
			plan := domain.SessionPlan{Plate: plate, Country: "NL", StartAt: now, PlannedEndAt: now.Add(30 * time.Minute), ReservedMinutes: 30}
			s, b := repo.StartSession(locked, sid, plan, nil, id, now)
			f := repo.Finish{Status: repo.RequestApplied, Result: s.View(now), Booking: &b,
				Events: []*repo.Event{repo.SessionEvent(jobs.EventSessionStarted, s, now, &id, "")}}
			if outbox {
				f.Outbox = []*repo.OutboxTask{{TaskType: jobs.TypeSessionAutoStop, TaskID: "autostop:" + id, Queue: jobs.QueueCritical,
					Payload: json.RawMessage(`{}`), ProcessAt: now}}
			}
			add(id, f)
			started = append(started, s)
		}
		start("u1", p2, "CD34EF", true)
		start("u2", p3, "AB12CD", false) // parked already
		add("u3", repo.Finish{Status: repo.RequestRejected, Rejection: &jobs.Rejection{Code: "rule", Message: "no"},
			At: now, PermitID: repo.FormatID(p2.ID)})
		add("known", repo.Finish{Status: repo.RequestApplied, Result: map[string]string{}})
		start("u5", p4, "GH56IJ", true)
		start("u6", p4, "KL78MN", false) // the same permit as u5
		start("u7", p3, "GH56IJ", false) // the plate u5 parks
		errs, err := repo.FinishUnits(ctx, tx, ids, fs)
		if err != nil {
			return err
		}
		want := map[string]error{"u2": repo.ErrPlateParked, "known": repo.ErrRequestKnown, "u7": repo.ErrPlateParked}
		for i, id := range ids {
			if w := want[id]; (w == nil) != (errs[i] == nil) || (w != nil && !errors.Is(errs[i], w)) {
				return fmt.Errorf("unit %s: %v, want %v", id, errs[i], w)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"u1", "u3", "u5", "u6"} {
		if r, err := repo.GetRequest(w.ctx, w.store.DB, id); err != nil || r.Status == repo.RequestPending {
			t.Errorf("request %s: %+v %v, want finished", id, r, err)
		}
	}
	for _, id := range []string{"u2", "u7"} {
		if _, err := repo.GetRequest(w.ctx, w.store.DB, id); !errors.Is(err, repo.ErrNotFound) {
			t.Errorf("request %s of a parked plate: %v, want none", id, err)
		}
		if n := len(w.events("request_id = ?", id)); n != 0 {
			t.Errorf("request %s of a parked plate: %d events", id, n)
		}
	}
	// Events in the units' order: u1's start, u3's rejection, u5's, u6's.
	var got []string
	for _, e := range w.events("request_id IN (?, ?, ?, ?)", "u1", "u3", "u5", "u6") {
		got = append(got, *e.RequestID+" "+e.Type)
		if *e.RequestID == "u3" && (e.PermitID == nil || *e.PermitID != p2.ID) {
			t.Errorf("the rejection's event names permit %v, want %d", e.PermitID, p2.ID)
		}
	}
	if want := fmt.Sprint([]string{"u1 session.started", "u3 request.rejected", "u5 session.started", "u6 session.started"}); fmt.Sprint(got) != want {
		t.Errorf("events %v, want %s", got, want)
	}
	for _, f := range []repo.Finish{fs[0], fs[4]} {
		if f.Outbox[0].ID == 0 {
			t.Errorf("outbox row %s has no ID", f.Outbox[0].TaskID)
		}
	}
	if p := w.reload(p4); p.BalanceMinutes != 540 || p.ReservedMinutes != 60 {
		t.Errorf("permit of two starts in one statement: balance %d reserved %d, want 540 and 60", p.BalanceMinutes, p.ReservedMinutes)
	}
	if p := w.reload(p3); p.BalanceMinutes != 600 || p.ReservedMinutes != 0 {
		t.Errorf("permit of the parked starts: balance %d reserved %d, want 600 and 0", p.BalanceMinutes, p.ReservedMinutes)
	}
	w.checkLedger()
}

// TestPrelocksAreLookupsWhateverTheTablesHold: a shared transaction locks its
// units' rows in one statement per kind (prelock.go), prepared once per
// connection. Its generic plan, made on tables as they are then (here empty
// and never analyzed, as on a fresh database where autovacuum is off), must
// be a lookup by primary key per ID: a scan of the table would be kept as
// the table grows, and read all of it for every batch.
func TestPrelocksAreLookupsWhateverTheTablesHold(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	starts, stops := repo.PrelockQueries(st.DB)
	for name, q := range map[string]string{"starts": starts, "stops": stops} {
		text := genericPlan(t, st, q, []string{"int8[]"}, "'{1,2,3}'")
		if strings.Contains(text, "Seq Scan") || !strings.Contains(text, "Index Scan using permits_pkey") {
			t.Errorf("the %s' prelock is not a lookup by primary key per ID:\n%s", name, text)
		}
	}
}

// TestHeldOutcomesAreLookupsWhateverTheTablesHold: the statement of a
// batch's held outcomes (finish.go) is prepared once per connection too;
// its generic plan, made on empty tables never analyzed, must reach every
// row of the tables that grow with every request by an index: a scan of
// sessions, say, would be kept as they grow. (Permits are not among them:
// they grow with issues, not with parking, so a plan made on them is made
// on about the number they will have; on an empty permits table Postgres
// does plan the counters' update as a scan.)
func TestHeldOutcomesAreLookupsWhateverTheTablesHold(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	q, types := repo.FinishQuery()
	text := genericPlan(t, st, q, types, strings.TrimSuffix(strings.Repeat("NULL, ", len(types)), ", "))
	for _, table := range []string{"sessions", "requests", "ledger", "events", "outbox"} {
		if strings.Contains(text, "Seq Scan on "+table) {
			t.Errorf("the held outcomes' statement scans %s:\n%s", table, text)
		}
	}
}

// genericPlan is the plan Postgres keeps for q (with parameters of types)
// once it plans it generically, as it does for a statement prepared once
// per connection, on st's tables as they are; args are the arguments of the
// EXPLAIN EXECUTE.
func genericPlan(t *testing.T, st *repo.Store, q string, types []string, args string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := st.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The connection goes back to the pool as it came.
	defer conn.ExecContext(ctx, "DISCARD ALL") //nolint:errcheck
	if _, err := conn.ExecContext(ctx, "SET plan_cache_mode = force_generic_plan"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(ctx, "PREPARE q("+strings.Join(types, ", ")+") AS "+q); err != nil {
		t.Fatal(err)
	}
	var plan []string
	if err := conn.NewRaw("EXPLAIN EXECUTE q("+args+")").Scan(ctx, &plan); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
