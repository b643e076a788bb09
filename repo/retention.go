package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Plate retention (DOMAIN.md "Privacy"): the plate of a session that ended is
// erased everywhere parkd's Postgres holds it. Where it is written:
//
//   - sessions.plate, set to NULL (the CHECK sessions_plate_erased_only_when_ended
//     allows that for ended sessions only);
//   - requests.result of every request whose outcome shows the session (start,
//     stop, change, auto-stop: jobs.Session with its plate), rewritten to plate
//     null; and the body_hash of its start and change requests, a hash of a
//     fingerprint naming the plate (a hash of a plate is no erasure): it
//     becomes "erased", so a repeat of such a request ID is a conflict;
//   - events.data of every event of the session (session.started, changed,
//     ending, stopped, cancelled), rewritten to plate null: the plate is
//     masked there, but a masked plate is still part of one;
//   - the body_hash of refused starts and plate corrections (status
//     rejected, no session) older than the retention, likewise;
//   - requests.error holds rule messages with the plate masked (worker:
//     domain.MaskPlatesIn) only, and the outbox holds auto-stops (session ID and
//     end) only: neither carries a plate.
//
// Favourites are no session data: they go when their permit ends or its
// resident is erased (DeleteFavouritesOfResident). Money, minutes, ledger and
// statements are untouched.

// RetentionBatch is how many sessions one retention statement erases: each
// batch is its own short transaction, so that no lock is held long.
const RetentionBatch = 5_000

// ErasedPlate is what an erased plate's request hash becomes.
const ErasedPlate = "erased"

// RetentionResult is what a retention run erased, and how long it took.
type RetentionResult struct {
	Sessions int64         // sessions whose plate was erased
	Requests int64         // request outcomes rewritten
	Batches  int           // statements (transactions) run
	Longest  time.Duration // the longest single statement, hence the longest any lock of it was held
	Total    time.Duration
}

// endedSQL is when a session (sessions s0, not open) ended: a stopped one at
// its end, a cancelled one when it was cancelled (settled_at), which is before
// its end_at (the planned start) by up to max_plan_ahead_days. It is the
// expression of the index sessions_plate_due_ended (migration
// 20261129000014), which the retention reads.
const endedSQL = `least(s0.end_at, s0.settled_at)`

// erasePlatesSQL erases the plates of at most one batch of sessions chosen by
// the WHERE condition given (on sessions, aliased s0) and rewrites the request
// outcomes and the events that show them, in one statement. SKIP LOCKED: a session another
// transaction holds is left for the next run rather than waited for.
const erasePlatesSQL = `
WITH due AS (
	SELECT s0.id FROM sessions s0
	WHERE s0.plate IS NOT NULL AND s0.state <> 'open' AND (%s)
	ORDER BY ` + endedSQL + `, s0.id LIMIT ? FOR UPDATE SKIP LOCKED
), erased AS (
	UPDATE sessions s SET plate = NULL FROM due WHERE s.id = due.id RETURNING s.id
), rewritten AS (
	UPDATE requests r SET result = jsonb_set(r.result, '{plate}', 'null'::jsonb),
		body_hash = CASE WHEN r.type IN ('session:start', 'session:change') THEN ? ELSE r.body_hash END
	FROM erased
	WHERE jsonb_typeof(r.result->'plate') = 'string' AND r.result->>'id' = erased.id::text
	  AND r.type LIKE 'session:%%'
	RETURNING r.request_id
), events_erased AS (
	UPDATE events e SET data = jsonb_set(e.data, '{plate}', 'null'::jsonb)
	FROM erased
	WHERE e.session_id = erased.id AND jsonb_typeof(e.data->'plate') = 'string'
)
SELECT (SELECT count(*) FROM erased) AS sessions, (SELECT count(*) FROM rewritten) AS requests`

// erasePlatesQuery is erasePlatesSQL for at most limit sessions chosen by
// where (with its args), and its arguments.
func erasePlatesQuery(limit int, where string, args ...any) (string, []any) {
	return fmt.Sprintf(erasePlatesSQL, where), append(append([]any{}, args...), limit, ErasedPlate)
}

func erasePlatesBatch(ctx context.Context, db bun.IDB, limit int, where string, args ...any) (sessions, requests int64, err error) {
	q, all := erasePlatesQuery(limit, where, args...)
	err = db.NewRaw(q, all...).Scan(ctx, &sessions, &requests)
	return sessions, requests, err
}

// dueWhere chooses the sessions that ended before cutoff (endedSQL).
func dueWhere(cutoff time.Time) (string, []any) { return endedSQL + " < ?", []any{cutoff.UTC()} }

