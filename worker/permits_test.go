package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

// lifecycle is the harness with a clock the test moves, and requests stamped as
// received at that clock's instant (as the intake would stamp them).
type lifecycle struct {
	*harness
	clk *testClock
}

func withClock(e *harness, at time.Time) *lifecycle {
	clk := newTestClock(repo.Instant(at))
	e.h.Clock = clk
	return &lifecycle{harness: e, clk: clk}
}

func mustLoc(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func (l *lifecycle) zone(code string, spec domain.ZoneSpec) {
	l.t.Helper()
	if spec.InvalidWeekdays == nil {
		spec.InvalidWeekdays = []string{} // tests run on any day
	}
	z, err := domain.CompileZone(code, spec)
	if err != nil {
		l.t.Fatal(err)
	}
	if err := repo.PutZone(l.ctx, l.store.DB, z); err != nil {
		l.t.Fatal(err)
	}
}

// address registers a fresh address in zone.
func (l *lifecycle) address(zone string) string {
	l.t.Helper()
	id := rid("A")
	if err := repo.PutAddress(l.ctx, l.store.DB, &repo.Address{ID: id, Zone: &zone}); err != nil {
		l.t.Fatal(err)
	}
	return id
}

// resident registers a fresh resident at addr.
func (l *lifecycle) resident(addr string) string {
	l.t.Helper()
	id := rid("R")
	if _, err := repo.PutRegistration(l.ctx, l.store.DB, &repo.Registration{ResidentID: id, AddressID: addr}); err != nil {
		l.t.Fatal(err)
	}
	return id
}

func (l *lifecycle) issueTask(resident, addr string) (*asynq.Task, string) {
	l.t.Helper()
	id := rid("issue")
	task, err := jobs.NewPermitIssue(jobs.PermitIssue{RequestID: id, ResidentID: resident, AddressID: addr, ReceivedAt: l.clk.now()})
	if err != nil {
		l.t.Fatal(err)
	}
	return task, id
}

func (l *lifecycle) topupTask(permitID string, hours int, ref string) (*asynq.Task, string) {
	l.t.Helper()
	id := rid("topup")
	task, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: id, PermitID: permitID, Hours: hours, PaymentRef: ref, ReceivedAt: l.clk.now()})
	if err != nil {
		l.t.Fatal(err)
	}
	return task, id
}

func (l *lifecycle) endTask(permitID string, at *time.Time, reason string) (*asynq.Task, string) {
	l.t.Helper()
	id := rid("end")
	task, err := jobs.NewPermitEnd(jobs.PermitEnd{RequestID: id, PermitID: permitID, At: at, Reason: reason, ReceivedAt: l.clk.now()})
	if err != nil {
		l.t.Fatal(err)
	}
	return task, id
}

func (l *lifecycle) sessionTask(permitID, plate string, start, end *time.Time) (*asynq.Task, string) {
	l.t.Helper()
	id := rid("start")
	task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: id, PermitID: permitID, Plate: plate, StartAt: start, EndAt: end, ReceivedAt: l.clk.now()})
	if err != nil {
		l.t.Fatal(err)
	}
	return task, id
}

// newPermit issues a permit at a fresh address of zone and buys hours on it,
// straight through the handlers.
func (l *lifecycle) newPermit(zone string, hours int) jobs.Permit {
	l.t.Helper()
	addr := l.address(zone)
	task, _ := l.issueTask(l.resident(addr), addr)
	var pv jobs.Permit
	if r := l.run(task, l.h.PermitIssue, &pv); r.Status != repo.RequestApplied {
		l.t.Fatalf("issue: %s %s", r.Status, r.Error)
	}
	if hours > 0 {
		pv = l.mustTopup(pv.ID, hours)
	}
	return pv
}

func (l *lifecycle) mustTopup(permitID string, hours int) jobs.Permit {
	l.t.Helper()
	task, _ := l.topupTask(permitID, hours, rid("pay"))
	var pv jobs.Permit
	if r := l.run(task, l.h.PermitTopup, &pv); r.Status != repo.RequestApplied {
		l.t.Fatalf("top-up of %d hours: %s %s", hours, r.Status, r.Error)
	}
	return pv
}

func (l *lifecycle) mustStart(permitID, plate string, start, end *time.Time) jobs.Session {
	l.t.Helper()
	task, _ := l.sessionTask(permitID, plate, start, end)
	var s jobs.Session
	if r := l.run(task, l.h.SessionStart, &s); r.Status != repo.RequestApplied {
		l.t.Fatalf("start %s: %s %s", plate, r.Status, r.Error)
	}
	return s
}

func (l *lifecycle) statements(permitID string) []jobs.Statement {
	l.t.Helper()
	n, _ := repo.ParseID(permitID)
	st, err := repo.PermitStatements(l.ctx, l.store.DB, n)
	if err != nil {
		l.t.Fatal(err)
	}
	return st
}

func (l *lifecycle) ledger(permitID string) []repo.LedgerEntry {
	l.t.Helper()
	n, _ := repo.ParseID(permitID)
	var rows []repo.LedgerEntry
	if err := l.store.DB.NewSelect().Model(&rows).Where("permit_id = ?", n).OrderExpr("id").Scan(l.ctx); err != nil {
		l.t.Fatal(err)
	}
	return rows
}

// rejection is the code of a rejected request's outcome, "" when it was applied.
func rejection(t testing.TB, r *repo.Request) string {
	t.Helper()
	if r.Status == repo.RequestApplied {
		return ""
	}
	var out jobs.Rejection
	if err := json.Unmarshal(r.Error, &out); err != nil {
		t.Fatalf("outcome %s %s: %v", r.Status, r.Error, err)
	}
	return out.Code
}

