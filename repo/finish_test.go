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

// TestHeldOutcomesFindTheirRowsAsTablesGrow: the statement of a batch's
// held outcomes (finish.go) is prepared once per connection too. Its generic
// plan, made on empty tables never analyzed (a fresh database where
// autovacuum is off), is kept as the tables grow: a stop run after 20,000
// open sessions were added must still reach its session and its permit by a
// lookup (an index or the row's address), not read every open session (as a
// join of the array with sessions was planned; a colleague's review found
// it), nor scan the tables that grow with every request.
func TestHeldOutcomesFindTheirRowsAsTablesGrow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w := newWorld(t)
	w.zone("EV", "Europe/Amsterdam", "01-01")
	p := w.permit("EV", now, 600)
	ctx := context.Background()
	conn, err := w.store.DB.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	defer conn.ExecContext(ctx, "DISCARD ALL") //nolint:errcheck
	q, types := repo.FinishQuery()
	args := make([]string, len(types))
	for i := range args {
		args[i] = "NULL"
	}
	for _, s := range []string{"SET plan_cache_mode = force_generic_plan", "PREPARE q(" + strings.Join(types, ", ") + ") AS " + q,
		// The plan is made at the first EXECUTE, on empty tables.
		"EXPLAIN EXECUTE q(" + strings.Join(args, ", ") + ")"} {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.ExecContext(ctx, `INSERT INTO sessions (permit_id, zone, plate, country, state, start_at, planned_end_at, reserved_minutes, request_id)
		SELECT ?, 'EV', 'P' || g, 'NL', 'open', ?::timestamptz, ?::timestamptz + interval '1 hour', 60, 'bulk' || g
		FROM generate_series(1, 20000) g`, p.ID, now, now); err != nil {
		t.Fatal(err)
	}
	var sid int64
	if err := conn.NewRaw("SELECT max(id) FROM sessions").Scan(ctx, &sid); err != nil {
		t.Fatal(err)
	}
	// One stop: its request, settlement and booking ($1-$13, $28-$46).
	ts := "'{\"" + now.Format(time.RFC3339) + "\"}'"
	for n, v := range map[int]string{1: "'{s1}'", 2: "'{applied}'", 4: `'{"{}"}'`, 5: "'{session:stop}'", 6: "'{fp}'",
		9: "'{f}'", 10: "'{f}'", 11: ts,
		28: "'{1}'", 29: fmt.Sprintf("'{%d}'", sid), 30: "'{stopped}'", 31: ts, 32: "'{0}'", 33: ts,
		34: "'{1}'", 35: fmt.Sprintf("'{%d}'", p.ID), 36: fmt.Sprintf("'{%d}'", sid), 37: "'{s1}'", 38: ts,
		39: "'{0}'", 40: "'{0}'", 41: "'{0}'", 42: "'{t}'", 43: "'{f}'", 44: "'{1}'", 45: "'{release}'", 46: "'{0}'"} {
		args[n-1] = v
	}
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		t.Fatal(err)
	}
	defer conn.ExecContext(ctx, "ROLLBACK") //nolint:errcheck
	var plan []string
	if err := conn.NewRaw("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) EXECUTE q("+strings.Join(args, ", ")+")").Scan(ctx, &plan); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "Update on sessions (actual rows=1") {
		t.Fatalf("the stop settled nothing:\n%s", text)
	}
	for i, l := range plan {
		if !strings.Contains(l, "Scan") || !(strings.Contains(l, " on sessions") || strings.Contains(l, " on permits")) {
			continue
		}
		if strings.Contains(l, "Seq Scan") || i+1 == len(plan) ||
			!(strings.Contains(plan[i+1], "Index Cond") || strings.Contains(plan[i+1], "TID Cond")) {
			t.Errorf("a row of the held outcomes found by a scan, not a lookup:\n%s\n\n%s", l, text)
		}
	}
	for _, table := range []string{"requests", "ledger", "events", "outbox"} {
		if strings.Contains(text, "Seq Scan on "+table) {
			t.Errorf("the held outcomes' statement scans %s:\n%s", table, text)
		}
	}
}

