package repo_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// The audit of `parkd check`, each case on a database of its own.
func TestAudit(t *testing.T) {
	parallel(t,
		subtest{"finds violations", auditFindsViolations},
		subtest{"finds requests pending too long", auditFindsRequestsPendingTooLong},
		subtest{"finds favourites and expiries out of place", auditFindsFavouritesAndExpiriesOutOfPlace},
		subtest{"finds events unnumbered or undelivered", auditFindsEventsUnnumberedOrUndelivered},
		subtest{"finds rights the registrar has not taken", auditFindsRightsNotTaken},
		subtest{"finds events out of place", auditFindsEventsOutOfPlace},
	)
}

// A right pending over repo.RightPendingLimit, or refused at its newest
// version, is a finding with its session, version, age and the refusal; a
// right pending a moment, or acknowledged, is none.
func auditFindsRightsNotTaken(t *testing.T) {
	w := newWorld(t)
	now := time.Now().UTC()
	stuck, refused, fresh, acked := rightSession(w, "AU01AB"), rightSession(w, "AU02AB"), rightSession(w, "AU03AB"), rightSession(w, "AU04AB")
	repotest.MarkRightChanged(t, w.store, stuck, codes, now.Add(-6*time.Minute))
	repotest.MarkRightChanged(t, w.store, refused, codes, now.Add(-time.Minute))
	repotest.MarkRightChanged(t, w.store, fresh, codes, now.Add(-time.Minute))
	repotest.MarkRightChanged(t, w.store, acked, codes, now.Add(-time.Hour))
	if _, err := repo.RejectRight(w.ctx, w.store.DB, refused, 1, "registrar answered 422: unknown area"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.AcknowledgeRight(w.ctx, w.store.DB, acked, 1, now); err != nil {
		t.Fatal(err)
	}
	_, findings, err := repo.Audit(w.ctx, w.store.DB, time.Hour, 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range findings {
		if strings.Contains(f.Check, "registrar") {
			got = append(got, f.Detail)
		}
	}
	want := []string{
		fmt.Sprintf("session %d: right version 1 pending for 00:06:0", stuck),
		fmt.Sprintf("session %d: right version 1 rejected (changed 00:01:0", refused),
	}
	found := 0
	for _, w := range want {
		for _, g := range got {
			if strings.HasPrefix(g, w) {
				found++
			}
		}
	}
	if len(got) != 2 || found != 2 || !strings.Contains(strings.Join(got, "\n"), "ago): registrar answered 422: unknown area") {
		t.Fatalf("findings %q, want %q…", got, want)
	}
}

// `parkd check` finds an event of a session or permit that does not exist,
// and a change's event from a rejected request; a rejection's own event is
// no finding.
func auditFindsEventsOutOfPlace(t *testing.T) {
	w := newWorld(t)
	w.zone("AZ", "", "")
	p := w.permit("AZ", time.Now(), 0)
	findings, _ := w.plantAndAudit([]string{
		"INSERT INTO requests (request_id, type, body_hash, status, error) VALUES ('req-r', 'session:start', 'h', 'rejected', '{}')",
		fmt.Sprintf("INSERT INTO events (type, occurred_at, permit_id, request_id, data) VALUES ('request.rejected', now(), %d, 'req-r', '{}')", p.ID),
	})
	if len(findings) != 0 {
		t.Fatalf("findings on a rejection's event: %v", findings)
	}
	findings, got := w.plantAndAudit([]string{
		"INSERT INTO events (type, occurred_at, permit_id, session_id, data) VALUES ('session.started', now(), 987654, 987654, '{}')",
		fmt.Sprintf("INSERT INTO events (type, occurred_at, permit_id, request_id, data) VALUES ('permit.topped_up', now(), %d, 'req-r', '{}')", p.ID),
	})
	if got["no event of a session or permit that does not exist"] != 1 || got["no event of a rejected request but its rejection"] != 1 {
		t.Errorf("findings: %v", findings)
	}
}

// The audit of `parkd check` finds a corrupted balance, an overdue open session,
// and a start request applied without its session; and nothing on a clean database.
func auditFindsViolations(t *testing.T) {
	w := newWorld(t)
	ctx, st := w.ctx, w.store
	if _, findings, err := repo.Audit(ctx, st.DB, time.Minute, 10); err != nil || len(findings) != 0 {
		t.Fatalf("clean database: %v %v", findings, err)
	}
	w.zone("AZ", "", "")
	p := w.permit("AZ", time.Now(), 0)
	past := time.Now().Add(-time.Hour)
	planted := []string{
		fmt.Sprintf("UPDATE permits SET balance_minutes = 7 WHERE id = %d", p.ID),
		fmt.Sprintf("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (%d, 'AZ', 'X1', 'open', '%s', '%s', 10, 'req-s')",
			p.ID, past.Format(time.RFC3339), past.Add(10*time.Minute).Format(time.RFC3339)),
		"INSERT INTO requests (request_id, type, body_hash, status) VALUES ('req-lost', 'session:start', 'h', 'applied')",
		// One stop request that charged two sessions (the schema allows one
		// charge per session, not one per request).
		fmt.Sprintf("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, end_at, reserved_minutes, charged_minutes, settled_at, request_id) VALUES (%d, 'AZ', 'X2', 'stopped', '%s', '%s', '%s', 10, 1, now(), 'req-s2')",
			p.ID, past.Format(time.RFC3339), past.Add(10*time.Minute).Format(time.RFC3339), past.Add(time.Minute).Format(time.RFC3339)),
		"INSERT INTO requests (request_id, type, body_hash, status) VALUES ('req-stop', 'session:stop', 'h', 'applied')",
		fmt.Sprintf("INSERT INTO ledger (permit_id, kind, minutes, session_id, request_id, at) SELECT %d, 'charge', -1, id, 'req-stop', now() FROM sessions WHERE request_id IN ('req-s', 'req-s2')", p.ID),
		// A change that booked twice on the open session X1 (whose reserved
		// 10 minutes no reserve entry backs either).
		"INSERT INTO requests (request_id, type, body_hash, status) VALUES ('req-change', 'session:change', 'h', 'applied')",
		fmt.Sprintf("INSERT INTO ledger (permit_id, kind, minutes, session_id, request_id, at) SELECT %d, k, m, id, 'req-change', now() FROM sessions, (VALUES ('reserve', -5), ('release', 5)) AS e(k, m) WHERE request_id = 'req-s'", p.ID),
	}
	findings, got := w.plantAndAudit(planted)
	for _, want := range []string{
		"balance equals the sum of the ledger and is not negative",
		"reserved minutes equal the open sessions' reservations",
		"no session open past its planned end plus the grace",
		"every settled session settled exactly once",
		"every applied start made exactly one session, every rejected one none",
		"every stop settled at most one session, once",
		"every open session's reservation equals its reserve and release entries",
		"every change booked at most one entry, on its own session",
	} {
		if got[want] == 0 {
			t.Errorf("audit did not report %q; findings: %v", want, findings)
		}
	}
}

// `parkd check` reports a request pending longer than PendingRequestLimit (its
// task archived, lost or never queued: nothing will ever finish it), and not
// one pending for a moment; the pending count and the oldest age say the same.
func auditFindsRequestsPendingTooLong(t *testing.T) {
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	for _, q := range []string{
		"INSERT INTO requests (request_id, type, body_hash, status) VALUES ('fresh', 'session:start', 'h', 'pending')",
		"INSERT INTO requests (request_id, type, body_hash, status, result) VALUES ('done', 'permit:topup', 'h', 'applied', '{}')",
		"INSERT INTO requests (request_id, type, body_hash, status, error, created_at) VALUES ('old-done', 'permit:topup', 'h', 'rejected', '{}', now() - interval '1 day')",
	} {
		if _, err := st.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	stuck := func() []repo.Finding {
		t.Helper()
		_, findings, err := repo.Audit(ctx, st.DB, time.Minute, 10)
		if err != nil {
			t.Fatal(err)
		}
		return findings
	}
	if f := stuck(); len(f) != 0 {
		t.Fatalf("nothing stuck yet: %v", f)
	}
	if _, err := st.DB.ExecContext(ctx, "INSERT INTO requests (request_id, type, body_hash, status, created_at) VALUES ('field-arch-1', 'session:start', 'h', 'pending', now() - interval '6 minutes')"); err != nil {
		t.Fatal(err)
	}
	f := stuck()
	if len(f) != 1 || f[0].Check != "no request pending longer than "+repo.PendingRequestLimit.String() ||
		!strings.Contains(f[0].Detail, "request field-arch-1 (session:start): pending since") {
		t.Fatalf("findings %v, want field-arch-1 pending too long", f)
	}
	ps, err := repo.PendingRequests(ctx, st.DB)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Count != 2 || ps.Oldest < 6*time.Minute || ps.Oldest > 7*time.Minute {
		t.Fatalf("pending %+v, want 2 with the oldest 6 minutes old", ps)
	}
}

// `parkd check` finds favourites left on an ended permit, more than 25 on one
// permit, a statement whose expired minutes have no expire entry and an
// expire entry of a year without that statement; and nothing after a real
// capped rollover.
func auditFindsFavouritesAndExpiriesOutOfPlace(t *testing.T) {
	w := newWorld(t)
	ctx, st := w.ctx, w.store
	w.cappedZone("HAG", hours(50))
	issued := time.Date(2026, time.March, 1, 12, 0, 0, 0, time.UTC)
	w.permit("HAG", issued, 80*60)
	if _, err := repo.RollOver(ctx, st.DB, time.Date(2027, time.February, 1, 0, 0, 0, 0, time.UTC), 10); err != nil {
		t.Fatal(err)
	}
	if _, findings, err := repo.Audit(ctx, st.DB, time.Minute, 10); err != nil || len(findings) != 0 {
		t.Fatalf("after a capped rollover: %v %v", findings, err)
	}
	ended, many, noEntry := w.permit("HAG", issued, 0), w.permit("HAG", issued, 0), w.permit("HAG", issued, 0)
	planted := []string{
		fmt.Sprintf("INSERT INTO favourites (permit_id, plate, name, created_at) VALUES (%d, 'AB12CD', 'Oma', now())", ended.ID),
		fmt.Sprintf("UPDATE permits SET status = 'ended', ended_at = now() WHERE id = %d", ended.ID),
		fmt.Sprintf("INSERT INTO favourites (permit_id, plate, name, created_at) SELECT %d, 'P' || i, 'n', now() FROM generate_series(1, 26) i", many.ID),
		fmt.Sprintf("INSERT INTO permit_years (permit_id, year_starts_at, year_ends_at, purchased_minutes, used_minutes, carried_over_minutes, expired_minutes) VALUES (%d, '2020-01-01', '2021-01-01', 0, 0, 0, 60)", noEntry.ID),
	}
	findings, got := w.plantAndAudit(planted)
	if got["no ended permit has favourites, no permit more than 25"] != 2 ||
		got["every year's expired minutes booked once, as its statement says"] != 1 {
		t.Errorf("findings: %v", findings)
	}
}

// plantAndAudit runs the statements that plant violations, then the audit, and
// returns its findings and how many each check reported.
func (w *world) plantAndAudit(planted []string) ([]repo.Finding, map[string]int) {
	w.t.Helper()
	for _, q := range planted {
		if _, err := w.store.DB.ExecContext(w.ctx, q); err != nil {
			w.t.Fatal(err)
		}
	}
	_, findings, err := repo.Audit(w.ctx, w.store.DB, time.Minute, 10)
	if err != nil {
		w.t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range findings {
		got[f.Check]++
	}
	return findings, got
}
