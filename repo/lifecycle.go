package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// ErrPermitExists is returned when a permit is inserted for an address that has
// an active permit already (the unique index permits_one_active_per_address).
// The address row lock taken by GatherIssueFacts makes this unreachable for the
// worker's issue path; it backs up that lock for any other writer.
var ErrPermitExists = errors.New("repo: the address has an active permit")

// LockOpenSessions locks every open session of a permit whose row the caller has
// locked already (permit first, then sessions: the order every writer uses).
func LockOpenSessions(ctx context.Context, tx bun.IDB, permitID int64) ([]*Session, error) {
	var rows []*Session
	err := tx.NewSelect().Model(&rows).
		Where("permit_id = ? AND state = ?", permitID, domain.StateOpen).
		OrderExpr("id").For("UPDATE").Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("open sessions of permit %d: %w", permitID, err)
	}
	return rows, nil
}

// EndPermit ends the locked permit p whose open sessions have all been settled:
// the balance left is written off with one expire entry, and the permit is ended
// at plan.At. The unique index ledger_one_expiry_per_permit makes a second
// write-off impossible, whatever a caller does.
func EndPermit(ctx context.Context, tx bun.IDB, p *Permit, plan domain.EndPlan, requestID string, at time.Time) error {
	if p.ReservedMinutes != 0 {
		return fmt.Errorf("end permit %d: %d minutes still reserved by open sessions", p.ID, p.ReservedMinutes)
	}
	if expire := domain.Expiry(p.BalanceMinutes); expire > 0 {
		e := &LedgerEntry{PermitID: p.ID, Kind: LedgerExpire, Minutes: -expire, RequestID: &requestID, At: at}
		if _, err := tx.NewInsert().Model(e).Exec(ctx); err != nil {
			return fmt.Errorf("book expiry of permit %d: %w", p.ID, err)
		}
	}
	res, err := tx.NewUpdate().Model(p).
		Set("status = ?", domain.PermitEnded).
		Set("ended_at = ?", plan.At).
		Set("end_reason = ?", plan.Reason).
		Set("balance_minutes = balance_minutes - ?", domain.Expiry(p.BalanceMinutes)).
		WherePK().Where("status = ?", domain.PermitActive).
		Returning("*").Exec(ctx)
	if err != nil {
		return fmt.Errorf("end permit %d: %w", p.ID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("end permit %d: it was not active", p.ID)
	}
	return nil
}