func wantRejected(t testing.TB, r *repo.Request, code domain.Code) {
	t.Helper()
	if got := rejection(t, r); got != string(code) {
		t.Fatalf("outcome %s %s, want rejected %s", r.Status, r.Error, code)
	}
}

// Two issues for one address at once, for two residents registered there: one
// permit, and the other request is permit_exists_for_address (never an error
// that asynq would retry). Repeated over several addresses to give the race a
// chance on every run.
func TestConcurrentIssuesForOneAddress(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	for range 10 {
		addr := l.address("TEST")
		tasks := make([]*asynq.Task, 2)
		ids := make([]string, 2)
		for i := range tasks {
			tasks[i], ids[i] = l.issueTask(l.resident(addr), addr)
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for _, task := range tasks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if err := l.h.PermitIssue(context.Background(), task); err != nil {
					t.Errorf("issue returned an error (asynq would retry): %v", err)
				}
			}()
		}
		close(start)
		wg.Wait()
		applied, refused := 0, 0
		for _, id := range ids {
			switch r := l.outcome(id, nil); rejection(t, r) {
			case "":
				applied++
			case string(domain.CodePermitExistsForAddress):
				refused++
			default:
				t.Fatalf("outcome %s %s", r.Status, r.Error)
			}
		}
		n, err := l.store.DB.NewSelect().Model((*repo.Permit)(nil)).Where("address_id = ?", addr).Count(l.ctx)
		if err != nil || applied != 1 || refused != 1 || n != 1 {
			t.Fatalf("address %s: %d applied, %d refused, %d permits (%v); want 1, 1, 1", addr, applied, refused, n, err)
		}
	}
	l.checkInvariants()
}

// The annual purchase limit is the zone's setting, reachable exactly, never
// crossed (a top-up that would cross it is refused whole), and per permit year.
func TestTopupPurchaseLimitIsAZoneSetting(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	l.zone("TEN", domain.ZoneSpec{Name: "Ten", TariffCentsPerHour: 300, AnnualPurchaseLimitHours: 10})
	p := l.newPermit("TEN", 0)
	topup := func(hours int) *repo.Request {
		t.Helper()
		task, _ := l.topupTask(p.ID, hours, rid("pay"))
		return l.run(task, l.h.PermitTopup, nil)
	}
	if r := topup(4); r.Status != repo.RequestApplied {
		t.Fatalf("4 hours: %s", r.Error)
	}
	wantRejected(t, topup(7), domain.CodeAnnualPurchaseLimit) // 11 > 10: refused whole
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 240 || pr.PurchasedMinutes != 240 {
		t.Fatalf("after a refused top-up: balance %d purchased %d, want 240 240", pr.BalanceMinutes, pr.PurchasedMinutes)
	}
	if r := topup(6); r.Status != repo.RequestApplied { // exactly 10
		t.Fatalf("6 hours to reach the limit exactly: %s", r.Error)
	}
	wantRejected(t, topup(1), domain.CodeAnnualPurchaseLimit)
	var cents int64
	if err := l.store.DB.NewSelect().Model((*repo.LedgerEntry)(nil)).ColumnExpr("sum(cents)").
		Where("kind = 'topup' AND permit_id = ?", l.permitRow(p.ID).ID).Scan(l.ctx, &cents); err != nil || cents != 10*300 {
		t.Fatalf("cents booked %d (%v), want 3000 at the zone's tariff", cents, err)
	}

	// The default zone: 500 hours.
	q := l.newPermit("TEST", 0)
	task, _ := l.topupTask(q.ID, 501, rid("pay"))
	wantRejected(t, l.run(task, l.h.PermitTopup, nil), domain.CodeAnnualPurchaseLimit)
	if pv := l.mustTopup(q.ID, 499); pv.Year.PurchasedMinutes != 499*60 {
		t.Fatalf("purchased %d", pv.Year.PurchasedMinutes)
	}
	task, _ = l.topupTask(q.ID, 2, rid("pay"))
	wantRejected(t, l.run(task, l.h.PermitTopup, nil), domain.CodeAnnualPurchaseLimit)
	if pv := l.mustTopup(q.ID, 1); pv.Year.PurchasedMinutes != 500*60 || pv.BalanceMinutes != 500*60 {
		t.Fatalf("at the limit: %+v", pv)
	}

	// A new permit year starts with nothing bought: the limit is per year. The
	// rollover has not run; the top-up itself rolls the year over first.
	l.clk.set(l.permitRow(p.ID).YearEndsAt.Add(time.Minute))
	if pv := l.mustTopup(p.ID, 10); pv.Year.PurchasedMinutes != 600 || pv.BalanceMinutes != 1200 {
		t.Fatalf("first top-up of the new year: %+v, want 600 bought this year and 1200 balance", pv)
	}
	if st := l.statements(p.ID); len(st) != 1 || st[0].PurchasedMinutes != 600 || st[0].CarriedOverMinutes != 600 {
		t.Fatalf("statement of the year before: %+v", st)
	}
	l.checkInvariants()
}

