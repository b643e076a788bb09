package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
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
