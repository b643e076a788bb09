package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// RolloverBatch is how many permits one rollover statement closes a year of: big
// enough that a million permits take about a hundred statements, small enough
// that no statement holds its row locks (which a session start on one of those
// permits waits for) for more than a fraction of a second.
const RolloverBatch = 10_000

// rollSQL closes one permit year of each permit it selects and opens the next, in
// one statement (domain.RollYear is the rule it implements):
//
//   - bounds is ?2, a JSON array of {zone, ends_at, next_ends_at, cap_minutes}:
//     for each zone and year end due, the end of the year after it, computed in
//     Go by domain.Zone.NextYearEnd, and the zone's carry-over cap in minutes
//     (null: none). The SQL does no calendar arithmetic of its own:
//     a local day boundary (01:00 where clocks jump over midnight, the first of
//     two midnights where they fall back over it) has one definition,
//     domain.DayStart, and Postgres's AT TIME ZONE arithmetic is not it.
//   - due locks up to ?1 active permits whose year ended at or before ?0, in
//     the order of the permits_year_ends_at index, skipping rows another
//     transaction holds (a concurrent rollover, which is rolling them, or a
//     request on the permit, which rolls the permit itself when its year has
//     ended), and looks up each one's bound (a join would make Postgres read and
//     sort every permit due for each batch). The locking read returns the newest
//     version of each row, so the statement's figures are the ones it locked,
//     never a snapshot older than a concurrent top-up.
//   - rolled is each permit that has a bound (one without became due after the
//     bounds were computed: the next statement's bounds have it) with the
//     minutes its zone's cap expires: sqlCarryOverExpired, domain.Zone.CarryOver
//     in SQL (TestRollover checks the two agree).
//   - closed writes the annual statement of each rolled permit: the balance
//     carried over and the balance expired. Its primary key (permit_id,
//     year_starts_at) and ON CONFLICT DO NOTHING keep a year from being written
//     twice, whatever runs twice; it returns only the statements it wrote.
//   - expired books one expire entry per statement written with minutes
//     expired, naming the year it closes (ledger_one_expiry_per_permit_year), at
//     ?0: the ledger's IDs and instants stay in one order.
//   - the UPDATE starts the new year at the old end and ends it at the bound,
//     with the purchase and usage counters at zero, and takes the expired
//     minutes off the balance (only those of a statement written, so the
//     balance stays its ledger). The rest of the balance and the open sessions'
//     reservations carry over. It returns the permits rolled, as they now
//     stand, for their permit.year_rolled events (rollYears).
//
// Each statement closes at most one year per permit: a permit whose year ended
// years ago is due again after it and is picked up by the next statement, so every
// missed year gets its own statement.
//
// %s is an extra condition on p (one permit, for RollPermitYears).
const rollSQL = `
WITH bounds AS MATERIALIZED (
	SELECT * FROM jsonb_to_recordset(?2::jsonb) AS b(zone text, ends_at timestamptz, next_ends_at timestamptz, cap_minutes integer)
), due AS (
	SELECT p.id, p.year_starts_at, p.year_ends_at, p.purchased_minutes, p.used_minutes, p.balance_minutes,
	       (SELECT b.next_ends_at FROM bounds b WHERE b.zone = p.zone AND b.ends_at = p.year_ends_at) AS next_ends_at,
	       (SELECT b.cap_minutes FROM bounds b WHERE b.zone = p.zone AND b.ends_at = p.year_ends_at) AS cap_minutes
	FROM permits p
	WHERE p.status = 'active' AND p.year_ends_at <= ?0 %[1]s
	ORDER BY p.year_ends_at
	LIMIT ?1
	FOR UPDATE SKIP LOCKED
), rolled AS (
	SELECT due.*, ` + sqlCarryOverExpired + ` AS expired_minutes
	FROM due WHERE next_ends_at IS NOT NULL
), closed AS (
	INSERT INTO permit_years (permit_id, year_starts_at, year_ends_at, purchased_minutes, used_minutes,
	                          carried_over_minutes, expired_minutes, closed_at)
	SELECT id, year_starts_at, year_ends_at, purchased_minutes, used_minutes,
	       balance_minutes - expired_minutes, expired_minutes, ?0
	FROM rolled
	ON CONFLICT (permit_id, year_starts_at) DO NOTHING
	RETURNING permit_id, year_starts_at, expired_minutes
), expired AS (
	INSERT INTO ledger (permit_id, kind, minutes, at, year_starts_at)
	SELECT permit_id, 'expire', -expired_minutes, ?0, year_starts_at
	FROM closed WHERE expired_minutes > 0
)
UPDATE permits p
SET year_starts_at = rolled.year_ends_at,
	year_ends_at = rolled.next_ends_at,
	purchased_minutes = 0,
	used_minutes = 0,
	balance_minutes = p.balance_minutes - coalesce(closed.expired_minutes, 0)
FROM rolled LEFT JOIN closed ON closed.permit_id = rolled.id
WHERE p.id = rolled.id AND p.year_ends_at = rolled.year_ends_at
RETURNING %[2]s`

