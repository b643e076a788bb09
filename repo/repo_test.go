package repo_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// Two processes migrating one empty database at once: both succeed, the schema
// is applied once, and every migration is marked applied.
func TestConcurrentMigrate(t *testing.T) {
	ctx := context.Background()
	url := emptyDB(t, "parkd_migtest")

	var wg sync.WaitGroup
	errs := make([]error, 3)
	applied := make([][]string, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := repo.Open(url, repo.PoolConfig{MaxConns: 3})
			if err != nil {
				errs[i] = err
				return
			}
			defer st.Close()
			applied[i], errs[i] = st.Migrate(ctx)
		}()
	}
	wg.Wait()
	total := 0
	for i := range 3 {
		if errs[i] != nil {
			t.Fatalf("migrator %d: %v", i, errs[i])
		}
		total += len(applied[i])
	}
	st, err := repo.Open(url, repo.PoolConfig{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var marked int
	if err := st.DB.NewRaw("SELECT count(*) FROM bun_migrations").Scan(ctx, &marked); err != nil {
		t.Fatal(err)
	}
	if total != marked || marked == 0 {
		t.Fatalf("applied %d in all, %d marked: each migration must be applied exactly once", total, marked)
	}
	again, err := st.Migrate(ctx)
	if err != nil || len(again) != 0 {
		t.Fatalf("re-migrate: %v %v", again, err)
	}
}

// emptyDB creates a database without any schema, dropped when the test ends,
// and returns its URL: for tests of the migrations themselves (repotest's are
// migrated already).
func emptyDB(t *testing.T, prefix string) string {
	t.Helper()
	admin, err := sql.Open("pgx", repotest.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	name := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	if _, err := admin.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a, err := sql.Open("pgx", repotest.AdminURL())
		if err != nil {
			return
		}
		defer a.Close()
		_, _ = a.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	url := repotest.AdminURL()
	return url[:len(url)-len("/postgres?sslmode=disable")] + "/" + name + "?sslmode=disable"
}

// The invariants the database itself carries, whatever code writes to it.
func TestSchemaConstraints(t *testing.T) {
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	z, err := domain.CompileZone("CZ", domain.ZoneSpec{Name: "C", TariffCentsPerHour: 100})
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.PutZone(ctx, st.DB, z); err != nil {
		t.Fatal(err)
	}
	zone := "CZ"
	if err := repo.PutAddress(ctx, st.DB, &repo.Address{ID: "A1", Zone: &zone}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 10, 10, 0, 0, 0, time.UTC)
	p, err := repo.InsertPermit(ctx, st.DB, z, "R1", "A1", "req-1", now)
	if err != nil {
		t.Fatal(err)
	}
	exec := func(q string, args ...any) error {
		_, err := st.DB.ExecContext(ctx, q, args...)
		return err
	}
	cases := []struct {
		name string
		err  error
	}{
		{"negative balance", exec("UPDATE permits SET balance_minutes = -1 WHERE id = ?", p.ID)},
		{"second active permit for an address", func() error {
			_, err := repo.InsertPermit(ctx, st.DB, z, "R2", "A1", "req-2", now)
			return err
		}()},
		{"request ID applied twice", exec("INSERT INTO requests (request_id, type, body_hash, status) VALUES ('x', 't', 'h', 'pending'), ('x', 't', 'h', 'pending')")},
		{"request ID of a bad form", exec("INSERT INTO requests (request_id, type, body_hash, status) VALUES ('a b', 't', 'h', 'pending')")},
		{"plate not normalised", exec("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'ab-12', 'open', ?, ?, 10, 'r')", p.ID, now, now.Add(10*time.Minute))},
		{"open session with a charge", exec("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, charged_minutes, request_id) VALUES (?, 'CZ', 'AB12', 'open', ?, ?, 10, 3, 'r')", p.ID, now, now.Add(10*time.Minute))},
		{"ledger reserve with a positive sign", exec("INSERT INTO ledger (permit_id, kind, minutes, at) VALUES (?, 'reserve', 5, now())", p.ID)},
		{"plate of 13", exec("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'ABCDEFG123456', 'open', ?, ?, 10, 'r')", p.ID, now, now.Add(10*time.Minute))},
		{"country in lower case", exec("INSERT INTO sessions (permit_id, zone, plate, country, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'CC1', 'nl', 'open', ?, ?, 10, 'r')", p.ID, now, now.Add(10*time.Minute))},
		{"country of three letters", exec("INSERT INTO sessions (permit_id, zone, plate, country, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'CC2', 'NLD', 'open', ?, ?, 10, 'r')", p.ID, now, now.Add(10*time.Minute))},
		{"payment reference on a second permit", func() error {
			if err := repo.PutAddress(ctx, st.DB, &repo.Address{ID: "A2", Zone: &zone}); err != nil {
				return err
			}
			p2, err := repo.InsertPermit(ctx, st.DB, z, "R2", "A2", "req-3", now)
			if err != nil {
				return err
			}
			if err := exec("INSERT INTO ledger (permit_id, kind, minutes, cents, payment_ref, at) VALUES (?, 'topup', 60, 100, 'PAY-X', now())", p.ID); err != nil {
				return err
			}
			return exec("INSERT INTO ledger (permit_id, kind, minutes, cents, payment_ref, at) VALUES (?, 'topup', 60, 100, 'PAY-X', now())", p2.ID)
		}()},
		{"a new top-up passed off as an old duplicate", func() error {
			var first int64
			if err := st.DB.NewRaw("SELECT id FROM ledger WHERE payment_ref = 'PAY-X'").Scan(ctx, &first); err != nil {
				return err
			}
			return exec("INSERT INTO ledger (permit_id, kind, minutes, cents, payment_ref, at, duplicate_of_topup) VALUES (?, 'topup', 60, 100, 'PAY-X', now(), ?)", p.ID, first)
		}()},
	}
	for _, c := range cases {
		if c.err == nil {
			t.Errorf("%s: accepted, want a constraint violation", c.name)
		}
	}
	// One settlement per session, and one plate parked once per zone, whatever its country.
	if err := exec("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'AB12', 'open', ?, ?, 10, 'r')", p.ID, now, now.Add(10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := exec("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'AB12', 'open', ?, ?, 10, 'r2')", p.ID, now.Add(5*time.Minute), now.Add(20*time.Minute)); err == nil {
		t.Error("overlapping open sessions of one plate in one zone: accepted")
	}
	if err := exec("INSERT INTO sessions (permit_id, zone, plate, country, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'AB12', 'DE', 'open', ?, ?, 10, 'r2')", p.ID, now.Add(5*time.Minute), now.Add(20*time.Minute)); err == nil {
		t.Error("overlapping open sessions of one plate from two countries in one zone: accepted")
	}
	if err := exec("INSERT INTO sessions (permit_id, zone, plate, country, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', '132WW1234567', 'IE', 'open', ?, ?, 10, 'r3')", p.ID, now, now.Add(10*time.Minute)); err != nil {
		t.Errorf("a plate of 12 with its country: %v", err)
	}
	var sid int64
	if err := st.DB.NewRaw("SELECT id FROM sessions LIMIT 1").Scan(ctx, &sid); err != nil {
		t.Fatal(err)
	}
	if err := exec("INSERT INTO ledger (permit_id, kind, minutes, session_id, at) VALUES (?, 'charge', -1, ?, now())", p.ID, sid); err != nil {
		t.Fatal(err)
	}
	if err := exec("INSERT INTO ledger (permit_id, kind, minutes, session_id, at) VALUES (?, 'charge', -1, ?, now())", p.ID, sid); err == nil {
		t.Error("second charge (settlement) of one session: accepted")
	}
}

// The audit of `parkd check` finds a corrupted balance, an overdue open session,
// and a start request applied without its session; and nothing on a clean database.
func TestAuditFindsViolations(t *testing.T) {
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	if _, findings, err := repo.Audit(ctx, st.DB, time.Minute, 10); err != nil || len(findings) != 0 {
		t.Fatalf("clean database: %v %v", findings, err)
	}
	z, _ := domain.CompileZone("AZ", domain.ZoneSpec{Name: "A", TariffCentsPerHour: 100})
	if err := repo.PutZone(ctx, st.DB, z); err != nil {
		t.Fatal(err)
	}
	zone := "AZ"
	if err := repo.PutAddress(ctx, st.DB, &repo.Address{ID: "AA", Zone: &zone}); err != nil {
		t.Fatal(err)
	}
	p, err := repo.InsertPermit(ctx, st.DB, z, "R", "AA", "req-p", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	for _, q := range []string{
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
	} {
		if _, err := st.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	_, findings, err := repo.Audit(ctx, st.DB, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range findings {
		got[f.Check] = true
	}
	for _, want := range []string{
		"balance equals the sum of the ledger and is not negative",
		"reserved minutes equal the open sessions' reservations",
		"no session open past its planned end plus the grace",
		"every settled session settled exactly once",
		"every applied start made exactly one session, every rejected one none",
		"every stop settled at most one session, once",
	} {
		if !got[want] {
			t.Errorf("audit did not report %q; findings: %v", want, findings)
		}
	}
}

// The migration that makes a payment reference unique in the whole system keeps
// the data written before it: top-ups that booked one reference on several
// permits stay (the later ones marked as duplicates of the first), and so do
// the balances; sessions get the country NL, in their rows and in the recorded
// outcomes. From then on, a reference is booked once.
func TestMigrationKeepsDataOfBefore(t *testing.T) {
	ctx := context.Background()
	st, err := repo.Open(emptyDB(t, "parkd_migdata"), repo.PoolConfig{MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The schema as it was (the first migration alone), with the data it allowed.
	initSQL, err := os.ReadFile("migrations/20261124000001_init.tx.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	before := string(initSQL) + `
		INSERT INTO zones (code, name, time_zone, tariff_cents_per_hour, paid_hours, max_session_minutes, max_plan_ahead_days,
			annual_purchase_limit_hours, annual_usage_limit_hours, year_starts)
		VALUES ('Z', 'Z', 'Europe/Amsterdam', 210, '[]', 180, 7, 500, 500, '01-01');
		INSERT INTO addresses (id, zone) VALUES ('a1', 'Z'), ('a2', 'Z');
		INSERT INTO permits (resident_id, address_id, zone, status, balance_minutes, purchased_minutes, year_starts_at, year_ends_at, issued_at)
		VALUES ('r1', 'a1', 'Z', 'active', 180, 180, now(), now() + interval '1 year', now()),
		       ('r2', 'a2', 'Z', 'active', 180, 180, now(), now() + interval '1 year', now());
		INSERT INTO ledger (permit_id, kind, minutes, cents, payment_ref, at)
		VALUES (1, 'topup', 120, 420, 'PAY-X', now()), (2, 'topup', 120, 420, 'PAY-X', now()),
		       (1, 'topup', 60, 210, 'PAY-Y', now()), (2, 'topup', 60, 210, 'PAY-Z', now());
		INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id)
		VALUES (1, 'Z', 'AB12CD', 'open', now(), now() + interval '1 hour', 0, 'q1');
		INSERT INTO requests (request_id, type, body_hash, status, result)
		VALUES ('q1', 'session:start', 'h', 'applied', '{"id": "1", "plate": "AB12CD"}'),
		       ('q2', 'permit:topup', 'h', 'applied', '{"id": "1"}');`
	if _, err := st.DB.ExecContext(ctx, before); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatalf("migrate a database with payment references booked twice: %v", err)
	}
	var rows []repo.LedgerEntry
	if err := st.DB.NewSelect().Model(&rows).Where("kind = 'topup'").OrderExpr("id").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || rows[0].DuplicateOfTopup != nil || rows[1].DuplicateOfTopup == nil || *rows[1].DuplicateOfTopup != rows[0].ID ||
		rows[2].DuplicateOfTopup != nil || rows[3].DuplicateOfTopup != nil {
		t.Fatalf("top-ups after the migration: %+v", rows)
	}
	var balances []int
	if err := st.DB.NewRaw("SELECT balance_minutes FROM permits ORDER BY id").Scan(ctx, &balances); err != nil || len(balances) != 2 ||
		balances[0] != 180 || balances[1] != 180 {
		t.Fatalf("balances %v (%v), want both kept", balances, err)
	}
	s, err := repo.GetSession(ctx, st.DB, 1)
	if err != nil || s.Country != "NL" || s.Plate != "AB12CD" {
		t.Fatalf("session after the migration: %+v %v", s, err)
	}
	out, err := repo.GetRequest(ctx, st.DB, "q1")
	if err != nil || !strings.Contains(string(out.Result), `"country": "NL"`) {
		t.Fatalf("recorded outcome of a start: %s %v", out.Result, err)
	}
	if out, err := repo.GetRequest(ctx, st.DB, "q2"); err != nil || strings.Contains(string(out.Result), "country") {
		t.Fatalf("recorded outcome of a top-up: %s %v", out.Result, err)
	}
	for _, ref := range []string{"PAY-X", "PAY-Y", "PAY-Z"} {
		if _, err := st.DB.ExecContext(ctx, "INSERT INTO ledger (permit_id, kind, minutes, cents, payment_ref, at) VALUES (2, 'topup', 60, 210, ?, now())", ref); err == nil {
			t.Errorf("%s booked once more after the migration: accepted", ref)
		}
	}
}
