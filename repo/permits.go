package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// GetPermit reads a permit without locking it.
func GetPermit(ctx context.Context, db bun.IDB, id int64) (*Permit, error) {
	p := new(Permit)
	if err := db.NewSelect().Model(p).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, notFound(err, fmt.Sprintf("permit %d", id))
	}
	return p, nil
}

// LockPermit reads a permit and locks its row until the transaction ends. Every
// change of a permit's balance, reservations or counters happens under this lock,
// taken before any session lock, so concurrent requests on one permit serialise and
// never deadlock.
func LockPermit(ctx context.Context, tx bun.IDB, id int64) (*Permit, error) {
	p := new(Permit)
	// The zone's version comes along, so that Store.ZoneOf needs no query of its
	// own while the compiled zone in its cache is current.
	if err := tx.NewSelect().Model(p).ColumnExpr("permit.*").
		ColumnExpr("(SELECT updated_at FROM zones WHERE code = permit.zone) AS zone_updated_at").
		Where("permit.id = ?", id).For(lockClause(ctx)).Scan(ctx); err != nil {
		return nil, lockFailed(ctx, tx, err, "permits", id, fmt.Sprintf("permit %d", id))
	}
	return p, nil
}

// GatherIssueFacts collects what the issue rules need, locking the address row so
// that two concurrent issues for one address serialise (the unique index on active
// permits per address backs this up).
func GatherIssueFacts(ctx context.Context, tx bun.IDB, residentID, addressID string) (domain.IssueFacts, error) {
	var f domain.IssueFacts
	addr := new(Address)
	err := tx.NewSelect().Model(addr).Where("id = ?", addressID).For("UPDATE").Scan(ctx)
	if err != nil {
		if err = notFound(err, "address "+addressID); isNotFound(err) {
			return f, nil
		}
		return f, err
	}
	f.AddressKnown = true
	if addr.Zone != nil {
		f.AddressZone = *addr.Zone
	}
	if f.Registered, err = tx.NewSelect().Model((*Registration)(nil)).
		Where("resident_id = ? AND address_id = ?", residentID, addressID).Exists(ctx); err != nil {
		return f, fmt.Errorf("registration of %s at %s: %w", residentID, addressID, err)
	}
	if f.ActivePermitExists, err = tx.NewSelect().Model((*Permit)(nil)).
		Where("address_id = ? AND status = 'active'", addressID).Exists(ctx); err != nil {
		return f, fmt.Errorf("permits at %s: %w", addressID, err)
	}
	return f, nil
}

// InsertPermit issues a permit with an empty balance in the permit year that
// contains now. An address with an active permit already is ErrPermitExists, and
// then the caller's transaction is still usable (to record the rejection): the
// unique index is met with ON CONFLICT DO NOTHING rather than a failed statement.
func InsertPermit(ctx context.Context, tx bun.IDB, z *domain.Zone, residentID, addressID, requestID string, now time.Time) (*Permit, error) {
	ys, ye := z.PermitYear(now)
	p := &Permit{
		ResidentID: residentID, AddressID: addressID, Zone: z.Code, Status: domain.PermitActive,
		YearStartsAt: ys, YearEndsAt: ye, IssuedAt: now, RequestID: &requestID,
	}
	res, err := tx.NewInsert().Model(p).
		On("CONFLICT (address_id) WHERE status = 'active' DO NOTHING").
		Returning("*").Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("insert permit: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, fmt.Errorf("insert permit at %s: %w", addressID, ErrPermitExists)
	}
	return p, nil
}

// TopupExists reports whether this payment reference was already booked on the permit.
func TopupExists(ctx context.Context, tx bun.IDB, permitID int64, paymentRef string) (bool, error) {
	return tx.NewSelect().Model((*LedgerEntry)(nil)).
		Where("permit_id = ? AND kind = ? AND payment_ref = ?", permitID, LedgerTopup, paymentRef).Exists(ctx)
}

// ApplyTopup books bought minutes: a ledger entry with the amount and payment
// reference, and the new balance and purchase counter, on the locked permit p.
func ApplyTopup(ctx context.Context, tx bun.IDB, p *Permit, t domain.Topup, paymentRef, requestID string, at time.Time) error {
	e := &LedgerEntry{PermitID: p.ID, Kind: LedgerTopup, Minutes: t.Minutes, Cents: &t.Cents,
		PaymentRef: &paymentRef, RequestID: &requestID, At: at}
	if _, err := tx.NewInsert().Model(e).Exec(ctx); err != nil {
		return fmt.Errorf("book top-up: %w", err)
	}
	if err := tx.NewUpdate().Model(p).
		Set("balance_minutes = balance_minutes + ?", t.Minutes).
		Set("purchased_minutes = purchased_minutes + ?", t.Minutes).
		WherePK().Returning("*").Scan(ctx); err != nil {
		return fmt.Errorf("credit permit %d: %w", p.ID, err)
	}
	return nil
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }
