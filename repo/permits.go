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

// LockPaymentRef takes the lock of a payment reference until the transaction
// ends. Two top-ups naming one reference on two permits hold each its own
// permit's lock, so without it both could find the reference unused and both
// book it; under it they decide one after the other, and the second sees the
// first's entry. In a transaction shared by the Coalescer it does not wait for
// another transaction's lock but says ErrBusy (see Coalescer); within the shared
// transaction itself the lock is held already, and the second unit sees the
// first one's entry all the same.
func LockPaymentRef(ctx context.Context, tx bun.IDB, ref string) error {
	key := "payment_ref:" + ref
	if shared(ctx) {
		var ok bool
		if err := tx.NewRaw("SELECT pg_try_advisory_xact_lock(hashtextextended(?, 0))", key).Scan(ctx, &ok); err != nil {
			return fmt.Errorf("lock payment reference: %w", err)
		}
		if !ok {
			return ErrBusy
		}
		return nil
	}
	if _, err := tx.NewRaw("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", key).Exec(ctx); err != nil {
		return fmt.Errorf("lock payment reference: %w", err)
	}
	return nil
}

// PriorTopup returns the top-up already booked under a payment reference, as
// the rule sees it (nil: the reference is unused): the one on permitID if there
// is one (an old reference booked on several permits before references were
// unique), otherwise the reference's one top-up. Call it under LockPaymentRef.
func PriorTopup(ctx context.Context, tx bun.IDB, permitID int64, ref string) (*domain.PriorPayment, error) {
	var rows []struct {
		SamePermit bool `bun:"same_permit"`
		Minutes    int  `bun:"minutes"`
	}
	// Two index lookups: ledger_one_topup_per_payment, then ledger_payment_ref_used_once.
	err := tx.NewRaw(`
		SELECT * FROM (
			SELECT true AS same_permit, minutes FROM ledger
			WHERE kind = 'topup' AND permit_id = ? AND payment_ref = ?
			UNION ALL
			SELECT permit_id = ?, minutes FROM ledger
			WHERE kind = 'topup' AND payment_ref = ? AND duplicate_of_topup IS NULL
		) u ORDER BY same_permit DESC LIMIT 1`, permitID, ref, permitID, ref).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("top-ups under a payment reference: %w", err)
	}
	if len(rows) == 0 {
		return nil, nil
	}
	return &domain.PriorPayment{SamePermit: rows[0].SamePermit, Minutes: rows[0].Minutes}, nil
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

// PermitHolder is the resident who holds a permit, by parkd's own records:
// what a resident's token is checked against, whatever the token claims.
func PermitHolder(ctx context.Context, db bun.IDB, id int64) (string, error) {
	var holder string
	if err := db.NewSelect().Table("permits").Column("resident_id").Where("id = ?", id).Scan(ctx, &holder); err != nil {
		return "", notFound(err, fmt.Sprintf("permit %d", id))
	}
	return holder, nil
}