// One payment reference is one top-up, however often and however concurrently
// it is sent, under whatever request IDs.
func TestSamePaymentTwiceIsOneTopup(t *testing.T) {
	l := withClock(setup(t), time.Now())
	l.start()
	p := l.newPermit("TEST", 0)
	ref := rid("pay")
	ids := make([]string, 4)
	var wg sync.WaitGroup
	for i := range ids {
		var task *asynq.Task
		task, ids[i] = l.topupTask(p.ID, 3, ref)
		if i%2 == 0 {
			l.enqueue(task) // through the queue
			continue
		}
		wg.Add(1)
		go func() { // and straight into a handler, at the same time
			defer wg.Done()
			if err := l.h.PermitTopup(context.Background(), task); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	for _, id := range ids {
		var pv jobs.Permit
		if r := l.await(id, &pv); r.Status != repo.RequestApplied || pv.BalanceMinutes != 180 {
			t.Fatalf("top-up %s: %s %s %+v, want applied with balance 180", id, r.Status, r.Error, pv)
		}
	}
	if k := l.ledgerKinds(p.ID); k["topup"] != 1 {
		t.Fatalf("top-up entries %d, want 1", k["topup"])
	}
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 180 || pr.PurchasedMinutes != 180 {
		t.Fatalf("balance %d purchased %d", pr.BalanceMinutes, pr.PurchasedMinutes)
	}
	l.checkInvariants()
}

// Ending a permit with sessions in every state, through the queue: the active one
// is stopped at the end and charged up to it, the planned one cancelled, the one
// whose end passed (auto-stop not run yet) settled at its planned end; the rest
// of the balance expires with one entry; a second end changes nothing; the ended
// permit takes no session and no top-up.
func TestEndPermitSettlesSessionsAndExpiresBalance(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setup(t), t0)
	l.start()
	p := l.newPermit("TEST", 10)                                         // 600 minutes
	active := l.mustStart(p.ID, "END1", nil, nil)                        // t0 .. t0+3h, 180 reserved
	short := l.mustStart(p.ID, "END2", nil, ptr(t0.Add(10*time.Minute))) // t0 .. t0+10m
	planned := l.mustStart(p.ID, "END3", ptr(t0.Add(2*time.Hour)), nil)  // t0+2h .. t0+5h
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 600-180-10-180 || pr.ReservedMinutes != 370 {
		t.Fatalf("before the end: balance %d reserved %d", pr.BalanceMinutes, pr.ReservedMinutes)
	}

	l.clk.set(t0.Add(30 * time.Minute))
	end := l.clk.now()
	task, id := l.endTask(p.ID, nil, "moved house")
	l.enqueue(task)
	var pv jobs.Permit
	if r := l.await(id, &pv); r.Status != repo.RequestApplied {
		t.Fatalf("end: %s %s", r.Status, r.Error)
	}
	if pv.Status != domain.PermitEnded || pv.EndedAt == nil || !pv.EndedAt.Equal(end) || pv.BalanceMinutes != 0 || pv.Year.ReservedMinutes != 0 {
		t.Fatalf("ended permit = %+v, want ended at %s with nothing left", pv, end)
	}
	pr := l.permitRow(p.ID)
	if pr.EndReason == nil || *pr.EndReason != "moved house" || pr.UsedMinutes != 30+10 {
		t.Fatalf("permit row: reason %v used %d, want 'moved house' and 40", pr.EndReason, pr.UsedMinutes)
	}
	for _, c := range []struct {
		name   string
		id     string
		state  domain.State
		endAt  time.Time
		charge int
	}{
		{"active", active.ID, domain.StateStopped, end, 30},
		{"over, not auto-stopped yet", short.ID, domain.StateStopped, t0.Add(10 * time.Minute), 10},
		{"planned", planned.ID, domain.StateCancelled, t0.Add(2 * time.Hour), 0},
	} {
		s := l.session(c.id)
		if s.State != c.state || s.EndAt == nil || !s.EndAt.Equal(c.endAt) || s.ChargedMinutes == nil || *s.ChargedMinutes != c.charge {
			t.Errorf("%s session: %s end %v charged %v, want %s at %s charged %d", c.name, s.State, s.EndAt, s.ChargedMinutes, c.state, c.endAt, c.charge)
		}
	}
	var expire []repo.LedgerEntry
	for _, e := range l.ledger(p.ID) {
		if e.Kind == repo.LedgerExpire {
			expire = append(expire, e)
		}
	}
	if len(expire) != 1 || expire[0].Minutes != -(600-40) || expire[0].RequestID == nil || *expire[0].RequestID != id {
		t.Fatalf("expire entries %+v, want one of -560 minutes by the end request", expire)
	}
	l.checkInvariants()

	// Ending again, under a new request ID and another reason: the ended permit, unchanged.
	again, aid := l.endTask(p.ID, nil, "on request")
	l.enqueue(again)
	var pv2 jobs.Permit
	if r := l.await(aid, &pv2); r.Status != repo.RequestApplied || pv2.Status != domain.PermitEnded || !pv2.EndedAt.Equal(end) {
		t.Fatalf("second end: %s %s %+v", r.Status, r.Error, pv2)
	}
	if k := l.ledgerKinds(p.ID); k["expire"] != 1 {
		t.Fatalf("expire entries after a second end: %d", k["expire"])
	}
	if pr := l.permitRow(p.ID); *pr.EndReason != "moved house" {
		t.Fatalf("the second end changed the reason to %q", *pr.EndReason)
	}

	// Nothing starts or is bought on an ended permit.
	st, sid := l.sessionTask(p.ID, "END4", nil, nil)
	l.enqueue(st)
	wantRejected(t, l.await(sid, nil), domain.CodePermitNotActive)
	tt, tid := l.topupTask(p.ID, 1, rid("pay"))
	l.enqueue(tt)
	wantRejected(t, l.await(tid, nil), domain.CodePermitNotActive)
	// A stop of a session the end settled answers it as settled.
	stop, stid := l.stopTask(active.ID, nil)
	l.enqueue(stop)
	var sv jobs.Session
	if r := l.await(stid, &sv); r.Status != repo.RequestApplied || sv.Status != domain.StatusStopped || *sv.ChargedMinutes != 30 {
		t.Fatalf("stop after the end: %s %+v", r.Status, sv)
	}
	// The address may have a permit again.
	task, iid := l.issueTask(l.resident(pr.AddressID), pr.AddressID)
	l.enqueue(task)
	if r := l.await(iid, nil); r.Status != repo.RequestApplied {
		t.Fatalf("new permit at the address of an ended one: %s", r.Error)
	}
	l.checkInvariants()
}

func TestEndPermitInstantAndReason(t *testing.T) {
	t0 := time.Now().UTC().Truncate(time.Second)
	l := withClock(setupParallel(t), t0)
	p := l.newPermit("TEST", 5)
	l.clk.add(time.Hour)
	now := l.clk.now()
	for _, c := range []struct {
		name   string
		permit string
		at     *time.Time
		reason string
		code   domain.Code
	}{
		{"a move date in the past", p.ID, ptr(now.Add(-6 * time.Minute)), "moved", domain.CodeInvalidEndTime},
		{"61 seconds back", p.ID, ptr(now.Add(-61 * time.Second)), "moved", domain.CodeInvalidEndTime},
		{"5 minutes back", p.ID, ptr(now.Add(-5 * time.Minute)), "moved", domain.CodeInvalidEndTime},
		{"an end date ahead", p.ID, ptr(now.Add(time.Hour)), "moved", domain.CodeInvalidEndTime},
		{"no reason", p.ID, nil, " ", domain.CodeInvalidEndReason},
		{"unknown permit", "999999", nil, "moved", domain.CodeNotFound},
		{"not a permit ID", "P-1", nil, "moved", domain.CodeNotFound},
	} {
		task, _ := l.endTask(c.permit, c.at, c.reason)
		r := l.run(task, l.h.PermitEnd, nil)
		if rejection(t, r) != string(c.code) {
			t.Errorf("%s: %s %s, want %s", c.name, r.Status, r.Error, c.code)
		}
	}
	if pr := l.permitRow(p.ID); pr.Status != domain.PermitActive || pr.BalanceMinutes != 300 {
		t.Fatalf("rejected ends changed the permit: %+v", pr)
	}
	// An end 50 seconds back (clock skew): a session that started after that
	// instant never ran under the permit and is cancelled, not charged.
	l.mustStart(p.ID, "LATE1", nil, nil)
	l.clk.add(20 * time.Second)
	at := now.Add(-30 * time.Second)
	task, _ := l.endTask(p.ID, &at, "moved")
	var pv jobs.Permit
	if r := l.run(task, l.h.PermitEnd, &pv); r.Status != repo.RequestApplied || !pv.EndedAt.Equal(at) {
		t.Fatalf("end at %s: %s %s %+v", at, r.Status, r.Error, pv)
	}
	if k := l.ledgerKinds(p.ID); k["charge"] != 1 || k["expire"] != 1 {
		t.Fatalf("ledger %v", k)
	}
	if pr := l.permitRow(p.ID); pr.UsedMinutes != 0 {
		t.Fatalf("used %d, want 0 (the session was cancelled)", pr.UsedMinutes)
	}
	l.checkInvariants()
}

// An end racing session starts on the same permit: each start either ran before
// the end (and was settled by it) or after (and was refused); never an open
// session on an ended permit.
func TestEndRacesStarts(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	p := l.newPermit("TEST", 30) // enough for all eight starts: a refusal can only be the end's
	var wg sync.WaitGroup
	ready := make(chan struct{})
	ids := make([]string, 8)
	for i := range ids {
		var task *asynq.Task
		task, ids[i] = l.sessionTask(p.ID, "RACE"+string(rune('A'+i)), nil, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ready
			if err := l.h.SessionStart(context.Background(), task); err != nil {
				t.Error(err)
			}
		}()
	}
	end, eid := l.endTask(p.ID, nil, "moved")
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ready
		if err := l.h.PermitEnd(context.Background(), end); err != nil {
			t.Error(err)
		}
	}()
	close(ready)
	wg.Wait()
	if r := l.outcome(eid, nil); r.Status != repo.RequestApplied {
		t.Fatalf("end: %s", r.Error)
	}
	for _, id := range ids {
		if c := rejection(t, l.outcome(id, nil)); c != "" && c != string(domain.CodePermitNotActive) {
			t.Fatalf("start: %s", c)
		}
	}
	open, err := l.store.DB.NewSelect().Model((*repo.Session)(nil)).Where("state = 'open'").Count(l.ctx)
	if err != nil || open != 0 {
		t.Fatalf("%d open sessions after the end (%v)", open, err)
	}
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 0 || pr.ReservedMinutes != 0 {
		t.Fatalf("ended permit: balance %d reserved %d", pr.BalanceMinutes, pr.ReservedMinutes)
	}
	l.checkInvariants()
}

