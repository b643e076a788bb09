package repo_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/repo"
)

// The invariants the database itself carries, whatever code writes to it.
func TestSchemaConstraints(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx, st := w.ctx, w.store
	z := w.zone("CZ", "", "")
	now := time.Date(2026, 6, 10, 10, 0, 0, 0, time.UTC)
	p := w.permit("CZ", now, 0) // at address A1
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
			p2 := w.permit("CZ", now, 0)
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
	// The intervals are half-open, [start, planned end): the next session of
	// the plate may start at the instant the first one ends.
	if err := exec("INSERT INTO sessions (permit_id, zone, plate, state, start_at, planned_end_at, reserved_minutes, request_id) VALUES (?, 'CZ', 'AB12', 'open', ?, ?, 10, 'r2')", p.ID, now.Add(10*time.Minute), now.Add(20*time.Minute)); err != nil {
		t.Errorf("a session of the plate starting as the other ends: %v", err)
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
	// One reserve entry per session and request: the start's and an
	// extending change's, never one request's twice.
	for _, rq := range []string{"start-1", "change-1"} {
		if err := exec("INSERT INTO ledger (permit_id, kind, minutes, session_id, request_id, at) VALUES (?, 'reserve', -5, ?, ?, now())", p.ID, sid, rq); err != nil {
			t.Errorf("reserve of request %s: %v", rq, err)
		}
	}
	if err := exec("INSERT INTO ledger (permit_id, kind, minutes, session_id, request_id, at) VALUES (?, 'reserve', -5, ?, 'change-1', now())", p.ID, sid); err == nil {
		t.Error("second reserve of one request on one session: accepted")
	}
}