// sqlCarryOverExpired is domain.Zone.CarryOver's expired minutes over the
// columns balance_minutes and cap_minutes (null: no cap).
const sqlCarryOverExpired = `CASE WHEN cap_minutes IS NULL OR balance_minutes <= cap_minutes THEN 0
	ELSE balance_minutes - cap_minutes END`

// yearBound is one row of rollSQL's bounds: a permit of Zone whose year ends at
// EndsAt gets a new year ending at NextEndsAt, and the balance above CapMinutes
// expires.
type yearBound struct {
	Zone       string    `json:"zone"`
	EndsAt     time.Time `json:"ends_at"`
	NextEndsAt time.Time `json:"next_ends_at"`
	// CapMinutes is the zone's carry-over cap (nil: none).
	CapMinutes *int `json:"cap_minutes"`
}

// yearBounds chains, for each zone and each of the year ends given, the ends
// of the years that follow up to the first one after now, so that one set of
// bounds serves every statement of a rollover, missed years included.
func yearBounds(zones []*domain.Zone, ends []time.Time, now time.Time) []yearBound {
	type key struct {
		zone string
		end  int64
	}
	seen := map[key]bool{}
	var out []yearBound
	for _, z := range zones {
		for _, end := range ends {
			// Chains of one zone meet (a year end due is also the next of an
			// earlier one): each (zone, end) is listed once.
			for range maxYearsBehind {
				k := key{z.Code, end.UnixMicro()}
				if seen[k] {
					break
				}
				seen[k] = true
				next := z.NextYearEnd(end)
				out = append(out, yearBound{Zone: z.Code, EndsAt: end, NextEndsAt: next, CapMinutes: capMinutes(z)})
				if next.After(now) {
					break
				}
				end = next
			}
		}
	}
	return out
}

// capMinutes is the zone's carry-over cap as rollSQL's bounds carry it.
func capMinutes(z *domain.Zone) *int {
	if !z.CarryOverCapped {
		return nil
	}
	m := z.CarryOverMaxMinutes
	return &m
}

// dueEndsSQL lists the distinct year ends of the active permits due at ?0, one
// index probe per distinct end (there are a handful: the anniversaries of a
// few zones), however many permits share them.
const dueEndsSQL = `
WITH RECURSIVE ends AS (
	(SELECT year_ends_at FROM permits WHERE status = 'active' AND year_ends_at <= ?0 ORDER BY year_ends_at LIMIT 1)
	UNION ALL
	SELECT (SELECT p.year_ends_at FROM permits p
	        WHERE p.status = 'active' AND p.year_ends_at > e.year_ends_at AND p.year_ends_at <= ?0
	        ORDER BY p.year_ends_at LIMIT 1)
	FROM ends e WHERE e.year_ends_at IS NOT NULL
)
SELECT year_ends_at FROM ends WHERE year_ends_at IS NOT NULL`

// dueBounds computes the bounds of every permit year due at now, for every zone.
func dueBounds(ctx context.Context, db bun.IDB, now time.Time) ([]yearBound, error) {
	var ends []time.Time
	if err := db.NewRaw(dueEndsSQL, now).Scan(ctx, &ends); err != nil {
		return nil, fmt.Errorf("year ends due: %w", err)
	}
	if len(ends) == 0 {
		return nil, nil
	}
	var rows []Zone
	if err := db.NewSelect().Model(&rows).Scan(ctx); err != nil {
		return nil, fmt.Errorf("zones: %w", err)
	}
	zones := make([]*domain.Zone, 0, len(rows))
	for _, r := range rows {
		z, err := domain.CompileZone(r.Code, r.ZoneSpec)
		if err != nil {
			return nil, fmt.Errorf("zone %s as stored: %w", r.Code, err)
		}
		zones = append(zones, z)
	}
	return yearBounds(zones, ends, now), nil
}

func boundsJSON(b []yearBound) (string, error) {
	if b == nil {
		b = []yearBound{}
	}
	j, err := json.Marshal(b)
	if err != nil {
		return "", fmt.Errorf("year bounds: %w", err)
	}
	return string(j), nil
}

