package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// LedgerMismatch is a permit whose balance is not the sum of its ledger.
type LedgerMismatch struct {
	PermitID  int64 `bun:"permit_id"`
	Balance   int   `bun:"balance_minutes"`
	LedgerSum int   `bun:"ledger_sum"`
}

// LedgerMismatches lists every permit whose balance differs from the sum of its
// ledger entries (or is negative). An empty list is the invariant holding.
func LedgerMismatches(ctx context.Context, db bun.IDB) ([]LedgerMismatch, error) {
	var out []LedgerMismatch
	err := db.NewRaw(`
		SELECT p.id AS permit_id, p.balance_minutes, coalesce(l.total, 0) AS ledger_sum
		FROM permits p
		LEFT JOIN (SELECT permit_id, sum(minutes) AS total FROM ledger GROUP BY permit_id) l ON l.permit_id = p.id
		WHERE p.balance_minutes <> coalesce(l.total, 0) OR p.balance_minutes < 0
		ORDER BY p.id`).Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("ledger check: %w", err)
	}
	return out, nil
}

// ReservationMismatches lists permits whose reserved_minutes differ from the sum
// of their open sessions' reservations.
func ReservationMismatches(ctx context.Context, db bun.IDB) ([]int64, error) {
	var out []int64
	err := db.NewRaw(`
		SELECT p.id FROM permits p
		LEFT JOIN (SELECT permit_id, sum(reserved_minutes) AS total FROM sessions WHERE state = 'open' GROUP BY permit_id) s
		       ON s.permit_id = p.id
		WHERE p.reserved_minutes <> coalesce(s.total, 0)
		ORDER BY p.id`).Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("reservation check: %w", err)
	}
	return out, nil
}

// Finding is one violation found by an audit check, with the IDs involved.
type Finding struct {
	Check  string
	Detail string
}

// AuditCheck is one named consistency check over the database.
type AuditCheck struct {
	Name  string
	Query string // returns one text column per violation, describing it with its IDs
}