// ErasePlates erases the plate of every session that ended before cutoff (now
// minus the plate retention), batch sessions per transaction, oldest end
// first, until none is left. A cancelled session ended when it was cancelled
// (endedSQL).
func ErasePlates(ctx context.Context, db *bun.DB, cutoff time.Time, batch int) (RetentionResult, error) {
	if batch <= 0 {
		batch = RetentionBatch
	}
	var res RetentionResult
	start := time.Now()
	for {
		t0 := time.Now()
		var s, r int64
		err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			var err error
			where, args := dueWhere(cutoff)
			s, r, err = erasePlatesBatch(ctx, tx, batch, where, args...)
			return err
		})
		if err != nil {
			res.Total = time.Since(start)
			return res, fmt.Errorf("erase plates of sessions ended before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		res.Batches++
		res.Longest = max(res.Longest, time.Since(t0))
		res.Sessions += s
		res.Requests += r
		if s < int64(batch) {
			break
		}
	}
	// Refused starts and plate corrections: no session, only the hash.
	for {
		t0 := time.Now()
		r, err := db.NewRaw(`
			WITH due AS (
				SELECT request_id FROM requests
				WHERE status = 'rejected' AND type IN ('session:start', 'session:change') AND body_hash <> ?0 AND updated_at < ?1
				ORDER BY updated_at LIMIT ?2 FOR UPDATE SKIP LOCKED
			)
			UPDATE requests r SET body_hash = ?0 FROM due WHERE r.request_id = due.request_id`, ErasedPlate, cutoff.UTC(), batch).Exec(ctx)
		if err != nil {
			res.Total = time.Since(start)
			return res, fmt.Errorf("erase the hashes of refused requests before %s: %w", cutoff.UTC().Format(time.RFC3339), err)
		}
		n, _ := r.RowsAffected()
		res.Batches++
		res.Longest = max(res.Longest, time.Since(t0))
		res.Requests += n
		if n < int64(batch) {
			break
		}
	}
	res.Total = time.Since(start)
	return res, nil
}

// ErasePlatesOfResident erases, in the caller's transaction, the plates of
// every ended session on any permit of the resident (DOMAIN.md "Privacy":
// erase), in batches of RetentionBatch.
func ErasePlatesOfResident(ctx context.Context, tx bun.IDB, residentID string) (sessions, requests int64, err error) {
	for {
		s, r, err := erasePlatesBatch(ctx, tx, RetentionBatch,
			"s0.permit_id IN (SELECT id FROM permits WHERE resident_id = ?)", residentID)
		if err != nil {
			return sessions, requests, fmt.Errorf("erase plates of resident %s: %w", residentID, err)
		}
		sessions += s
		requests += r
		if s < RetentionBatch {
			return sessions, requests, nil
		}
	}
}

// FinishedRequestsBefore returns those of ids whose request finished (applied
// or rejected) before cutoff: a task of such a request left in Redis is a
// leftover that would only replay the outcome.
func FinishedRequestsBefore(ctx context.Context, db bun.IDB, ids []string, cutoff time.Time) (map[string]bool, error) {
	done := make(map[string]bool)
	if len(ids) == 0 {
		return done, nil
	}
	var got []string
	err := db.NewSelect().Model((*Request)(nil)).Column("request_id").
		Where("request_id IN (?) AND status <> ? AND updated_at < ?", bun.In(ids), RequestPending, cutoff.UTC()).
		Scan(ctx, &got)
	if err != nil {
		return nil, fmt.Errorf("finished requests: %w", err)
	}
	for _, id := range got {
		done[id] = true
	}
	return done, nil
}

// ResidentPermits lists every permit of a resident, oldest first: what an
// export shows and an erase checks.
func ResidentPermits(ctx context.Context, db bun.IDB, residentID string) ([]Permit, error) {
	rows := []Permit{}
	if err := db.NewSelect().Model(&rows).Where("resident_id = ?", residentID).OrderExpr("id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("permits of resident %s: %w", residentID, err)
	}
	return rows, nil
}

// LockResidentPermits locks every permit of a resident, oldest first (the
// order every locker of several permits keeps), so that none is issued
// active, nor a session started, while the resident is being erased: a start
// locks its permit first.
func LockResidentPermits(ctx context.Context, tx Tx, residentID string) ([]Permit, error) {
	rows := []Permit{}
	if err := tx.NewSelect().Model(&rows).Where("resident_id = ?", residentID).OrderExpr("id").For("UPDATE").Scan(ctx); err != nil {
		return nil, fmt.Errorf("lock permits of resident %s: %w", residentID, err)
	}
	ids := make([]int64, len(rows))
	for i, p := range rows {
		ids[i] = p.ID
	}
	if err := tx.hold(ids...); err != nil {
		return nil, err
	}
	return rows, nil
}

// DeleteFavouritesOfResident deletes the favourites of every permit of a
// resident (erase, DOMAIN.md "Privacy").
func DeleteFavouritesOfResident(ctx context.Context, tx bun.IDB, residentID string) (int64, error) {
	res, err := tx.NewDelete().Model((*Favourite)(nil)).
		Where("permit_id IN (SELECT id FROM permits WHERE resident_id = ?)", residentID).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("delete favourites of resident %s: %w", residentID, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// ResidentSessionIDs lists the IDs of every session on a resident's permits:
// what an erase looks for in Redis' task payloads.
func ResidentSessionIDs(ctx context.Context, db bun.IDB, residentID string) ([]string, error) {
	var ids []string
	if err := db.NewRaw(`SELECT s.id::text FROM sessions s JOIN permits p ON p.id = s.permit_id WHERE p.resident_id = ?`,
		residentID).Scan(ctx, &ids); err != nil {
		return nil, fmt.Errorf("sessions of resident %s: %w", residentID, err)
	}
	return ids, nil
}
