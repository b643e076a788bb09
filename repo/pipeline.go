package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/uptrace/bun"
)

// Held outcomes (issue 16). In a transaction several units share (the
// Coalescer's), each unit used to send its FinishRequest and wait for the
// answer before the next unit began: a statement and a round trip per
// request, on top of its lock. A pipelined unit's FinishRequest is held
// instead, and the held outcomes of the whole batch are written before the
// COMMIT by one statement (finish.go), and the rows the units lock first are
// locked before them by two (prelock.go): a shared transaction of k starts
// and stops makes about five round trips (BEGIN, the two locks, the
// outcomes, COMMIT) instead of 2k+2, and Postgres pays for three statements,
// not 2k.
//
// Holding a write back is safe only if no unit decides anything from what
// a held one writes. What FinishRequest writes (a request's row, a session
// inserted or settled, ledger entries and permit counters, events, outbox
// rows) is read by a unit only through its permit's lock, or is guarded by a
// constraint; so:
//
//   - a permit is held by one pipelined unit per shared transaction (until
//     the next flush, Tx.hold): a pipelined unit that locks a permit an
//     earlier one of the batch locked is ErrBusy and runs alone after the
//     commit, where it reads what the first one wrote;
//   - a unit that is not pipelined (it may read anything) runs only after
//     the held statements were sent (the Coalescer flushes first);
//   - a start whose plate the flush finds parked (by a unit of the same
//     batch, or long before) wrote nothing: it runs again alone after the
//     commit, as a busy unit does, and there its refusal is recorded;
//   - anything else refused at the flush (a request ID decided twice) fails
//     the flush, and the Coalescer then runs every unit of the batch again
//     alone, as for any failed unit, where FinishRequest runs at once and
//     says what it is.
//
// The held outcomes are one statement, so a unit's outcome cannot read what
// another's writes in it (finish.go); the rules above are also what makes
// that safe.
//
// A unit that is not pipelined needs no permit of its own: it runs after the
// held outcomes were sent, and what it writes is written at once.

// sharedTx is what the units of one shared transaction share: its
// transaction, who holds which permit, and the held outcomes.
type sharedTx struct {
	tx      bun.Tx
	holders map[int64]int // permit ID → the unit (its index in the batch) that locked it
	held    []heldUnit
	// Rows locked and read ahead for the units' lock calls (prelock.go): a
	// start's permit by its ID, a stop's session by its ID.
	starts map[int64]startLock
	stops  map[int64]stopLock
}

// heldUnit is a FinishRequest held for the flush, and its unit's place in
// the batch.
type heldUnit struct {
	unit   int
	finish finishUnit
}

func newSharedTx(tx bun.Tx) *sharedTx {
	return &sharedTx{tx: tx, holders: map[int64]int{}, starts: map[int64]startLock{}, stops: map[int64]stopLock{}}
}

// hold records that tx's unit locked these permits; a permit an earlier
// pipelined unit of the same shared transaction locked since the last flush
// is ErrBusy (see above). For any other unit it does nothing.
func (tx Tx) hold(permits ...int64) error {
	if tx.shared == nil || !tx.pipelined {
		return nil
	}
	for _, id := range permits {
		if u, ok := tx.shared.holders[id]; ok && u != tx.unit {
			return ErrBusy
		}
	}
	for _, id := range permits {
		tx.shared.holders[id] = tx.unit
	}
	return nil
}

// holding says whether db is a pipelined unit's share of a transaction,
// whose FinishRequest is held for the flush.
func holding(db bun.IDB) (Tx, bool) {
	tx, ok := db.(Tx)
	return tx, ok && tx.shared != nil && tx.pipelined
}

// flush writes the held outcomes in one statement, in the order they were
// held, and checks each one's. It returns the units (their places in the
// batch) whose start found its plate parked and wrote nothing, to run again
// alone after the commit; any other failure is the error (the transaction
// must then be rolled back). Once written, the held outcomes are visible to
// what follows, so every permit is free again.
func (s *sharedTx) flush(ctx context.Context) (parked []int, err error) {
	// A unit that is not pipelined may follow, and write any row: what was
	// read ahead is forgotten (prelock.go), whether or not anything was held.
	clear(s.starts)
	clear(s.stops)
	if len(s.held) == 0 {
		return nil, nil
	}
	held := s.held
	s.held = nil
	clear(s.holders)
	// Outside any unit's own recovery: a panic here must still end in an
	// error, and the transaction be rolled back.
	defer func() {
		if p := recover(); p != nil {
			parked, err = nil, fmt.Errorf("panic in held outcomes: %v", p)
		}
	}()
	units := make([]finishUnit, len(held))
	for i, h := range held {
		units[i] = h.finish
	}
	errs, err := finishUnits(ctx, s.tx, units)
	if err != nil {
		return nil, fmt.Errorf("held outcomes of %d requests: %w", len(held), err)
	}
	var first error
	for i, err := range errs {
		switch {
		case errors.Is(err, ErrPlateParked):
			parked = append(parked, held[i].unit)
		case err != nil && first == nil:
			first = err
		}
	}
	if first != nil {
		return nil, fmt.Errorf("held outcomes of %d requests: %w", len(held), first)
	}
	return parked, nil
}
