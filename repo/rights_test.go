package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// seedRights writes a zone and n sessions: n/4 plates B0000000…, each with one
// open session covering now and three settled ones on earlier days.
func seedRights(t *testing.T, st *repo.Store, n int) {
	t.Helper()
	ctx := context.Background()
	z, err := domain.CompileZone("RIGHTS", domain.ZoneSpec{Name: "Rights", TariffCentsPerHour: 100, InvalidWeekdays: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.PutZone(ctx, st.DB, z); err != nil {
		t.Fatal(err)
	}
	plates := n / 4
	var pid int64
	if err := st.DB.NewRaw(`
		WITH a AS (INSERT INTO addresses (id, zone) VALUES ('R-ADDR', 'RIGHTS') RETURNING id)
		INSERT INTO permits (resident_id, address_id, zone, status, year_starts_at, year_ends_at, issued_at)
		SELECT 'r', a.id, 'RIGHTS', 'active', now() - interval '30 days', now() + interval '335 days', now() - interval '30 days' FROM a
		RETURNING id`).Scan(ctx, &pid); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, `
		INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, end_at,
		                      reserved_minutes, charged_minutes, request_id, settled_at)
		SELECT ?, 'RIGHTS', 'B' || lpad((g % ?)::text, 7, '0'),
		       CASE WHEN g < ? THEN 'open' ELSE 'stopped' END,
		       now() - (g / ?) * interval '1 day' - interval '1 hour',
		       now() - (g / ?) * interval '1 day' + interval '2 hours',
		       CASE WHEN g < ? THEN NULL ELSE now() - (g / ?) * interval '1 day' + interval '1 hour' END,
		       180, CASE WHEN g < ? THEN NULL ELSE 120 END, 'seed-' || g,
		       CASE WHEN g < ? THEN NULL ELSE now() - (g / ?) * interval '1 day' + interval '1 hour' END
		FROM generate_series(0, ? - 1) g`,
		pid, plates, plates, plates, plates, plates, plates, plates, plates, plates, n); err != nil {
		t.Fatal(err)
	}
	if _, err := st.DB.ExecContext(ctx, "ANALYZE sessions"); err != nil {
		t.Fatal(err)
	}
}

// TestRightsLookupIsOneIndexScan: the enforcement question is one statement,
// whose sessions part is an index scan of sessions_rights (never a scan of the
// table), and it answers right.
func TestRightsLookupIsOneIndexScan(t *testing.T) {
	t.Parallel()
	st, _ := repotest.NewDB(t)
	ctx := context.Background()
	seedRights(t, st, 10_000)
	now := time.Now()

	q, args := repo.RightsQuery("B0000042", "RIGHTS", now)
	var plan []string
	if err := st.DB.NewRaw("EXPLAIN "+q, args...).Scan(ctx, &plan); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "Index Scan using sessions_rights on sessions") || strings.Contains(text, "Seq Scan on sessions") {
		t.Fatalf("rights lookup is not an index scan of sessions_rights:\n%s", text)
	}
	t.Logf("plan:\n%s", text)

	z, cov, ok, err := st.RightsLookup(ctx, st.DB, "B0000042", "RIGHTS", now)
	id := cov.SessionID
	if err != nil || !ok || id == 0 || z.Code != "RIGHTS" || cov.Country != "NL" {
		t.Fatalf("covered plate: zone %v id %d ok %v err %v", z, id, ok, err)
	}
	if s, err := repo.GetSession(ctx, st.DB, id); err != nil || s.Plate != "B0000042" || s.State != domain.StateOpen {
		t.Fatalf("the covering session is %+v (%v)", s, err)
	}
	// A day earlier the plate was covered by a settled session; after its end
	// (an hour after its start) it was not.
	dayBefore := now.Add(-24*time.Hour - 30*time.Minute)
	if _, c2, ok, err := st.RightsLookup(ctx, st.DB, "B0000042", "RIGHTS", dayBefore); err != nil || !ok || c2.SessionID == id {
		t.Fatalf("a day before: id %d ok %v err %v", c2.SessionID, ok, err)
	}
	if _, _, ok, err := st.RightsLookup(ctx, st.DB, "B0000042", "RIGHTS", dayBefore.Add(90*time.Minute)); err != nil || ok {
		t.Fatalf("after a settled end: ok %v err %v", ok, err)
	}
	if _, _, ok, err := st.RightsLookup(ctx, st.DB, "NOBODY", "RIGHTS", now); err != nil || ok {
		t.Fatalf("unknown plate: ok %v err %v", ok, err)
	}
	if _, _, _, err := st.RightsLookup(ctx, st.DB, "B0000042", "NOWHERE", now); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("unknown zone: %v", err)
	}
	// A changed zone is seen at once, not a cached copy.
	z2, err := domain.CompileZone("RIGHTS", domain.ZoneSpec{Name: "Renamed", TariffCentsPerHour: 100, InvalidWeekdays: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.PutZone(ctx, st.DB, z2); err != nil {
		t.Fatal(err)
	}
	if z, _, _, err := st.RightsLookup(ctx, st.DB, "B0000042", "RIGHTS", now); err != nil || z.Name != "Renamed" {
		t.Fatalf("after PutZone: %v %v", z, err)
	}
}

// rightSession inserts an open session on a fresh permit of zone AZ and
// returns its ID (its right is what these tests look at, not its ledger).
func rightSession(w *world, plate string) int64 {
	w.t.Helper()
	if w.zones["AZ"] == nil {
		w.zone("AZ", "", "")
	}
	p := w.permit("AZ", time.Now(), 0)
	var id int64
	now := time.Now().UTC()
	if err := w.store.DB.NewRaw(`INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id)
		VALUES (?, 'AZ', ?, 'open', ?, ?, 0, ?) RETURNING id`, p.ID, plate, now, now.Add(time.Hour), "start-"+plate).Scan(w.ctx, &id); err != nil {
		w.t.Fatal(err)
	}
	return id
}

var codes = domain.ZoneRegistration{AreaManagerID: "363", AreaID: "OOST", UsageID: "BEZOEKP"}

// The registrar's answers arrive in any order (a retry of an old version
// may finish after a newer one): what is recorded is the highest version
// acknowledged and the highest refused, and the session shows the newest
// version's standing.
func TestRightAnswersKeepTheHighestVersion(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	id := rightSession(w, "KH01AB")
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	for v := 1; v <= 3; v++ {
		if got := repotest.MarkRightChanged(t, w.store, id, codes, t0); got != v {
			t.Fatalf("version %d, want %d", got, v)
		}
	}
	view := func() jobs.Registration {
		s, err := repo.GetSession(w.ctx, w.store.DB, id)
		if err != nil {
			t.Fatal(err)
		}
		return s.RegistrationView()
	}
	if r := view(); r.Status != jobs.RegistrationPending || r.Version != 3 {
		t.Fatalf("before any answer: %+v", r)
	}
	ack, err := repo.AcknowledgeRight(w.ctx, w.store.DB, id, 2, t0.Add(time.Second))
	if err != nil || !ack.Advanced || ack.ChangedAt != nil {
		t.Fatalf("ack of 2 (not the newest): %+v %v", ack, err)
	}
	if r := view(); r.Status != jobs.RegistrationPending {
		t.Fatalf("version 2 of 3 acknowledged: %+v", r)
	}
	ack, err = repo.AcknowledgeRight(w.ctx, w.store.DB, id, 3, t0.Add(2*time.Second))
	if err != nil || !ack.Advanced || ack.ChangedAt == nil || !ack.ChangedAt.Equal(t0) {
		t.Fatalf("ack of 3 (the newest): %+v %v", ack, err)
	}
	// A late answer to version 1 changes nothing.
	ack, err = repo.AcknowledgeRight(w.ctx, w.store.DB, id, 1, t0.Add(3*time.Second))
	if err != nil || ack.Advanced {
		t.Fatalf("late ack of 1: %+v %v", ack, err)
	}
	r := view()
	if r.Status != jobs.RegistrationRegistered || r.Version != 3 || r.RegisteredAt == nil || !r.RegisteredAt.Equal(t0.Add(2*time.Second)) {
		t.Fatalf("after acks of 2, 3, 1: %+v", r)
	}

	// Version 4 is refused: the session shows it rejected; a late refusal of
	// an older version is not recorded.
	repotest.MarkRightChanged(t, w.store, id, codes, t0)
	if ok, err := repo.RejectRight(w.ctx, w.store.DB, id, 4, "registrar answered 422: bad area"); err != nil || !ok {
		t.Fatalf("reject 4: %v %v", ok, err)
	}
	if ok, err := repo.RejectRight(w.ctx, w.store.DB, id, 2, "late"); err != nil || ok {
		t.Fatalf("reject 2 after 4: %v %v", ok, err)
	}
	if r := view(); r.Status != jobs.RegistrationRejected || r.Version != 4 {
		t.Fatalf("after the refusal of 4: %+v", r)
	}
}

// Pending rights are listed oldest change first, only once older than the
// cut, and counted with the oldest one's age; answered ones are not.
func TestPendingRights(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	now := time.Now().UTC()
	old, fresh, acked, refused := rightSession(w, "PR01AB"), rightSession(w, "PR02AB"), rightSession(w, "PR03AB"), rightSession(w, "PR04AB")
	repotest.MarkRightChanged(t, w.store, old, codes, now.Add(-10*time.Minute))
	repotest.MarkRightChanged(t, w.store, old, codes, now.Add(-2*time.Minute)) // version 2, still the older
	repotest.MarkRightChanged(t, w.store, fresh, codes, now)
	repotest.MarkRightChanged(t, w.store, acked, codes, now.Add(-time.Hour))
	repotest.MarkRightChanged(t, w.store, refused, codes, now.Add(-time.Hour))
	if _, err := repo.AcknowledgeRight(w.ctx, w.store.DB, acked, 1, now); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.RejectRight(w.ctx, w.store.DB, refused, 1, "no"); err != nil {
		t.Fatal(err)
	}
	got, err := repo.PendingRights(w.ctx, w.store.DB, now.Add(-30*time.Second), 10)
	if err != nil || len(got) != 1 || got[0] != (repo.PendingRight{SessionID: old, Version: 2}) {
		t.Fatalf("pending before the cut: %+v %v", got, err)
	}
	got, err = repo.PendingRights(w.ctx, w.store.DB, now.Add(time.Second), 10)
	if err != nil || len(got) != 2 || got[0].SessionID != old || got[1].SessionID != fresh {
		t.Fatalf("pending, every one: %+v %v", got, err)
	}
	st, err := repo.RightsBacklog(w.ctx, w.store.DB)
	if err != nil || st.Count != 2 || st.Oldest < 100*time.Second || st.Oldest > 10*time.Minute {
		t.Fatalf("backlog %+v %v: want 2, the oldest about 2 minutes", st, err)
	}
}