// A stop that settles a plate's session and a start of the plate on another
// permit, in one statement: the settlement is written first, so the start
// finds the plate free, as it would after the stop alone.
func TestAStopThenAStartOfItsPlateInOneStatement(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, _, s := eventWorld(t, now) // AB12CD open
	p2 := w.permit("EV", now, 600)
	later := now.Add(10 * time.Minute)
	err := w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		ss, sp, err := repo.LockSessionAndPermit(ctx, tx, s.ID)
		if err != nil {
			return err
		}
		plan, err := domain.PlanStop(ss.DomainState(), domain.StopRequest{ReceivedAt: later}, later)
		if err != nil {
			return err
		}
		b := repo.Settle(sp, ss, plan, new("stop1"), later)
		stop := repo.Finish{Type: jobs.TypeSessionStop, BodyHash: "fp1", Status: repo.RequestApplied, Result: map[string]string{}, Booking: &b}
		locked, sid, err := repo.LockPermitForStart(ctx, tx, p2.ID)
		if err != nil {
			return err
		}
		s2, b2 := repo.StartSession(locked, sid, domain.SessionPlan{Plate: "AB12CD", Country: "NL", StartAt: later,
			PlannedEndAt: later.Add(30 * time.Minute), ReservedMinutes: 30}, nil, "start2", later)
		start := repo.Finish{Type: jobs.TypeSessionStart, BodyHash: "fp2", Status: repo.RequestApplied, Result: s2.View(later), Booking: &b2,
			Events: []*repo.Event{repo.SessionEvent(jobs.EventSessionStarted, s2, later, new("start2"), "")}}
		errs, err := repo.FinishUnits(ctx, tx, []string{"stop1", "start2"}, []repo.Finish{stop, start})
		if err != nil {
			return err
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Fatalf("a stop then a start of its plate in one statement: %v", err)
	}
	w.checkLedger()
}

// Units are matched to what was written of them by their place, never by
// request ID: a start refused as parked writes nothing, even beside another
// unit under its ID (which the flush refuses as a whole).
func TestARefusedUnitWritesNothingBesideItsID(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, _, _ := eventWorld(t, now) // AB12CD parked
	p2 := w.permit("EV", now, 600)
	_ = w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		locked, sid, err := repo.LockPermitForStart(ctx, tx, p2.ID)
		if err != nil {
			t.Fatal(err)
		}
		s, b := repo.StartSession(locked, sid, domain.SessionPlan{Plate: "AB12CD", Country: "NL", StartAt: now,
			PlannedEndAt: now.Add(30 * time.Minute), ReservedMinutes: 30}, nil, "r", now)
		parked := repo.Finish{Type: jobs.TypeSessionStart, BodyHash: "fa", Status: repo.RequestApplied, Result: s.View(now), Booking: &b,
			Outbox: []*repo.OutboxTask{{TaskType: jobs.TypeSessionAutoStop, TaskID: "autostop:ghost", Queue: jobs.QueueCritical,
				Payload: []byte(`{}`), ProcessAt: now}}}
		other := repo.Finish{Type: jobs.TypeSessionStop, BodyHash: "fb", Status: repo.RequestApplied, Result: map[string]string{}}
		if _, err := repo.FinishUnits(ctx, tx, []string{"r", "r"}, []repo.Finish{parked, other}); !errors.Is(err, repo.ErrRequestKnown) {
			t.Errorf("one request ID twice in one statement: %v, want ErrRequestKnown", err)
		}
		// And alone, each unit keyed by its place: the parked one writes nothing.
		errs, err := repo.FinishUnits(ctx, tx, []string{"r", "q"}, []repo.Finish{parked, other})
		if err != nil || !errors.Is(errs[0], repo.ErrPlateParked) || errs[1] != nil {
			t.Fatalf("errs %v, err %v", errs, err)
		}
		var n int
		if err := tx.NewRaw("SELECT count(*) FROM outbox WHERE task_id = 'autostop:ghost'").Scan(ctx, &n); err != nil || n != 0 {
			t.Errorf("%d outbox rows (%v) of a start refused as parked", n, err)
		}
		return errors.New("roll back")
	})
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

