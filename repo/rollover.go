package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// RolloverBatch is how many permits one rollover statement closes a year of: big
// enough that a million permits take about a hundred statements, small enough
// that no statement holds its row locks (which a session start on one of those
// permits waits for) for more than a fraction of a second.
const RolloverBatch = 10_000

// rollSQL closes one permit year of each permit it selects and opens the next, in
// one statement (domain.RollYear is the rule it implements):
//
//   - due locks up to ?1 active permits whose year ended at or before ?0,
//     skipping rows another transaction holds (a concurrent rollover, which is
//     rolling them, or a request on the permit, which rolls the permit itself
//     when its year has ended). The locking read returns the newest version of
//     each row, so the statement's figures are the ones it locked, never a
//     snapshot older than a concurrent top-up.
//   - closed writes the annual statement. Its primary key (permit_id,
//     year_starts_at) and ON CONFLICT DO NOTHING keep a year from being written
//     twice, whatever runs twice.
//   - the UPDATE starts the new year at the old end and ends it on the same local
//     wall-clock instant a year later in the zone's time zone (local midnight on
//     the anniversary, whatever the UTC offset then), with the purchase and usage
//     counters at zero. The balance and the open sessions' reservations carry over.
//
// Each statement closes at most one year per permit: a permit whose year ended
// years ago is due again after it and is picked up by the next statement, so every
// missed year gets its own statement.
//
// %s is an extra condition on p (one permit, for RollPermitYears).
const rollSQL = `
WITH due AS (
	SELECT p.id, p.zone, p.year_starts_at, p.year_ends_at, p.purchased_minutes, p.used_minutes, p.balance_minutes
	FROM permits p
	WHERE p.status = 'active' AND p.year_ends_at <= ?0 %s
	ORDER BY p.year_ends_at
	LIMIT ?1
	FOR UPDATE SKIP LOCKED
), closed AS (
	INSERT INTO permit_years (permit_id, year_starts_at, year_ends_at, purchased_minutes, used_minutes, carried_over_minutes, closed_at)
	SELECT id, year_starts_at, year_ends_at, purchased_minutes, used_minutes, balance_minutes, ?0
	FROM due
	ON CONFLICT (permit_id, year_starts_at) DO NOTHING
)
UPDATE permits p
SET year_starts_at = due.year_ends_at,
	year_ends_at = (due.year_ends_at AT TIME ZONE z.time_zone + interval '1 year') AT TIME ZONE z.time_zone,
	purchased_minutes = 0,
	used_minutes = 0
FROM due JOIN zones z ON z.code = due.zone
WHERE p.id = due.id AND p.year_ends_at = due.year_ends_at`

// RollOverBatch closes one permit year of up to limit permits whose year ended at
// or before now and returns how many it rolled. Zero with permits still due means
// every one of them is locked by another transaction just now.
func RollOverBatch(ctx context.Context, db bun.IDB, now time.Time, limit int) (int, error) {
	res, err := db.NewRaw(fmt.Sprintf(rollSQL, ""), now, limit).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("roll over permit years: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("roll over permit years: %w", err)
	}
	return int(n), nil
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
			n, err = RollOverBatch(ctx, tx, now, batch)
			return err
		})
		if _, refused := AsRefusal(err); refused {
			return rollOneByOne(ctx, db, now, r, err)
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
	}
}

// rollOneByOne finishes a rollover whose batch statement the database refused
// for good (cause): a permit whose year can never be closed would fail every
// batch it is in, and with it every other permit's rollover. The permits still
// due are rolled one per transaction; those refused are left as they are, in
// r.Refused, and the error (wrapping the refusal) names them.
func rollOneByOne(ctx context.Context, db bun.IDB, now time.Time, r RolloverResult, cause error) (RolloverResult, error) {
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
			var n int64
			err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				res, err := tx.NewRaw(fmt.Sprintf(rollSQL, "AND p.id = ?2"), now, 1, id).Exec(ctx)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
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
			r.Years += int(n)
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

// RollPermitYears closes the ended permit years of one permit the caller has
// locked, with the nightly rollover's own statement, and reloads p. Requests call
// it before applying the year's limits, so that a top-up or session just after
// the anniversary counts in the new year however late the rollover runs, and a
// year is never closed in two different ways.
func RollPermitYears(ctx context.Context, tx bun.IDB, p *Permit, now time.Time) (int, error) {
	years := 0
	for p.Status == domain.PermitActive && !p.YearEndsAt.After(now) {
		if years == maxYearsBehind {
			return years, fmt.Errorf("roll over permit %d: still due after %d years", p.ID, years)
		}
		if _, err := tx.NewRaw(fmt.Sprintf(rollSQL, "AND p.id = ?2"), now, 1, p.ID).Exec(ctx); err != nil {
			return years, fmt.Errorf("roll over permit %d: %w", p.ID, err)
		}
		if err := tx.NewSelect().Model(p).WherePK().Scan(ctx); err != nil {
			return years, fmt.Errorf("reload permit %d: %w", p.ID, err)
		}
		years++
	}
	return years, nil
}