// rollYears runs rollSQL (with the extra condition where and its argument, if
// any) and writes a permit.year_rolled event for each permit it rolled, as the
// permit now stands, in one more statement: set-wise, however many permits the
// statement rolled. Both run in the caller's transaction, so a year closes
// with its event or not at all. It returns the permits rolled.
func rollYears(ctx context.Context, tx bun.IDB, now time.Time, limit int, bounds, where string, args ...any) ([]Permit, error) {
	var rolled []Permit
	all := append([]any{now, limit, bounds}, args...)
	if err := tx.NewRaw(fmt.Sprintf(rollSQL, where, columns[Permit](tx, "p")), all...).Scan(ctx, &rolled); err != nil {
		return nil, err
	}
	events := make([]*Event, len(rolled))
	for i := range rolled {
		events[i] = PermitEvent(jobs.EventPermitYearRolled, &rolled[i], now, nil)
	}
	if err := AddEvents(ctx, tx, events...); err != nil {
		return nil, err
	}
	return rolled, nil
}

// rollOverBatch closes one permit year of up to limit permits whose year ended at
// or before now and whose zone and end have a bound, and returns how many it
// rolled. Zero with permits still due means every one of them is locked by
// another transaction just now (or has no bound: computed before it was due).
func rollOverBatch(ctx context.Context, db bun.IDB, now time.Time, limit int, bounds []yearBound) (int, error) {
	j, err := boundsJSON(bounds)
	if err != nil {
		return 0, err
	}
	rolled, err := rollYears(ctx, db, now, limit, j, "")
	if err != nil {
		return 0, fmt.Errorf("roll over permit years: %w", err)
	}
	return len(rolled), nil
}

// PermitsDue counts the active permits whose year ended at or before now.
func PermitsDue(ctx context.Context, db bun.IDB, now time.Time) (int, error) {
	n, err := db.NewSelect().Model((*Permit)(nil)).
		Where("status = ? AND year_ends_at <= ?", domain.PermitActive, now).Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("permits due for rollover: %w", err)
	}
	return int(n), nil
}

// RolloverResult says what RollOver did.
type RolloverResult struct {
	Years      int // permit years closed (annual statements written)
	Statements int // statements (batches) run
	Left       int // permits still due, every one locked by another transaction
	// Refused are the permits whose year the database refuses to close for
	// good (see Refusal): left as they are, for an operator.
	Refused []int64
}

// lockedRetries bounds how often RollOver waits for permits that other
// transactions hold. Those are short (one request on one permit, which rolls the
// permit itself), or another rollover that is rolling them.
const lockedRetries = 20

// RollOver closes every permit year that ended at or before now, up to batch
// permits per statement (each statement its own transaction), until none is
// left: a permit whose year ended years ago is closed once per missed year. Several RollOvers at once
// share the work (SKIP LOCKED) and never close a year twice. Permits held by
// other transactions until the end are reported in Left; the next run, or the
// request holding them, rolls them.
func RollOver(ctx context.Context, db bun.IDB, now time.Time, batch int) (RolloverResult, error) {
	if batch <= 0 {
		batch = RolloverBatch
	}
	var r RolloverResult
	bounds, err := dueBounds(ctx, db, now)
	if err != nil {
		return r, err
	}
	for retries := 0; ; {
		var n int
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			// The commit need not wait for the WAL flush: a batch lost to a crash
			// right after it is simply due again on the next run, and any later
			// write to those permits flushes it first.
			if _, err := tx.ExecContext(ctx, "SET LOCAL synchronous_commit = off"); err != nil {
				return fmt.Errorf("roll over permit years: %w", err)
			}
			var err error
			n, err = rollOverBatch(ctx, tx, now, batch, bounds)
			return err
		})
		if _, refused := AsRefusal(err); refused {
			return rollOneByOne(ctx, db, now, bounds, r, err)
		}
		if err != nil {
			return r, err
		}
		r.Statements++
		r.Years += n
		if n > 0 {
			retries = 0
			continue
		}
		if r.Left, err = PermitsDue(ctx, db, now); err != nil || r.Left == 0 || retries == lockedRetries {
			return r, err
		}
		retries++
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		// A permit issued or a zone changed since: its end gets a bound too.
		if bounds, err = dueBounds(ctx, db, now); err != nil {
			return r, err
		}
	}
}

