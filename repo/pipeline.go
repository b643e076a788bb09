package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
)

// Pipelined outcomes (issue 16). In a transaction several units share (the
// Coalescer's), each unit used to send its FinishRequest and wait for the
// answer before the next unit began: a round trip per request, on top of its
// lock. A pipelined unit's FinishRequest is held instead, and the held
// statements of the whole batch go to Postgres together before the COMMIT,
// in one write, their answers read in one go (pgconn's pipeline): a shared
// transaction of k units makes k+3 round trips instead of 2k+2.
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
// A unit that is not pipelined needs no permit of its own: it runs after the
// held outcomes were sent, and what it writes is written at once.

// sharedTx is what the units of one shared transaction share: its
// connection, who holds which permit, and the held statements.
type sharedTx struct {
	conn    bun.Conn
	holders map[int64]int // permit ID → the unit (its index in the batch) that locked it
	held    []heldFinish
}

// heldFinish is a FinishRequest held for the flush: its unit, its
// statement, and what checks the rows it returns (checkFinish).
type heldFinish struct {
	unit  int // the unit's place in the batch
	query string
	args  []any
	check func([]finishRow) error
}

func newSharedTx(conn bun.Conn) *sharedTx {
	return &sharedTx{conn: conn, holders: map[int64]int{}}
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

// flush sends the held statements in one pipeline, in the order they were
// held, and checks each one's rows. It returns the units (their places in
// the batch) whose start found its plate parked and wrote nothing, to run
// again alone after the commit; any other failure is the error (the
// transaction must then be rolled back). Once sent, the held outcomes are
// visible to what follows, so every permit is free again.
func (s *sharedTx) flush(ctx context.Context) (parked []int, err error) {
	if len(s.held) == 0 {
		return nil, nil
	}
	held := s.held
	s.held = nil
	clear(s.holders)
	err = s.conn.Raw(func(driverConn any) (err error) {
		// Outside any unit's own recovery: a panic here must still end in
		// an error, and the connection be given back whole.
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic in held outcomes: %v", p)
			}
		}()
		sc, ok := driverConn.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("repo: pipeline on a %T connection", driverConn)
		}
		conn := sc.Conn()
		// The same statement prepared once per connection, as queryPrepared
		// does (name == sql: pgx names it from the text and keeps it).
		batch := &pgconn.Batch{}
		var eqb pgx.ExtendedQueryBuilder
		for _, h := range held {
			sd, err := conn.Prepare(ctx, h.query, h.query)
			if err != nil {
				return fmt.Errorf("prepare held outcome: %w", err)
			}
			if err := eqb.Build(conn.TypeMap(), sd, h.args); err != nil {
				return fmt.Errorf("encode held outcome: %w", err)
			}
			batch.ExecPrepared(sd.Name, eqb.ParamValues, eqb.ParamFormats, eqb.ResultFormats)
		}
		mrr := conn.PgConn().ExecBatch(ctx, batch)
		var first error
		for _, h := range held {
			if !mrr.NextResult() {
				break
			}
			rows := pgx.RowsFromResultReader(conn.TypeMap(), mrr.ResultReader())
			got, err := scanFinishRows(rows)
			if err == nil && first == nil {
				err = h.check(got)
				if errors.Is(err, ErrPlateParked) {
					parked = append(parked, h.unit)
					continue
				}
			}
			if err != nil && first == nil {
				first = err
			}
		}
		if err := mrr.Close(); err != nil && first == nil {
			first = err
		}
		if first != nil {
			return fmt.Errorf("held outcomes of %d requests: %w", len(held), first)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return parked, nil
}

// scanFinishRows reads the rows of finishSQL.
func scanFinishRows(rows pgx.Rows) ([]finishRow, error) {
	defer rows.Close()
	var out []finishRow
	for rows.Next() {
		var r finishRow
		if err := rows.Scan(&r.ID, &r.TaskID, &r.Done, &r.Started, &r.Notified, &r.Events, &r.Booked); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
