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

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// The embedded migrations, each case on an empty database of its own.
func TestMigrations(t *testing.T) {
	parallel(t,
		subtest{"concurrent migrators apply each once", concurrentMigrate},
		subtest{"the data of before is kept", migrationKeepsDataOfBefore},
		subtest{"status says what is applied, pending and unknown", migrationStatus},
	)
}

// Two processes migrating one empty database at once: both succeed, the schema
// is applied once, and every migration is marked applied.
func concurrentMigrate(t *testing.T) {
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

// The migration that makes a payment reference unique in the whole system keeps
// the data written before it: top-ups that booked one reference on several
// permits stay (the later ones marked as duplicates of the first), and so do
// the balances; sessions get the country NL, in their rows and in the recorded
// outcomes. From then on, a reference is booked once.
func migrationKeepsDataOfBefore(t *testing.T) {
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

// `parkd migrate status`: what is applied, what a newer parkd applied that
// this one does not know, and on a database without bun's table every migration
// pending; asking changes nothing.
func migrationStatus(t *testing.T) {
	ctx := context.Background()
	st, _ := repotest.NewDB(t)
	// status is the migrations as name:state, and a list of the embedded
	// migrations' names, each with the state embedded.
	status := func(embedded string) (got, want string) {
		t.Helper()
		states, err := st.MigrationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var g, w []string
		for _, m := range states {
			switch {
			case m.Unknown:
				g = append(g, m.Name+":unknown")
				continue
			case m.AppliedAt.IsZero():
				g = append(g, m.Name+":pending")
			default:
				g = append(g, m.Name+":applied")
			}
			w = append(w, m.Name+":"+embedded)
		}
		if len(w) == 0 || w[0] != "20261124000001_init:"+embedded {
			t.Errorf("the embedded migrations, oldest first: %v", states)
		}
		return fmt.Sprint(g), fmt.Sprint(w)
	}
	exec := func(q string) {
		t.Helper()
		if _, err := st.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := status("applied"); got != want {
		t.Errorf("migrated: %s, want %s", got, want)
	}
	exec("INSERT INTO bun_migrations (name, group_id) VALUES ('29991231000000', 9)")
	if got, want := status("applied"); got != want[:len(want)-1]+" 29991231000000:unknown]" {
		t.Errorf("migrated by a newer parkd: %s, want the embedded applied, then the unknown one", got)
	}
	exec("DROP TABLE bun_migrations")
	if got, want := status("pending"); got != want {
		t.Errorf("never migrated: %s, want %s", got, want)
	}
	var created bool
	if err := st.DB.NewRaw("SELECT to_regclass('bun_migrations') IS NOT NULL").Scan(ctx, &created); err != nil || created {
		t.Errorf("asking for the status created bun's table (%v)", err)
	}
}
