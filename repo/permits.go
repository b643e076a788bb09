package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// Permit is a row of permits, with its current permit year's counters.
type Permit struct {
	bun.BaseModel `bun:"table:permits"`

	ID               int64      `bun:"id,pk,autoincrement"`
	ResidentID       string     `bun:"resident_id"`
	AddressID        string     `bun:"address_id"`
	Zone             string     `bun:"zone"`
	Status           string     `bun:"status"`
	BalanceMinutes   int        `bun:"balance_minutes"`
	ReservedMinutes  int        `bun:"reserved_minutes"`
	YearStartsAt     time.Time  `bun:"year_starts_at"`
	YearEndsAt       time.Time  `bun:"year_ends_at"`
	PurchasedMinutes int        `bun:"purchased_minutes"`
	UsedMinutes      int        `bun:"used_minutes"`
	IssuedAt         time.Time  `bun:"issued_at"`
	EndedAt          *time.Time `bun:"ended_at"`
	EndReason        *string    `bun:"end_reason"`
	RequestID        *string    `bun:"request_id"`

	// ZoneUpdatedAt is the version of the permit's zone, read with the permit by
	// LockPermit (zero when read otherwise).
	ZoneUpdatedAt time.Time `bun:"zone_updated_at,scanonly"`
}

// State is what the domain rules need of the permit.
func (p *Permit) State() domain.PermitState {
	return domain.PermitState{
		Active:           p.Status == domain.PermitActive,
		BalanceMinutes:   p.BalanceMinutes,
		PurchasedMinutes: p.PurchasedMinutes,
		UsedMinutes:      p.UsedMinutes,
		ReservedMinutes:  p.ReservedMinutes,
	}
}

// StateAt is State as a request at now would find it once its year is
// current: a permit whose year ended before the rollover ran is rolled over in
// memory (domain.RollYear: counters at zero, the balance carried up to the
// zone's cap), exactly as the worker's transaction would roll it in Postgres
// first. For reads that must write nothing (a quote).
func (p *Permit) StateAt(z *domain.Zone, now time.Time) domain.PermitState {
	st := p.State()
	if p.Status != domain.PermitActive || p.YearEndsAt.After(now) {
		return st
	}
	y := domain.YearState{StartsAt: p.YearStartsAt, EndsAt: p.YearEndsAt, PurchasedMinutes: p.PurchasedMinutes,
		UsedMinutes: p.UsedMinutes, BalanceMinutes: p.BalanceMinutes, ReservedMinutes: p.ReservedMinutes}
	for n := domain.YearsDue(z, y.EndsAt, now); n > 0; n-- {
		_, y = domain.RollYear(z, y)
	}
	st.BalanceMinutes, st.PurchasedMinutes, st.UsedMinutes, st.ReservedMinutes =
		y.BalanceMinutes, y.PurchasedMinutes, y.UsedMinutes, y.ReservedMinutes
	return st
}

// View renders the permit for answers and outcomes.
func (p *Permit) View() jobs.Permit {
	return jobs.Permit{
		ID: FormatID(p.ID), Zone: p.Zone, AddressID: p.AddressID, ResidentID: p.ResidentID,
		Status: p.Status, BalanceMinutes: p.BalanceMinutes, EndedAt: utcPtr(p.EndedAt),
		Year: jobs.PermitYear{
			StartsAt: p.YearStartsAt.UTC(), EndsAt: p.YearEndsAt.UTC(),
			PurchasedMinutes: p.PurchasedMinutes, UsedMinutes: p.UsedMinutes, ReservedMinutes: p.ReservedMinutes,
		},
	}
}

// ErrPermitExists is returned when a permit is inserted for an address that has
// an active permit already (the unique index permits_one_active_per_address).
// The address row lock taken by GatherIssueFacts makes this unreachable for the
// worker's issue path; it backs up that lock for any other writer.
var ErrPermitExists = errors.New("repo: the address has an active permit")

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
// never deadlock. A permit another transaction holds is waited for, or ErrBusy,
// as tx.Locks says.
func LockPermit(ctx context.Context, tx Tx, id int64) (*Permit, error) {
	// The zone's version comes along, so that Store.ZoneOf needs no query of its
	// own while the compiled zone in its cache is current.
	var permits []Permit
	if err := scanPrepared(ctx, tx, tx.Locks.lockPermitSQL(lockedPermitColumns(tx, ""), "permit.id = $1"), []any{id}, &permits); err != nil {
		return nil, fmt.Errorf("lock permit %d: %w", id, err)
	}
	if len(permits) == 0 {
		return nil, tx.Locks.missing(ctx, tx, sql.ErrNoRows, "permits", id, fmt.Sprintf("permit %d", id))
	}
	p := &permits[0]
	if err := tx.hold(p.ID); err != nil {
		return nil, err
	}
	return p, nil
}