// The nightly rollover across a year boundary, run by three workers at once (as
// three schedulers that all enqueued it would): one statement per permit per
// ended year, new counters at zero, balances and reservations carried, and zones
// in other time zones rolled at their own anniversary.
func TestRolloverAcrossYearBoundaryThreeAtOnce(t *testing.T) {
	ams, ny := mustLoc(t, "Europe/Amsterdam"), mustLoc(t, "America/New_York")
	l := withClock(setupParallel(t), time.Date(2026, time.December, 31, 22, 0, 0, 0, ams))
	l.zone("NYC", domain.ZoneSpec{Name: "New York", TimeZone: "America/New_York", TariffCentsPerHour: 400, YearStarts: "04-01"})
	var ams1, ams2, nyc []jobs.Permit
	for range 5 {
		ams1 = append(ams1, l.newPermit("TEST", 10))
		ams2 = append(ams2, l.newPermit("TEST", 0))
		nyc = append(nyc, l.newPermit("NYC", 3))
	}
	// Some use in the closing year: a settled session (30 minutes) and one that
	// runs across midnight and is still open at the rollover.
	settled := l.mustStart(ams1[0].ID, "YEAR1", nil, ptr(l.clk.now().Add(30*time.Minute)))
	l.clk.set(time.Date(2026, time.December, 31, 22, 40, 0, 0, ams))
	if _, err := l.h.Reconcile(l.ctx); err != nil { // settles the 30 minutes (grace 15 s)
		t.Fatal(err)
	}
	if s := l.session(settled.ID); s.State != domain.StateStopped {
		t.Fatalf("session not settled: %+v", s)
	}
	l.clk.set(time.Date(2026, time.December, 31, 23, 0, 0, 0, ams))
	across := l.mustStart(ams1[1].ID, "YEAR2", nil, nil) // 23:00 .. 02:00
	before := map[string]*repo.Permit{}
	for _, p := range append(append(append([]jobs.Permit{}, ams1...), ams2...), nyc...) {
		before[p.ID] = l.permitRow(p.ID)
	}

	l.clk.set(time.Date(2027, time.January, 1, 0, 5, 0, 0, ams))
	roll := func() {
		t.Helper()
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.h.PermitRollover(context.Background(), jobs.NewPermitRollover(l.clk.now())); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		l.checkInvariants()
	}
	roll()
	newYear := time.Date(2027, time.January, 1, 0, 0, 0, 0, ams)
	for _, p := range append(append([]jobs.Permit{}, ams1...), ams2...) {
		b, a := before[p.ID], l.permitRow(p.ID)
		st := l.statements(p.ID)
		if len(st) != 1 {
			t.Fatalf("permit %s: %d statements, want 1", p.ID, len(st))
		}
		want := jobs.Statement{YearStartsAt: b.YearStartsAt.UTC(), YearEndsAt: newYear.UTC(),
			PurchasedMinutes: b.PurchasedMinutes, UsedMinutes: b.UsedMinutes, CarriedOverMinutes: b.BalanceMinutes}
		if !sameStatement(st[0], want) {
			t.Errorf("permit %s statement %+v, want %+v", p.ID, st[0], want)
		}
		if !a.YearStartsAt.Equal(newYear) || !a.YearEndsAt.Equal(time.Date(2028, time.January, 1, 0, 0, 0, 0, ams)) ||
			a.PurchasedMinutes != 0 || a.UsedMinutes != 0 || a.BalanceMinutes != b.BalanceMinutes || a.ReservedMinutes != b.ReservedMinutes {
			t.Errorf("permit %s after rollover: %+v (before %+v)", p.ID, a, b)
		}
	}
	if st := l.statements(ams1[0].ID); st[0].UsedMinutes != 30 || st[0].PurchasedMinutes != 600 || st[0].CarriedOverMinutes != 570 {
		t.Errorf("statement of the used permit: %+v", st[0])
	}
	if st := l.statements(ams1[1].ID); st[0].UsedMinutes != 0 || st[0].CarriedOverMinutes != 600-180 {
		t.Errorf("statement of the permit with a session across midnight: %+v (its 180 reserved stay reserved)", st[0])
	}
	for _, p := range nyc {
		if st := l.statements(p.ID); len(st) != 0 {
			t.Errorf("New York permit %s rolled at Amsterdam's new year: %+v", p.ID, st)
		}
	}

	// Running it again, three times at once, changes nothing.
	roll()
	for _, p := range ams1 {
		if st := l.statements(p.ID); len(st) != 1 {
			t.Fatalf("permit %s: %d statements after a second rollover", p.ID, len(st))
		}
	}

	// The session across midnight is charged in the year it settles in.
	l.clk.set(time.Date(2027, time.January, 1, 2, 1, 0, 0, ams))
	if _, err := l.h.Reconcile(l.ctx); err != nil {
		t.Fatal(err)
	}
	if s := l.session(across.ID); s.State != domain.StateStopped || *s.ChargedMinutes != 180 {
		t.Fatalf("session across midnight: %+v", s)
	}
	if a := l.permitRow(ams1[1].ID); a.UsedMinutes != 180 || a.ReservedMinutes != 0 || a.BalanceMinutes != 420 {
		t.Fatalf("permit after the session across midnight: used %d reserved %d balance %d", a.UsedMinutes, a.ReservedMinutes, a.BalanceMinutes)
	}

	// New York's year ends at its own midnight, 1 April, in summer time.
	nyYear := time.Date(2027, time.April, 1, 0, 0, 0, 0, ny)
	l.clk.set(nyYear.Add(-time.Second))
	roll()
	if st := l.statements(nyc[0].ID); len(st) != 0 {
		t.Fatalf("rolled a second early: %+v", st)
	}
	l.clk.set(nyYear.Add(5 * time.Minute))
	roll()
	for _, p := range nyc {
		st := l.statements(p.ID)
		a := l.permitRow(p.ID)
		if len(st) != 1 || !st[0].YearEndsAt.Equal(nyYear) || st[0].PurchasedMinutes != 180 || st[0].CarriedOverMinutes != 180 {
			t.Fatalf("New York permit %s statements %+v", p.ID, st)
		}
		if !a.YearStartsAt.Equal(nyYear) || !a.YearEndsAt.Equal(time.Date(2028, time.April, 1, 0, 0, 0, 0, ny)) {
			t.Fatalf("New York permit %s year [%s, %s)", p.ID, a.YearStartsAt, a.YearEndsAt)
		}
	}
	for _, p := range ams1 {
		if st := l.statements(p.ID); len(st) != 1 {
			t.Fatalf("Amsterdam permit %s rolled again at New York's anniversary: %d statements", p.ID, len(st))
		}
	}
}