// rollOneByOne finishes a rollover whose batch statement the database refused
// for good (cause): a permit whose year can never be closed would fail every
// batch it is in, and with it every other permit's rollover. The permits still
// due are rolled one per transaction; those refused are left as they are, in
// r.Refused, and the error (wrapping the refusal) names them.
func rollOneByOne(ctx context.Context, db bun.IDB, now time.Time, bounds []yearBound, r RolloverResult, cause error) (RolloverResult, error) {
	j, err := boundsJSON(bounds)
	if err != nil {
		return r, err
	}
	for {
		var ids []int64
		q := db.NewSelect().Model((*Permit)(nil)).Column("id").
			Where("status = ? AND year_ends_at <= ?", domain.PermitActive, now)
		if len(r.Refused) > 0 {
			q = q.Where("id NOT IN (?)", bun.In(r.Refused))
		}
		if err := q.OrderExpr("year_ends_at").Limit(RolloverBatch).Scan(ctx, &ids); err != nil {
			return r, fmt.Errorf("permits due for rollover: %w", err)
		}
		progress := false
		for _, id := range ids {
			var n int
			err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				rolled, err := rollYears(ctx, tx, now, 1, j, "AND p.id = ?3", id)
				n = len(rolled)
				return err
			})
			if _, refused := AsRefusal(err); refused {
				r.Refused, cause, progress = append(r.Refused, id), err, true
				continue
			}
			if err != nil {
				return r, fmt.Errorf("roll over permit %d: %w", id, err)
			}
			r.Statements++
			r.Years += n
			progress = progress || n > 0
		}
		if !progress { // none left but those other transactions hold
			r.Left = len(ids)
			break
		}
	}
	if len(r.Refused) > 0 {
		return r, fmt.Errorf("roll over permit years: the years of permits %v refused: %w", r.Refused, cause)
	}
	return r, nil
}

// maxYearsBehind bounds RollPermitYears: no permit is older than parkd.
const maxYearsBehind = 100

// RollPermitYears closes the ended permit years of one permit of zone z the
// caller has locked, with the nightly rollover's own statement and its
// permit.year_rolled event per year (occurred at now), and reloads p.
// Requests call it before applying the year's limits, so that a top-up or
// session just after the anniversary counts in the new year however late the
// rollover runs, and a year is never closed in two different ways. The events
// are written at once, in the caller's transaction, whatever the request then
// decides: the years stay closed even when the request is rejected.
func RollPermitYears(ctx context.Context, tx bun.IDB, z *domain.Zone, p *Permit, now time.Time) (int, error) {
	if p.Status != domain.PermitActive || p.YearEndsAt.After(now) {
		return 0, nil
	}
	if z.Code != p.Zone {
		return 0, fmt.Errorf("roll over permit %d of zone %s with zone %s", p.ID, p.Zone, z.Code)
	}
	j, err := boundsJSON(yearBounds([]*domain.Zone{z}, []time.Time{p.YearEndsAt}, now))
	if err != nil {
		return 0, err
	}
	years := 0
	for p.Status == domain.PermitActive && !p.YearEndsAt.After(now) {
		if years == maxYearsBehind {
			return years, fmt.Errorf("roll over permit %d: still due after %d years", p.ID, years)
		}
		rolled, err := rollYears(ctx, tx, now, 1, j, "AND p.id = ?3", p.ID)
		if err != nil {
			return years, fmt.Errorf("roll over permit %d: %w", p.ID, err)
		}
		if len(rolled) == 1 {
			zv := p.ZoneUpdatedAt
			*p = rolled[0]
			p.ZoneUpdatedAt = zv
		} else if err := tx.NewSelect().Model(p).WherePK().Scan(ctx); err != nil {
			return years, fmt.Errorf("reload permit %d: %w", p.ID, err)
		}
		years++
	}
	return years, nil
}

// PermitStatements lists a permit's closed years (rows of permit_years),
// newest first. bun scans the columns into the answer's fields by name.
func PermitStatements(ctx context.Context, db bun.IDB, permitID int64) ([]jobs.Statement, error) {
	var rows []jobs.Statement
	err := db.NewRaw(`
		SELECT year_starts_at, year_ends_at, purchased_minutes, used_minutes, carried_over_minutes, expired_minutes
		FROM permit_years WHERE permit_id = ? ORDER BY year_starts_at DESC`, permitID).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("statements of permit %d: %w", permitID, err)
	}
	for i := range rows {
		rows[i].YearStartsAt = rows[i].YearStartsAt.UTC()
		rows[i].YearEndsAt = rows[i].YearEndsAt.UTC()
	}
	return rows, nil
}