// LockPermitForStart is LockPermit for a session's start: the same
// statement also draws the new session's ID (newSessionIDSQL), so that the
// session is written with the outcome, in FinishRequest's statement
// (StartSession), and a start costs no statement of its own for it.
//
// In a shared transaction the permit may have been locked and read ahead,
// with the batch's others (prelock.go).
func LockPermitForStart(ctx context.Context, tx Tx, id int64) (*Permit, int64, error) {
	if l, ok := tx.takeStart(id); ok {
		if err := tx.hold(l.permit.ID); err != nil {
			return nil, 0, err
		}
		return &l.permit, l.sessionID, nil
	}
	var rows []struct {
		Permit    Permit `bun:"embed:p__"`
		SessionID int64  `bun:"new_session_id"`
	}
	if err := scanPrepared(ctx, tx, tx.Locks.lockPermitSQL(lockedPermitColumns(tx, "p__")+", "+newSessionIDSQL+" AS new_session_id",
		"permit.id = $1"), []any{id}, &rows); err != nil {
		return nil, 0, fmt.Errorf("lock permit %d: %w", id, err)
	}
	if len(rows) == 0 {
		return nil, 0, tx.Locks.missing(ctx, tx, sql.ErrNoRows, "permits", id, fmt.Sprintf("permit %d", id))
	}
	if err := tx.hold(rows[0].Permit.ID); err != nil {
		return nil, 0, err
	}
	return &rows[0].Permit, rows[0].SessionID, nil
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
		Returning(columns[Permit](tx, "")).Exec(ctx)
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
// first's entry. Under FailIfBusy another transaction's lock is ErrBusy; two
// units of one shared transaction share its lock, and the second sees the
// first one's entry all the same.
func LockPaymentRef(ctx context.Context, tx Tx, ref string) error {
	return tx.Locks.advisory(ctx, tx, "payment_ref:"+ref, "payment reference")
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
		WherePK().Returning(columns[Permit](tx, "")).Scan(ctx); err != nil {
		return fmt.Errorf("credit permit %d: %w", p.ID, err)
	}
	return nil
}

// EndPermit ends the locked permit p whose open sessions have all been settled:
// the balance left is written off with one expire entry, its favourites are
// deleted, and the permit is ended at plan.At. It is the one place a permit
// ends, so every way of ending one does all of this. The unique index
// ledger_one_end_expiry_per_permit makes a second write-off impossible,
// whatever a caller does.
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
		Returning(columns[Permit](tx, "")).Exec(ctx)
	if err != nil {
		return fmt.Errorf("end permit %d: %w", p.ID, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("end permit %d: it was not active", p.ID)
	}
	return deleteFavourites(ctx, tx, p.ID)
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }

// PermitHolder is the resident who holds a permit, by parkd's own records:
// what a resident's token is checked against, whatever the token claims.
func PermitHolder(ctx context.Context, db bun.IDB, id int64) (string, error) {
	var holders []string
	if err := scanPrepared(ctx, db, `SELECT resident_id FROM permits WHERE id = $1`, []any{id}, &holders); err != nil {
		return "", fmt.Errorf("permit %d: %w", id, err)
	}
	if len(holders) == 0 {
		return "", notFound(sql.ErrNoRows, fmt.Sprintf("permit %d", id))
	}
	holder := holders[0]
	return holder, nil
}

// SessionHolder reads the permit of session id and who holds it, in one
// statement: what the HTTP intake checks before it takes a write on a
// session (ErrNotFound when there is no such session).
func SessionHolder(ctx context.Context, db bun.IDB, id int64) (permitID int64, holder string, err error) {
	var rows []struct {
		PermitID int64  `bun:"permit_id"`
		Holder   string `bun:"resident_id"`
	}
	if err := scanPrepared(ctx, db, `
		SELECT s.permit_id, p.resident_id FROM sessions s JOIN permits p ON p.id = s.permit_id WHERE s.id = $1`,
		[]any{id}, &rows); err != nil {
		return 0, "", fmt.Errorf("session %d: %w", id, err)
	}
	if len(rows) == 0 {
		return 0, "", notFound(sql.ErrNoRows, fmt.Sprintf("session %d", id))
	}
	return rows[0].PermitID, rows[0].Holder, nil
}