// A scheduler down for three years: the next run closes each missed year once,
// in order, each with its own statement.
func TestRolloverAfterThreeMissedYears(t *testing.T) {
	ams := mustLoc(t, "Europe/Amsterdam")
	l := withClock(setupParallel(t), time.Date(2026, time.June, 1, 12, 0, 0, 0, ams))
	var ps []jobs.Permit
	for i := range 4 {
		ps = append(ps, l.newPermit("TEST", i+1))
	}
	l.mustStart(ps[0].ID, "GONE1", nil, ptr(l.clk.now().Add(20*time.Minute)))
	l.clk.set(time.Date(2029, time.March, 3, 4, 0, 0, 0, ams))
	if _, err := l.h.Reconcile(l.ctx); err != nil {
		t.Fatal(err)
	}
	res, err := l.h.Rollover(l.ctx)
	if err != nil || res.Years != 4*3 || res.Left != 0 {
		t.Fatalf("rollover %+v %v, want 12 years closed", res, err)
	}
	for i, p := range ps {
		st := l.statements(p.ID) // newest first
		if len(st) != 3 {
			t.Fatalf("permit %s: %d statements, want 3", p.ID, len(st))
		}
		for j, y := range []int{2028, 2027, 2026} {
			s := st[j]
			if !s.YearStartsAt.Equal(time.Date(y, time.January, 1, 0, 0, 0, 0, ams)) || !s.YearEndsAt.Equal(time.Date(y+1, time.January, 1, 0, 0, 0, 0, ams)) {
				t.Errorf("permit %s statement %d: [%s, %s)", p.ID, j, s.YearStartsAt, s.YearEndsAt)
			}
			bought, used, carried := 0, 0, (i+1)*60
			if i == 0 {
				carried -= 20 // GONE1, charged in 2026
			}
			if y == 2026 {
				bought = (i + 1) * 60
				if i == 0 {
					used = 20
				}
			}
			if s.PurchasedMinutes != bought || s.UsedMinutes != used || s.CarriedOverMinutes != carried {
				t.Errorf("permit %s year %d: %+v, want bought %d used %d carried over %d", p.ID, y, s, bought, used, carried)
			}
		}
		a := l.permitRow(p.ID)
		if !a.YearStartsAt.Equal(time.Date(2029, time.January, 1, 0, 0, 0, 0, ams)) || a.PurchasedMinutes != 0 || a.UsedMinutes != 0 {
			t.Errorf("permit %s current year %+v", p.ID, a)
		}
	}
	if res, err := l.h.Rollover(l.ctx); err != nil || res.Years != 0 {
		t.Fatalf("second run closed %d years (%v)", res.Years, err)
	}
	l.checkInvariants()
}

