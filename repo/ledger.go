package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
)

// LedgerEntry is a row of the ledger.
type LedgerEntry struct {
	bun.BaseModel `bun:"table:ledger"`

	ID         int64     `bun:"id,pk,autoincrement"`
	PermitID   int64     `bun:"permit_id"`
	Kind       string    `bun:"kind"`
	Minutes    int       `bun:"minutes"`
	Cents      *int64    `bun:"cents"`
	SessionID  *int64    `bun:"session_id"`
	RequestID  *string   `bun:"request_id"`
	PaymentRef *string   `bun:"payment_ref"`
	At         time.Time `bun:"at"`
	// DuplicateOfTopup is set only on top-ups booked before a payment
	// reference was unique in the whole system, under a reference an earlier
	// top-up (this one) had used already.
	DuplicateOfTopup *int64 `bun:"duplicate_of_topup"`
}

// Ledger kinds.
const (
	LedgerTopup   = "topup"
	LedgerReserve = "reserve"
	LedgerRelease = "release"
	LedgerCharge  = "charge"
	LedgerExpire  = "expire"
)

// View renders the entry for answers.
func (e *LedgerEntry) View() jobs.LedgerEntry {
	v := jobs.LedgerEntry{ID: FormatID(e.ID), Kind: e.Kind, Minutes: e.Minutes, Cents: e.Cents,
		RequestID: e.RequestID, PaymentRef: e.PaymentRef, At: e.At.UTC()}
	if e.SessionID != nil {
		s := FormatID(*e.SessionID)
		v.SessionID = &s
	}
	return v
}

// LedgerPage returns up to limit ledger entries of a permit, newest first, with
// IDs below before (0: from the newest). The ID orders entries as they were
// booked, which is also the order of their instants within one permit (every
// booking happens under the permit's lock).
func LedgerPage(ctx context.Context, db bun.IDB, permitID, before int64, limit int) ([]LedgerEntry, error) {
	var rows []LedgerEntry
	q := db.NewSelect().Model(&rows).Where("permit_id = ?", permitID)
	if before > 0 {
		q = q.Where("id < ?", before)
	}
	if err := q.OrderExpr("id DESC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("ledger of permit %d: %w", permitID, err)
	}
	return rows, nil
}
