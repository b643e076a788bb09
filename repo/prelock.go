package repo

import (
	"context"
	"fmt"

	"github.com/uptrace/bun"
)

// Locks taken for a batch at once (issue 16). Every start and stop begins
// with its permit's lock (LockPermitForStart, LockSessionAndPermit): a
// statement and a round trip per request, before anything else of it can
// run. A pipelined unit names the row it will lock (Prelock) when it is
// submitted, and a shared transaction locks all its units' rows in two
// statements before the first unit runs (one for the starts' permits, one
// for the stops' sessions with their permits); the lock call of a unit then
// takes what was read for it instead of asking Postgres.
//
// What was read is what the lock would have read: the rows are locked by
// the statement that reads them, in the unit's transaction, and nothing
// writes them between that statement and the unit's lock call. Pipelined
// units write through held outcomes only (pipeline.go), a permit belongs to
// one of them per batch (Tx.hold), and what a unit that is not pipelined may
// write runs after a flush, which forgets every row read ahead. A row read
// ahead serves one lock call; a unit whose row was not read (held by another
// transaction, or absent) locks it itself, as it would have.

// Prelock is the row a pipelined unit will lock first (Coalescer.DoPipelined):
// StartPermit for a session's start (LockPermitForStart), Session for a
// session's stop (LockSessionAndPermit); zero for neither.
type Prelock struct {
	StartPermit int64
	Session     int64
}

// startLock is a permit read ahead for a start, with the new session's ID.
type startLock struct {
	permit    Permit
	sessionID int64
}

// stopLock is a session read ahead for a stop, with its permit.
type stopLock struct {
	session Session
	permit  Permit
}

// prelock locks, under the shared transaction's policy (FailIfBusy: a row
// another transaction holds is skipped), the rows the pipelined units of
// pres name, and keeps them for their lock calls. Fewer than two rows are
// not worth a statement: their units lock them themselves.
func (s *sharedTx) prelock(ctx context.Context, tx Tx, pres []Prelock) (err error) {
	// Outside any unit's own recovery: a panic here must end in an error
	// (every unit then runs alone), not in the committer's end.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in the locks read ahead: %v", p)
		}
	}()
	var permits, sessions []int64
	for _, p := range pres {
		if p.StartPermit != 0 {
			permits = append(permits, p.StartPermit)
		}
		if p.Session != 0 {
			sessions = append(sessions, p.Session)
		}
	}
	if len(permits) > 1 {
		var rows []struct {
			Permit    Permit `bun:"embed:p__"`
			SessionID int64  `bun:"new_session_id"`
		}
		q, _ := prelockSQL(tx, tx.Locks)
		if err := scanPrepared(ctx, tx, q, []any{permits}, &rows); err != nil {
			return fmt.Errorf("lock the permits of %d starts: %w", len(permits), err)
		}
		for _, r := range rows {
			s.starts[r.Permit.ID] = startLock{permit: r.Permit, sessionID: r.SessionID}
		}
	}
	if len(sessions) > 1 {
		var rows []struct {
			Permit  Permit  `bun:"embed:p__"`
			Session Session `bun:"embed:s__"`
		}
		_, q := prelockSQL(tx, tx.Locks)
		if err := scanPrepared(ctx, tx, q, []any{sessions}, &rows); err != nil {
			return fmt.Errorf("lock the sessions of %d stops: %w", len(sessions), err)
		}
		for _, r := range rows {
			s.stops[r.Session.ID] = stopLock{session: r.Session, permit: r.Permit}
		}
	}
	return nil
}

// prelockSQL is prelock's two statements under policy p, each taking an
// array of IDs ($1): the starts' permits (with a new session's ID each), and
// the stops' sessions with their permits. Each ID is locked by a lateral
// subquery that is the lookup by primary key a lock of one row is: a join of
// the array with the table would be planned from the table's statistics
// when the statement is first prepared, and a plan made while the table was
// nearly empty (a scan of it all, kept for the connection's life where no
// ANALYZE comes) would read the whole table for every batch as it grows.
func prelockSQL(db bun.IDB, p LockPolicy) (starts, stops string) {
	const each = `unnest($1::int8[]) AS want(id), LATERAL `
	starts = `SELECT x.*, ` + newSessionIDSQL + ` AS new_session_id FROM ` + each +
		`(` + p.lockPermitSQL(lockedPermitColumns(db, "p__"), "permit.id = want.id") + `) AS x`
	stops = `SELECT x.* FROM ` + each + `(` + lockSessionsSQL(db, p, "want.id") + `) AS x`
	return starts, stops
}

// takeStart is the permit read ahead for tx's unit's start, if any: it
// serves one lock call.
func (tx Tx) takeStart(permitID int64) (startLock, bool) {
	if tx.shared == nil || !tx.pipelined {
		return startLock{}, false
	}
	return take(tx.shared.starts, permitID)
}

// takeStop is the session (and permit) read ahead for tx's unit's stop, if
// any: it serves one lock call.
func (tx Tx) takeStop(sessionID int64) (stopLock, bool) {
	if tx.shared == nil || !tx.pipelined {
		return stopLock{}, false
	}
	return take(tx.shared.stops, sessionID)
}

// take removes and returns m's entry for id, if any.
func take[T any](m map[int64]T, id int64) (T, bool) {
	v, ok := m[id]
	delete(m, id)
	return v, ok
}