// AuditChecks are the invariants `parkd check` verifies. Each query returns
// nothing when its invariant holds. grace is how long past its planned end a
// session may still be open (the auto-stop and reconciler need a moment); a
// request may be pending for PendingRequestLimit.
func AuditChecks(grace time.Duration) []AuditCheck {
	g := fmt.Sprintf("%d milliseconds", grace.Milliseconds())
	return append([]AuditCheck{
		{"balance equals the sum of the ledger and is not negative", `
			SELECT format('permit %s: balance %s, ledger sum %s', p.id, p.balance_minutes, coalesce(l.total, 0))
			FROM permits p
			LEFT JOIN (SELECT permit_id, sum(minutes) AS total FROM ledger GROUP BY permit_id) l ON l.permit_id = p.id
			WHERE p.balance_minutes <> coalesce(l.total, 0) OR p.balance_minutes < 0`},
		{"reserved minutes equal the open sessions' reservations", `
			SELECT format('permit %s: reserved %s, open sessions %s', p.id, p.reserved_minutes, coalesce(s.total, 0))
			FROM permits p
			LEFT JOIN (SELECT permit_id, sum(reserved_minutes) AS total FROM sessions WHERE state = 'open' GROUP BY permit_id) s
			       ON s.permit_id = p.id
			WHERE p.reserved_minutes <> coalesce(s.total, 0)`},
		{"no session open past its planned end plus the grace", `
			SELECT format('session %s (permit %s): open, planned end %s', id, permit_id, planned_end_at)
			FROM sessions WHERE state = 'open' AND planned_end_at < now() - '` + g + `'::interval`},
		{"no session charged past its planned end", `
			SELECT format('session %s: end %s after planned end %s, or charged %s > reserved %s',
			              id, end_at, planned_end_at, charged_minutes, reserved_minutes)
			FROM sessions
			WHERE end_at > planned_end_at OR charged_minutes > reserved_minutes
			   OR charged_minutes > ceil(extract(epoch FROM planned_end_at - start_at) / 60)`},
		{"every settled session settled exactly once", `
			SELECT format('session %s (%s): %s charge entries, %s reserve entries', s.id, s.state, coalesce(c.n, 0), coalesce(r.n, 0))
			FROM sessions s
			LEFT JOIN (SELECT session_id, count(*) AS n FROM ledger WHERE kind = 'charge' GROUP BY 1) c ON c.session_id = s.id
			LEFT JOIN (SELECT session_id, count(*) AS n FROM ledger WHERE kind = 'reserve' GROUP BY 1) r ON r.session_id = s.id
			WHERE coalesce(r.n, 0) < 1 OR coalesce(c.n, 0) <> CASE WHEN s.state = 'open' THEN 0 ELSE 1 END`},
		// A session has its start's reserve entry and one more per change that
		// extended it, a release per change or stop that shortened it; until it
		// is settled they net to what it holds reserved.
		{"every open session's reservation equals its reserve and release entries", `
			SELECT format('session %s (permit %s): reserved %s, reserve and release entries %s', s.id, s.permit_id, s.reserved_minutes, -coalesce(l.net, 0))
			FROM sessions s
			LEFT JOIN (SELECT session_id, sum(minutes) AS net FROM ledger WHERE kind IN ('reserve', 'release') GROUP BY 1) l ON l.session_id = s.id
			WHERE s.state = 'open' AND s.reserved_minutes <> -coalesce(l.net, 0)`},
		{"every change booked at most one entry, on its own session", `
			SELECT format('request %s (%s): %s entries on %s sessions', r.request_id, r.status, count(l.id), count(DISTINCT l.session_id))
			FROM requests r JOIN ledger l ON l.request_id = r.request_id
			WHERE r.type = 'session:change'
			GROUP BY r.request_id, r.status
			HAVING count(l.id) > 1 OR r.status <> 'applied' OR bool_or(l.kind NOT IN ('reserve', 'release'))`},
		{"every session's ledger nets to its charge", `
			SELECT format('session %s: ledger nets %s, charged %s', s.id, l.net, s.charged_minutes)
			FROM sessions s JOIN (SELECT session_id, sum(minutes) AS net FROM ledger GROUP BY 1) l ON l.session_id = s.id
			WHERE s.state <> 'open' AND l.net <> -s.charged_minutes`},
		{"every applied start made exactly one session, every rejected one none", `
			SELECT format('request %s (%s): %s sessions', r.request_id, r.status, count(s.id))
			FROM requests r LEFT JOIN sessions s ON s.request_id = r.request_id
			WHERE r.type = 'session:start' AND r.status <> 'pending'
			GROUP BY r.request_id, r.status
			HAVING count(s.id) <> CASE WHEN r.status = 'applied' THEN 1 ELSE 0 END`},
		{"every applied issue made exactly one permit, every rejected one none", `
			SELECT format('request %s (%s): %s permits', r.request_id, r.status, count(p.id))
			FROM requests r LEFT JOIN permits p ON p.request_id = r.request_id
			WHERE r.type = 'permit:issue' AND r.status <> 'pending'
			GROUP BY r.request_id, r.status
			HAVING count(p.id) <> CASE WHEN r.status = 'applied' THEN 1 ELSE 0 END`},
		{"every top-up booked at most once, and only by an applied request", `
			SELECT format('request %s (%s): %s top-up entries', r.request_id, r.status, count(l.id))
			FROM requests r LEFT JOIN ledger l ON l.request_id = r.request_id AND l.kind = 'topup'
			WHERE r.type = 'permit:topup' AND r.status <> 'pending'
			GROUP BY r.request_id, r.status
			HAVING count(l.id) > CASE WHEN r.status = 'applied' THEN 1 ELSE 0 END`},
		{"every stop settled at most one session, once", `
			SELECT format('request %s (%s): %s charge entries on %s sessions', r.request_id, r.status, count(l.id), count(DISTINCT l.session_id))
			FROM requests r JOIN ledger l ON l.request_id = r.request_id AND l.kind = 'charge'
			WHERE r.type = 'session:stop'
			GROUP BY r.request_id, r.status
			HAVING count(l.id) > 1 OR r.status <> 'applied'`},
		{"no request pending longer than " + PendingRequestLimit.String(), `
			SELECT format('request %s (%s): pending since %s', request_id, type, created_at)
			FROM requests
			WHERE status = 'pending' AND created_at < now() - '` + fmt.Sprintf("%d seconds", int(PendingRequestLimit.Seconds())) + `'::interval
			ORDER BY created_at`},
		{"every year's expired minutes booked once, as its statement says", `
			SELECT format('permit %s, year from %s: statement expired %s, ledger expired %s',
			              permit_id, year_starts_at, coalesce(y.expired_minutes, 0), coalesce(-l.minutes, 0))
			FROM permit_years y
			FULL JOIN (SELECT permit_id, year_starts_at, minutes FROM ledger
			           WHERE kind = 'expire' AND year_starts_at IS NOT NULL) l USING (permit_id, year_starts_at)
			WHERE coalesce(y.expired_minutes, 0) <> coalesce(-l.minutes, 0)`},
		{"no ended permit has favourites, no permit more than 25", `
			SELECT format('permit %s (%s): %s favourites', p.id, p.status, count(*))
			FROM favourites f JOIN permits p ON p.id = f.permit_id
			GROUP BY p.id, p.status
			HAVING p.status <> 'active' OR count(*) > ` + fmt.Sprint(domain.MaxFavourites)},
		{"every session's right acknowledged by the registrar (none pending over " + RightPendingLimit.String() + ", none rejected)", rightsAuditSQL},
		{"no ledger entry from a rejected request", `
			SELECT format('ledger %s (%s) from rejected request %s', l.id, l.kind, l.request_id)
			FROM ledger l JOIN requests r ON r.request_id = l.request_id
			WHERE r.status = 'rejected'`},
		// Events are written in the transaction of their change (eventdata.go):
		// one naming a row that is not there, or a change of a rejected
		// request, is one whose change rolled back without it.
		{"no event of a session or permit that does not exist", `
			SELECT format('event %s (%s): permit %s, session %s', e.id, e.type, e.permit_id, e.session_id)
			FROM events e
			WHERE (e.permit_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM permits p WHERE p.id = e.permit_id))
			   OR (e.session_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.id = e.session_id))`},
		{"no event of a rejected request but its rejection", `
			SELECT format('event %s (%s) of rejected request %s', e.id, e.type, e.request_id)
			FROM events e JOIN requests r ON r.request_id = e.request_id
			WHERE r.status = 'rejected' AND e.type <> 'request.rejected'`},
	}, eventAuditChecks()...)
}

// Audit runs every check and returns the violations (at most limit per check)
// and the names of the checks run.
func Audit(ctx context.Context, db bun.IDB, grace time.Duration, limit int) ([]string, []Finding, error) {
	var names []string
	var out []Finding
	for _, c := range AuditChecks(grace) {
		names = append(names, c.Name)
		var rows []string
		if err := db.NewRaw(c.Query+fmt.Sprintf(" LIMIT %d", limit)).Scan(ctx, &rows); err != nil {
			return names, out, fmt.Errorf("check %q: %w", c.Name, err)
		}
		for _, r := range rows {
			out = append(out, Finding{Check: c.Name, Detail: r})
		}
	}
	return names, out, nil
}