// A request on a permit whose year ended before the rollover ran closes that
// year itself, the way the rollover would, and the rollover then leaves it be.
func TestYearRolledOnUseBeforeTheNightlyRun(t *testing.T) {
	ams := mustLoc(t, "Europe/Amsterdam")
	l := withClock(setupParallel(t), time.Date(2026, time.December, 31, 12, 0, 0, 0, ams))
	used := l.newPermit("TEST", 500) // the whole year's purchases
	l.mustStart(used.ID, "LAST1", nil, ptr(l.clk.now().Add(time.Hour)))
	l.clk.set(time.Date(2026, time.December, 31, 13, 1, 0, 0, ams))
	if _, err := l.h.Reconcile(l.ctx); err != nil {
		t.Fatal(err)
	}
	idle := l.newPermit("TEST", 0)

	l.clk.set(time.Date(2027, time.January, 1, 0, 1, 0, 0, ams))
	// Buying on New Year's night counts in the new year, not against last year's 500.
	if pv := l.mustTopup(used.ID, 5); pv.Year.PurchasedMinutes != 300 || pv.BalanceMinutes != 500*60-60+300 {
		t.Fatalf("top-up after midnight: %+v", pv)
	}
	// And a session started then is measured against the new year's usage.
	s := l.mustStart(used.ID, "FIRST1", nil, nil)
	if s.ReservedMinutes != 180 {
		t.Fatalf("first session of the year reserved %d", s.ReservedMinutes)
	}
	st := l.statements(used.ID)
	if len(st) != 1 || st[0].PurchasedMinutes != 500*60 || st[0].UsedMinutes != 60 || st[0].CarriedOverMinutes != 500*60-60 {
		t.Fatalf("statement written on use: %+v", st)
	}
	res, err := l.h.Rollover(l.ctx)
	if err != nil || res.Years != 1 { // only the idle permit
		t.Fatalf("rollover after use: %+v %v, want 1 year closed", res, err)
	}
	if st := l.statements(used.ID); len(st) != 1 {
		t.Fatalf("%d statements after the rollover, want still 1", len(st))
	}
	if st := l.statements(idle.ID); len(st) != 1 {
		t.Fatalf("idle permit: %d statements", len(st))
	}
	// Ending a permit whose year ended unrolled still keeps that year's statement.
	late := l.newPermit("TEST", 2)
	l.clk.set(time.Date(2028, time.January, 1, 0, 2, 0, 0, ams))
	task, _ := l.endTask(late.ID, nil, "moved")
	if r := l.run(task, l.h.PermitEnd, nil); r.Status != repo.RequestApplied {
		t.Fatal(r.Error)
	}
	if st := l.statements(late.ID); len(st) != 1 || st[0].PurchasedMinutes != 120 || st[0].CarriedOverMinutes != 120 {
		t.Fatalf("statement of an ended permit's last full year: %+v", st)
	}
	l.checkInvariants()
}

