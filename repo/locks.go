package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/uptrace/bun"
)

// Writers serialise on locks: a permit's row (LockPermit, LockSessionAndPermit,
// every writer taking the permit before anything else, so that none waits in a
// circle) and a payment reference's advisory lock (LockPaymentRef). What such a
// lock does when another transaction holds it is the transaction's lock policy,
// carried by the Tx itself: whoever begins the transaction chooses it (Store.InTx
// waits, a Coalescer's shared transaction does not), and whoever reads a lock
// call sees which SQL it runs by looking at the Tx it is given.

// Tx is a transaction and the policy its locks follow. It is a bun.IDB, so every
// statement of the package runs in it.
type Tx struct {
	bun.Tx
	Locks LockPolicy
	// shared is the state of a transaction several units share (the
	// Coalescer's), nil for a unit alone; unit is this unit's place in it,
	// and pipelined says whether its FinishRequest is held (pipeline.go).
	shared    *sharedTx
	unit      int
	pipelined bool
}

// LockPolicy is what a lock does when another transaction holds it.
type LockPolicy int

const (
	// WaitForLocks waits for the holder to end (SELECT ... FOR UPDATE OF
	// permit, pg_advisory_xact_lock): the policy of a transaction of one unit
	// of work, which holds nothing another writer waits for while it waits.
	WaitForLocks LockPolicy = iota
	// FailIfBusy does not wait: a held lock is ErrBusy at once (FOR UPDATE OF
	// permit SKIP LOCKED, pg_try_advisory_xact_lock). A transaction shared by
	// several units must not wait: it would wait for one permit while holding
	// another unit's, and two such transactions could wait for each other.
	FailIfBusy
)

func (p LockPolicy) String() string {
	if p == FailIfBusy {
		return "fail if busy"
	}
	return "wait for locks"
}

// ErrBusy is returned by a lock under FailIfBusy when another transaction
// holds it. The unit has written nothing that matters; it is run again in a
// transaction of its own that waits its turn (see Coalescer).
var ErrBusy = errors.New("repo: row locked by another transaction")

// permitFor is the FOR clause that locks a permit read with its alias permit:
// under FailIfBusy a held row reads as absent instead of being waited for.
func (p LockPolicy) permitFor() string {
	return "UPDATE OF permit" + p.skipLocked()
}

// skipLocked ends a FOR UPDATE clause as the policy says: under FailIfBusy a
// held row reads as absent instead of being waited for.
func (p LockPolicy) skipLocked() string {
	if p == FailIfBusy {
		return " SKIP LOCKED"
	}
	return ""
}

// lockPermitSQL is the statement that locks the permit where selects (alias
// permit, $1… parameters), reading cols (lockedPermitColumns, and whatever
// else the statement reads with it), as the policy says: one text per policy
// and condition, so that each is prepared once (prepared.go).
func (p LockPolicy) lockPermitSQL(cols, where string) string {
	return `SELECT ` + cols + ` FROM permits AS permit WHERE ` + where + ` FOR ` + p.permitFor()
}

// lockedPermitColumns is what a lock reads of a permit (alias permit): its
// columns and its zone's version (so that Store.ZoneOf needs no query of its
// own while the compiled zone in its cache is current), each named prefix +
// its column, for a Permit field tagged bun:"embed:prefix" ("" for a Permit).
func lockedPermitColumns(db bun.IDB, prefix string) string {
	return aliasedColumns[Permit](db, "permit", prefix) +
		", (SELECT updated_at FROM zones WHERE code = permit.zone) AS " + prefix + "zone_updated_at"
}

// missing explains a permit lock that found no row: under FailIfBusy the row
// may exist but be held by another transaction (ErrBusy); otherwise what is
// missing is not found (ErrNotFound, naming what). table and id name the row
// whose existence decides.
func (p LockPolicy) missing(ctx context.Context, db bun.IDB, err error, table string, id int64, what string) error {
	if p == FailIfBusy && errors.Is(err, sql.ErrNoRows) {
		exists, xerr := db.NewSelect().TableExpr(table).Where("id = ?", id).Exists(ctx)
		if xerr != nil {
			return xerr
		}
		if exists {
			return ErrBusy
		}
	}
	return notFound(err, what)
}

// advisory takes the transaction-scoped advisory lock named key; what names
// it in errors.
func (p LockPolicy) advisory(ctx context.Context, db bun.IDB, key, what string) error {
	if p == FailIfBusy {
		var ok bool
		if err := db.NewRaw("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0))", key).Scan(ctx, &ok); err != nil {
			return fmt.Errorf("lock %s: %w", what, err)
		}
		if !ok {
			return ErrBusy
		}
		return nil
	}
	if _, err := db.NewRaw("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", key).Exec(ctx); err != nil {
		return fmt.Errorf("lock %s: %w", what, err)
	}
	return nil
}