// stopsOf locks session id in tx and returns it with a maker of stop
// outcomes of it at at, one per request ID (with its session.stopped event
// when events): each settles the session as a stop received at at would.
func stopsOf(ctx context.Context, t *testing.T, tx repo.Tx, id int64, at time.Time, events bool) (*repo.Session, func(id string) repo.Finish) {
	t.Helper()
	ss, sp, err := repo.LockSessionAndPermit(ctx, tx, id)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := domain.PlanStop(ss.DomainState(), domain.StopRequest{ReceivedAt: at}, at)
	if err != nil {
		t.Fatal(err)
	}
	return ss, func(rid string) repo.Finish {
		b := repo.Settle(sp, ss, plan, new(rid), at)
		f := repo.Finish{Type: jobs.TypeSessionStop, BodyHash: "fp-" + rid, Status: repo.RequestApplied, Result: map[string]string{}, Booking: &b}
		if events {
			f.Events = []*repo.Event{repo.SessionEvent(jobs.EventSessionStopped, ss, at, new(rid), "manual")}
		}
		return f
	}
}

// Two settlements of one session in one statement would settle it once and
// book both (the permit's release and charge counted twice); a session is one
// unit's per batch (Tx.hold), and the statement refuses it all the same, as
// it refuses a booking that both starts and settles (a colleague's review).
func TestOneSessionSettledTwiceInOneStatementIsRefused(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, _, s := eventWorld(t, now)
	later := now.Add(10 * time.Minute)
	_ = w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		ss, stop := stopsOf(ctx, t, tx, s.ID, later, false)
		if _, err := repo.FinishUnits(ctx, tx, []string{"a", "b"}, []repo.Finish{stop("a"), stop("b")}); err == nil || !strings.Contains(err.Error(), "settled twice") {
			t.Errorf("one session settled by two units of a statement: %v, want refused", err)
		}
		both := stop("c")
		both.Booking.Start = ss
		if _, err := repo.FinishUnits(ctx, tx, []string{"c"}, []repo.Finish{both}); err == nil {
			t.Error("a booking that starts and settles: written, want refused")
		}
		return errors.New("roll back")
	})
}

// A settlement that finds its session no longer open is refused as that
// (Booking.refused), as it was before outcomes were written set-wise: the
// count of the statement's events, which includes the refused unit's (they
// ride with its request's row), must not speak over it.
func TestASettlementOfASessionNoLongerOpenSaysSo(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 1, 10, 0, 0, 0, time.UTC)
	w, _, s := eventWorld(t, now)
	later := now.Add(10 * time.Minute)
	_ = w.store.InTx(w.ctx, func(ctx context.Context, tx repo.Tx) error {
		_, stop := stopsOf(ctx, t, tx, s.ID, later, true)
		if errs, err := repo.FinishUnits(ctx, tx, []string{"a"}, []repo.Finish{stop("a")}); err != nil || errs[0] != nil {
			t.Fatalf("the first stop: %v %v", errs, err)
		}
		errs, err := repo.FinishUnits(ctx, tx, []string{"b"}, []repo.Finish{stop("b")})
		if err != nil || errs[0] == nil || !strings.Contains(errs[0].Error(), "not open") {
			t.Errorf("a second settlement of the session: %v, %v; want its refusal (not open)", errs, err)
		}
		return errors.New("roll back")
	})
}

// A settlement that Book writes alone (an auto-stop, a permit's end) finds
// its session by a lookup of its ID and updates it by its row's address,
// whatever the tables held when its generic plan was made: planned on
// empty tables, "id = $7 AND state = 'open'" in one WHERE chose the open
// sessions' partial index and filtered it for the ID, reading every open
// session at each settlement once the table had grown (a colleague's
// review, issue 16).
func TestBookedSettlementIsALookupWhateverTheTablesHold(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	q, types := repo.BookQuery(st.DB)
	args := make([]string, len(types))
	for i := range args {
		args[i] = "NULL"
	}
	text := genericPlan(t, st, q, types, strings.Join(args, ", "))
	for _, bad := range []string{"Seq Scan on sessions", "sessions_open_by_end", "sessions_plate_not_parked_twice", "sessions_rights"} {
		if strings.Contains(text, bad) {
			t.Errorf("the settlement reads %s:\n%s", bad, text)
		}
	}
	if !strings.Contains(text, "Index Scan using sessions_pkey") || !strings.Contains(text, "Tid Scan on sessions") {
		t.Errorf("the settlement is not a lookup by ID and an update by address:\n%s", text)
	}
}