func sameStatement(a, b jobs.Statement) bool {
	return a.YearStartsAt.Equal(b.YearStartsAt) && a.YearEndsAt.Equal(b.YearEndsAt) &&
		a.PurchasedMinutes == b.PurchasedMinutes && a.UsedMinutes == b.UsedMinutes && a.CarriedOverMinutes == b.CarriedOverMinutes
}

// Three schedulers (three hosts), their clocks minutes apart, each fire the
// rollover every second: one task per period reaches the queue and the worker
// runs it once; the next hour (the same day) gets its own task.
func TestRolloverSchedulersOnThreeHostsEnqueueOncePerPeriod(t *testing.T) {
	l := withClock(setup(t), time.Now())
	l.start()
	period := time.Date(2026, time.November, 24, 3, 5, 0, 0, time.UTC)
	hosts := make([]*testClock, 3)
	for i := range hosts {
		hosts[i] = newTestClock(period.Add(time.Duration(i) * 10 * time.Minute))
		m, err := worker.NewRolloverScheduler(l.redisOpt, worker.RolloverSchedule{
			Cronspec: "@every 1s", Sync: 100 * time.Millisecond, Clock: hosts[i],
		}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Shutdown)
	}
	completed := func(want int) []*asynq.TaskInfo {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			done, err := l.inspector.ListCompletedTasks(jobs.QueueMaintenance)
			if err != nil && !errors.Is(err, asynq.ErrQueueNotFound) { // nothing enqueued yet
				t.Fatal(err)
			}
			if len(done) >= want || time.Now().After(deadline) {
				return done
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if done := completed(1); len(done) != 1 || done[0].ID != jobs.RolloverTaskID(period) {
		t.Fatalf("first period: %d rollovers ran, want 1 (%s)", len(done), jobs.RolloverTaskID(period))
	}
	time.Sleep(2500 * time.Millisecond) // every scheduler fires a few more times
	if done := completed(1); len(done) != 1 {
		t.Fatalf("%d rollovers ran in one period, want 1", len(done))
	}
	info, err := l.inspector.GetTaskInfo(jobs.QueueMaintenance, jobs.RolloverTaskID(period))
	if err != nil || info.Retention != jobs.RolloverRetention || info.Queue != jobs.QueueMaintenance {
		t.Fatalf("rollover task: %+v %v", info, err)
	}
	// An hour later, the same day.
	for _, c := range hosts {
		c.add(time.Hour)
	}
	done := completed(2)
	if len(done) != 2 {
		t.Fatalf("after an hour: %d rollovers ran, want 2", len(done))
	}
	ids := map[string]bool{done[0].ID: true, done[1].ID: true}
	if !ids[jobs.RolloverTaskID(period.Add(time.Hour))] {
		t.Fatalf("ran %v, want the next hour's %s", ids, jobs.RolloverTaskID(period.Add(time.Hour)))
	}
	time.Sleep(1500 * time.Millisecond)
	if done := completed(2); len(done) != 2 {
		t.Fatalf("%d rollovers ran in two periods, want 2", len(done))
	}
}

// A payment reference is used once in the whole system: on another permit, or
// with other hours on the same one, it is payment_ref_reused (a recorded
// rejection, nothing booked); the same permit and hours again is the same
// top-up, answered as the first.
func TestPaymentRefUsedOnceInTheWholeSystem(t *testing.T) {
	l := withClock(setupParallel(t), time.Now())
	p1, p2 := l.newPermit("TEST", 0), l.newPermit("TEST", 0)
	ref := rid("PAY-X")
	topup := func(permitID string, hours int) (*repo.Request, jobs.Permit) {
		t.Helper()
		task, _ := l.topupTask(permitID, hours, ref)
		var pv jobs.Permit
		return l.run(task, l.h.PermitTopup, &pv), pv
	}
	if r, pv := topup(p1.ID, 3); r.Status != repo.RequestApplied || pv.BalanceMinutes != 180 {
		t.Fatalf("first top-up: %s %s %+v", r.Status, r.Error, pv)
	}
	r, _ := topup(p2.ID, 3)
	wantRejected(t, r, domain.CodePaymentRefReused)
	r, _ = topup(p1.ID, 4)
	wantRejected(t, r, domain.CodePaymentRefReused)
	if r, pv := topup(p1.ID, 3); r.Status != repo.RequestApplied || pv.BalanceMinutes != 180 || pv.Year.PurchasedMinutes != 180 {
		t.Fatalf("the same top-up again: %s %s %+v, want applied and nothing added", r.Status, r.Error, pv)
	}
	// An ended permit repeats its top-up as it was, and refuses another's reference.
	task, _ := l.endTask(p2.ID, nil, "moved")
	l.run(task, l.h.PermitEnd, nil)
	r, _ = topup(p2.ID, 3)
	wantRejected(t, r, domain.CodePaymentRefReused)
	for id, want := range map[string]struct{ topups, balance int }{p1.ID: {1, 180}, p2.ID: {0, 0}} {
		if k := l.ledgerKinds(id); k["topup"] != want.topups {
			t.Errorf("permit %s: %d top-up entries, want %d", id, k["topup"], want.topups)
		}
		if b := l.permitRow(id).BalanceMinutes; b != want.balance {
			t.Errorf("permit %s: balance %d, want %d", id, b, want.balance)
		}
	}
	l.checkInvariants()
}

// Permits racing with one payment reference, through the queue (where the
// Coalescer shares transactions among them) and straight into the handler at
// the same time: exactly one is credited, every other is payment_ref_reused at
// once, never a retry or an archived task.
func TestPaymentRefRaceBetweenPermits(t *testing.T) {
	l := withClock(setup(t), time.Now())
	l.start()
	permits := make([]jobs.Permit, 6)
	for i := range permits {
		permits[i] = l.newPermit("TEST", 0)
	}
	for round := range 4 {
		ref := rid("PAY-RACE")
		ids := make([]string, len(permits))
		var wg sync.WaitGroup
		for i, p := range permits {
			var task *asynq.Task
			task, ids[i] = l.topupTask(p.ID, 2, ref)
			if (i+round)%2 == 0 {
				l.enqueue(task)
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := l.h.PermitTopup(context.Background(), task); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		applied := 0
		for _, id := range ids {
			switch r := l.await(id, nil); rejection(t, r) {
			case "":
				applied++
			case string(domain.CodePaymentRefReused):
			default:
				t.Fatalf("round %d: top-up %s: %s %s", round, id, r.Status, r.Error)
			}
		}
		if applied != 1 {
			t.Fatalf("round %d: %d permits credited with one payment, want 1", round, applied)
		}
	}
	total := 0
	for _, p := range permits {
		total += l.permitRow(p.ID).BalanceMinutes
	}
	if total != 4*120 {
		t.Fatalf("balances add up to %d minutes, want 4 payments of 120", total)
	}
	info, err := l.inspector.GetQueueInfo(jobs.QueueDefault)
	if err != nil {
		t.Fatal(err)
	}
	if info.Retry != 0 || info.Archived != 0 {
		t.Fatalf("default queue: %d retrying, %d archived; the race must be decided, not retried", info.Retry, info.Archived)
	}
	l.checkInvariants()
}

// A request ID enqueued again through package jobs with another payload (or as
// another type) is an idempotency conflict, as over HTTP: nothing of it is
// applied, the first request's outcome stays, and the task is archived with
// idempotency_conflict as its error and result instead of passing for a repeat.
func TestRequestIDReusedThroughJobsIsAConflict(t *testing.T) {
	l := withClock(setup(t), time.Now())
	l.start()
	p := l.newPermit("TEST", 5)
	id := rid("jobs-key")
	first, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: id, PermitID: p.ID, Plate: "KEY1", ReceivedAt: l.clk.now()})
	if err != nil {
		t.Fatal(err)
	}
	l.enqueue(first)
	var s jobs.Session
	if r := l.await(id, &s); r.Status != repo.RequestApplied {
		t.Fatalf("first start: %s %s", r.Status, r.Error)
	}
	recorded := l.outcome(id, nil)
	l.awaitQueueEmpty(jobs.QueueCritical)
	others := []*asynq.Task{}
	for _, pl := range []jobs.SessionStart{
		{RequestID: id, PermitID: p.ID, Plate: "KEY2"},                                         // another plate
		{RequestID: id, PermitID: p.ID, Plate: "KEY1", Country: "DE"},                          // another country
		{RequestID: id, PermitID: p.ID, Plate: "KEY1", EndAt: ptr(l.clk.now().Add(time.Hour))}, // another end
	} {
		pl.ReceivedAt = l.clk.now()
		task, err := jobs.NewSessionStart(pl)
		if err != nil {
			t.Fatal(err)
		}
		others = append(others, task)
	}
	topup, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: id, PermitID: p.ID, Hours: 1, PaymentRef: rid("pay"), ReceivedAt: l.clk.now()})
	if err != nil {
		t.Fatal(err)
	}
	others = append(others, topup)
	for _, task := range others {
		info, err := l.client.Enqueue(task)
		if err != nil {
			t.Fatalf("enqueue %s again under %s: %v", task.Type(), id, err)
		}
		got := l.awaitArchived(info.Queue, info.ID)
		if !strings.Contains(got.LastErr, "idempotency_conflict") {
			t.Errorf("%s: archived with %q, want idempotency_conflict", task.Type(), got.LastErr)
		}
		var res struct {
			Status string
			Error  jobs.Rejection
		}
		if err := json.Unmarshal(got.Result, &res); err != nil || res.Status != repo.RequestRejected || res.Error.Code != "idempotency_conflict" {
			t.Errorf("%s: task result %s (%v), want a rejection idempotency_conflict", task.Type(), got.Result, err)
		}
		if err := l.inspector.DeleteTask(info.Queue, info.ID); err != nil {
			t.Fatal(err)
		}
	}
	if again := l.outcome(id, nil); again.Status != recorded.Status || string(again.Result) != string(recorded.Result) || again.Type != jobs.TypeSessionStart {
		t.Fatalf("the first request's outcome changed: %s %s", again.Status, again.Result)
	}
	n, err := l.store.DB.NewSelect().Model((*repo.Session)(nil)).Count(l.ctx)
	if err != nil || n != 1 {
		t.Fatalf("sessions = %d (%v), want the first request's one", n, err)
	}
	if pr := l.permitRow(p.ID); pr.BalanceMinutes != 300-180 || pr.PurchasedMinutes != 300 {
		t.Fatalf("permit: balance %d purchased %d: a conflicting request was applied", pr.BalanceMinutes, pr.PurchasedMinutes)
	}
	l.checkInvariants()
}
