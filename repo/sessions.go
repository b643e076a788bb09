package repo

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// ErrPlateParked is returned when a new session's interval overlaps an open
// session of the same plate in the same zone (the exclusion constraint).
var ErrPlateParked = errors.New("repo: plate already has an open session in this zone")

// GetSession reads a session without locking it.
func GetSession(ctx context.Context, db bun.IDB, id int64) (*Session, error) {
	s := new(Session)
	if err := db.NewSelect().Model(s).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, notFound(err, fmt.Sprintf("session %d", id))
	}
	return s, nil
}

// LockSessionAndPermit locks a session's permit and reads the session. Every
// write to a session happens under its permit's lock (taken first, by every
// writer, so they never deadlock), so the session needs no lock of its own.
func LockSessionAndPermit(ctx context.Context, tx bun.IDB, sessionID int64) (*Session, *Permit, error) {
	p := new(Permit)
	if err := tx.NewSelect().Model(p).ColumnExpr("permit.*").
		ColumnExpr("(SELECT updated_at FROM zones WHERE code = permit.zone) AS zone_updated_at").
		Where("permit.id = (SELECT permit_id FROM sessions WHERE id = ?)", sessionID).
		For(lockClause(ctx)).Scan(ctx); err != nil {
		return nil, nil, lockFailed(ctx, tx, err, "sessions", sessionID, fmt.Sprintf("session %d", sessionID))
	}
	s := new(Session)
	if err := tx.NewSelect().Model(s).Where("id = ?", sessionID).Scan(ctx); err != nil {
		return nil, nil, notFound(err, fmt.Sprintf("session %d", sessionID))
	}
	return s, p, nil
}

// bookOnPermit inserts ledger entries and applies the matching change to the
// locked permit p in one statement, refreshing p. set is the SET list of the
// permit update (counters besides the balance), args its arguments.
func bookOnPermit(ctx context.Context, tx bun.IDB, p *Permit, entries []LedgerEntry, set string, args ...any) error {
	return bookAfter(ctx, tx, p, nil, entries, set, args...)
}

// bookAfter is bookOnPermit with a session update in the same statement (one
// round trip instead of two): the permit changes only if the session update
// changed a row, and otherwise bookAfter returns ErrNotFound and the caller's
// transaction, ledger entries included, must be rolled back.
func bookAfter(ctx context.Context, tx bun.IDB, p *Permit, session *bun.UpdateQuery, entries []LedgerEntry, set string, args ...any) error {
	delta := 0
	for _, e := range entries {
		delta += e.Minutes
	}
	ins := tx.NewInsert().Model(&entries)
	q := tx.NewUpdate().With("booked", ins).Model(p).
		Set("balance_minutes = balance_minutes + ?", delta)
	if session != nil {
		q = q.With("changed", session.Returning("id")).Where("EXISTS (SELECT 1 FROM changed)")
	}
	if set != "" {
		q = q.Set(set, args...)
	}
	if err := q.WherePK().Returning("*").Scan(ctx); err != nil {
		what := fmt.Sprintf("permit %d", p.ID)
		if session != nil {
			what = "open session on " + what
		}
		return notFound(err, what)
	}
	return nil
}

// ApplyStart stores a planned session on the locked permit p and reserves its
// minutes. An overlap with another open session of the plate in the zone is
// ErrPlateParked, and then nothing of it is written and the caller's
// transaction is still usable to record the rejection: the insert meets the
// exclusion constraint with ON CONFLICT DO NOTHING instead of failing.
func ApplyStart(ctx context.Context, tx bun.IDB, p *Permit, plan domain.SessionPlan, requestID string, at time.Time) (*Session, error) {
	s := &Session{
		PermitID: p.ID, Zone: p.Zone, Plate: plan.Plate, Country: plan.Country, State: domain.StateOpen,
		StartAt: plan.StartAt, PlannedEndAt: plan.PlannedEndAt, ReservedMinutes: plan.ReservedMinutes,
		Notices: plan.Notices, RequestID: requestID,
	}
	if s.Notices == nil {
		s.Notices = []domain.Notice{}
	}
	// The only constraint an insert of a fresh session can meet is the plate's
	// exclusion constraint: DO NOTHING turns that into "no row" (no savepoint
	// round trip).
	res, err := tx.NewInsert().Model(s).ExcludeColumn("created_at").
		On("CONFLICT DO NOTHING").Returning("*").Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("insert session: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrPlateParked
	}
	sid := s.ID
	e := []LedgerEntry{{PermitID: p.ID, Kind: LedgerReserve, Minutes: -plan.ReservedMinutes, SessionID: &sid, RequestID: &requestID, At: at}}
	if err := bookOnPermit(ctx, tx, p, e, "reserved_minutes = reserved_minutes + ?", plan.ReservedMinutes); err != nil {
		return nil, fmt.Errorf("reserve on permit %d: %w", p.ID, err)
	}
	return s, nil
}

// ApplyStop writes a stop decision on a locked session and its locked permit, in
// the caller's transaction: for a settlement or cancellation the session's end and
// charge, the release of the whole reservation and the charge as ledger entries,
// and the permit's balance and usage; for a shortening the new planned end and the
// partial release. requestID is nil for auto-stops and reconciliations.
func ApplyStop(ctx context.Context, tx bun.IDB, p *Permit, s *Session, plan domain.StopPlan, requestID *string, at time.Time) error {
	sid := s.ID
	switch plan.Kind {
	case domain.StopSettle, domain.StopCancel:
		state := domain.StateStopped
		if plan.Kind == domain.StopCancel {
			state = domain.StateCancelled
		}
		// The session, its ledger entries and the permit in one statement.
		settle := tx.NewUpdate().Model((*Session)(nil)).
			Set("state = ?", state).Set("end_at = ?", plan.EndAt).Set("charged_minutes = ?", plan.Charge).
			Set("settled_at = ?", at).
			Where("id = ?", s.ID).Where("state = ?", domain.StateOpen)
		entries := []LedgerEntry{
			{PermitID: p.ID, Kind: LedgerRelease, Minutes: plan.Release, SessionID: &sid, RequestID: requestID, At: at},
			{PermitID: p.ID, Kind: LedgerCharge, Minutes: -plan.Charge, SessionID: &sid, RequestID: requestID, At: at},
		}
		if err := bookAfter(ctx, tx, p, settle, entries,
			"reserved_minutes = reserved_minutes - ?, used_minutes = used_minutes + ?", plan.Release, plan.Charge); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("settle session %d: it was not open", s.ID)
			}
			return fmt.Errorf("settle session %d on permit %d: %w", s.ID, p.ID, err)
		}
		end, charged, settledAt := plan.EndAt, plan.Charge, at
		s.State, s.EndAt, s.ChargedMinutes, s.SettledAt = state, &end, &charged, &settledAt
	case domain.StopShorten:
		s.Notices = append(s.Notices, domain.Notice{Code: domain.NoticeShortenedByStop, At: plan.EndAt,
			Message: "the planned end was moved earlier by a stop"})
		if _, err := tx.NewUpdate().Model(s).
			Set("planned_end_at = ?", plan.EndAt).Set("reserved_minutes = ?", plan.NewReserved).
			Set("notices = ?", s.Notices).
			WherePK().Where("state = ?", domain.StateOpen).Returning("*").Exec(ctx); err != nil {
			return fmt.Errorf("shorten session %d: %w", s.ID, err)
		}
		if plan.Release > 0 {
			e := []LedgerEntry{{PermitID: p.ID, Kind: LedgerRelease, Minutes: plan.Release, SessionID: &sid, RequestID: requestID, At: at}}
			if err := bookOnPermit(ctx, tx, p, e, "reserved_minutes = reserved_minutes - ?", plan.Release); err != nil {
				return fmt.Errorf("release of session %d on permit %d: %w", s.ID, p.ID, err)
			}
		}
	}
	return nil
}

// OverdueSessions returns open sessions whose planned end is at or before
// before, oldest first: the ones an auto-stop should already have settled;
// but those in skip (the ones the caller failed to settle for good).
func OverdueSessions(ctx context.Context, db bun.IDB, before time.Time, skip []int64, limit int) ([]int64, error) {
	var ids []int64
	q := db.NewSelect().Model((*Session)(nil)).Column("id").
		Where("state = ?", domain.StateOpen).Where("planned_end_at <= ?", before)
	if len(skip) > 0 {
		q = q.Where("id NOT IN (?)", bun.In(skip))
	}
	err := q.OrderExpr("planned_end_at").Limit(int64(limit)).Scan(ctx, &ids)
	if err != nil {
		return nil, fmt.Errorf("overdue sessions: %w", err)
	}
	return ids, nil
}

// OpenSessionEnds pages through the open sessions by ID, after the given ID.
func OpenSessionEnds(ctx context.Context, db bun.IDB, afterID int64, limit int) ([]Session, error) {
	var rows []Session
	err := db.NewSelect().Model(&rows).Column("id", "planned_end_at").
		Where("state = ?", domain.StateOpen).Where("id > ?", afterID).
		OrderExpr("id").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("open sessions: %w", err)
	}
	return rows, nil
}
