package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// Session is a row of sessions.
type Session struct {
	bun.BaseModel `bun:"table:sessions"`

	ID              int64           `bun:"id,pk,autoincrement"`
	PermitID        int64           `bun:"permit_id"`
	Zone            string          `bun:"zone"`
	Plate           string          `bun:"plate,nullzero"` // "" (NULL) once erased: retention.go
	Country         string          `bun:"country"`
	State           domain.State    `bun:"state"`
	StartAt         time.Time       `bun:"start_at"`
	PlannedEndAt    time.Time       `bun:"planned_end_at"`
	EndAt           *time.Time      `bun:"end_at"`
	ReservedMinutes int             `bun:"reserved_minutes"`
	ChargedMinutes  *int            `bun:"charged_minutes"`
	Notices         []domain.Notice `bun:"notices,type:jsonb"`
	RequestID       string          `bun:"request_id"`
	CreatedAt       time.Time       `bun:"created_at,default:current_timestamp"`
	SettledAt       *time.Time      `bun:"settled_at"`

	// The session's right in the national register (events.go): the zone's
	// register codes at the start (nil: not registered), the right's version,
	// and what the registrar acknowledged or refused.
	Registration           *domain.ZoneRegistration `bun:"registration,type:jsonb"`
	RightVersion           int                      `bun:"right_version"`
	RightChangedAt         *time.Time               `bun:"right_changed_at"`
	RightRegisteredVersion int                      `bun:"right_registered_version"`
	RightRegisteredAt      *time.Time               `bun:"right_registered_at"`
	RightRejectedVersion   int                      `bun:"right_rejected_version"`
	RightRejection         *string                  `bun:"right_rejection"`
}

// RegistrationView is where the session's right stands with the registrar.
func (s *Session) RegistrationView() jobs.Registration {
	r := jobs.Registration{Status: jobs.RegistrationOff, Version: s.RightVersion}
	switch {
	case s.RightVersion == 0:
	case s.RightRegisteredVersion >= s.RightVersion:
		r.Status, r.RegisteredAt = jobs.RegistrationRegistered, utcPtr(s.RightRegisteredAt)
	case s.RightRejectedVersion >= s.RightVersion:
		r.Status = jobs.RegistrationRejected
	default:
		r.Status = jobs.RegistrationPending
	}
	return r
}

// DomainState is what the stop rules need of the session.
func (s *Session) DomainState() domain.SessionState {
	return domain.SessionState{State: s.State, StartAt: s.StartAt, PlannedEndAt: s.PlannedEndAt, ReservedMinutes: s.ReservedMinutes}
}

// View renders the session as seen at now.
func (s *Session) View(now time.Time) jobs.Session {
	notices := s.Notices
	if notices == nil {
		notices = []domain.Notice{}
	}
	return jobs.Session{
		ID: FormatID(s.ID), PermitID: FormatID(s.PermitID), Zone: s.Zone, Plate: jobs.Plate(s.Plate), Country: s.Country,
		Status: domain.StatusAt(s.State, s.StartAt, now), StartAt: s.StartAt.UTC(),
		PlannedEndAt: s.PlannedEndAt.UTC(), EndAt: utcPtr(s.EndAt),
		ReservedMinutes: s.ReservedMinutes, ChargedMinutes: s.ChargedMinutes, Notices: notices,
		Registration: s.RegistrationView(),
	}
}

// ErrPlateParked is returned when a new session's interval overlaps an open
// session of the same plate in the same zone (the exclusion constraint).
var ErrPlateParked = errors.New("repo: plate already has an open session in this zone")

// GetSession reads a session without locking it.
func GetSession(ctx context.Context, db bun.IDB, id int64) (*Session, error) {
	return getPrepared[Session](ctx, db, fmt.Sprintf("session %d", id), `SELECT `+columns[Session](db, "")+` FROM sessions WHERE id = $1`, id)
}

// LockSessionAndPermit locks a session's permit and the session, and reads
// both, in one statement. Every write to a session happens under its
// permit's lock (taken first, by every writer, so they never deadlock). The
// session's row is locked too, after the permit (the order FOR UPDATE OF
// names them in), so that a lock that had to wait reads the session as the
// transaction it waited for left it: Postgres reads a row it locks after a
// wait in its newest version, and one it only joins in the statement's older
// snapshot. A lock another transaction holds is waited for, or ErrBusy, as
// tx.Locks says.
func LockSessionAndPermit(ctx context.Context, tx Tx, sessionID int64) (*Session, *Permit, error) {
	if l, ok := tx.takeStop(sessionID); ok {
		// Locked and read ahead with the batch's others (prelock.go).
		if err := tx.hold(l.permit.ID); err != nil {
			return nil, nil, err
		}
		return &l.session, &l.permit, nil
	}
	var rows []struct {
		Permit  Permit  `bun:"embed:p__"`
		Session Session `bun:"embed:s__"`
	}
	if err := scanPrepared(ctx, tx, lockSessionsSQL(tx, tx.Locks, "$1"), []any{sessionID}, &rows); err != nil {
		return nil, nil, fmt.Errorf("lock session %d and its permit: %w", sessionID, err)
	}
	if len(rows) == 0 {
		return nil, nil, tx.Locks.missing(ctx, tx, sql.ErrNoRows, "sessions", sessionID, fmt.Sprintf("session %d", sessionID))
	}
	if err := tx.hold(rows[0].Permit.ID); err != nil {
		return nil, nil, err
	}
	return &rows[0].Session, &rows[0].Permit, nil
}

// lockSessionsSQL is the statement that locks the session whose ID is id
// (a parameter, or a column of an outer query) and its permit, as policy p
// says, reading the permit's columns prefixed p__ and the session's
// s__.
func lockSessionsSQL(db bun.IDB, p LockPolicy, id string) string {
	return `SELECT ` + lockedPermitColumns(db, "p__") + `, ` + aliasedColumns[Session](db, "s", "s__") + `
		FROM permits AS permit JOIN sessions AS s ON s.permit_id = permit.id
		WHERE s.id = ` + id + ` FOR UPDATE OF permit, s` + p.skipLocked()
}

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

// ApplyStart stores a planned session on the locked permit p and reserves its
// minutes. With reg (the zone's register codes, when a registrar is
// configured) the session's right is registered: it keeps the codes and its
// right is at version 1 as of at (README "Pointing parkd at a register"). An overlap with another open session of the plate in the zone is
// ErrPlateParked, and then nothing of it is written and the caller's
// transaction is still usable to record the rejection: the insert meets the
// exclusion constraint with ON CONFLICT DO NOTHING instead of failing.
func ApplyStart(ctx context.Context, tx bun.IDB, p *Permit, plan domain.SessionPlan, reg *domain.ZoneRegistration, requestID string, at time.Time) (*Session, error) {
	var ids []int64
	if err := scanPrepared(ctx, tx, `SELECT `+newSessionIDSQL, nil, &ids); err != nil || len(ids) != 1 {
		return nil, fmt.Errorf("a new session's ID: %d of 1 (%w)", len(ids), err)
	}
	s, b := StartSession(p, ids[0], plan, reg, requestID, at)
	if err := Book(ctx, tx, p, b); err != nil {
		return nil, err
	}
	return s, nil
}

// newSessionIDSQL draws the ID of a session about to be started from the
// sessions' identity sequence (a start that is refused or rolled back leaves
// a gap, as an insert's own draw does).
const newSessionIDSQL = `nextval(pg_get_serial_sequence('sessions', 'id'))`

// StartSession is ApplyStart but the writing: it makes the session, with ID
// id (from LockPermitForStart), and the booking that inserts it and reserves
// its minutes, for the caller to write in the same transaction (in
// FinishRequest's statement: Finish.Booking; or with Book). The write meets
// an overlap with another open session of the plate in the zone (the
// exclusion constraint) with ON CONFLICT DO NOTHING, writes nothing, and
// says ErrPlateParked; the transaction is still usable to record the
// rejection.
func StartSession(p *Permit, id int64, plan domain.SessionPlan, reg *domain.ZoneRegistration, requestID string, at time.Time) (*Session, Booking) {
	s := &Session{
		ID: id, PermitID: p.ID, Zone: p.Zone, Plate: plan.Plate, Country: plan.Country, State: domain.StateOpen,
		StartAt: plan.StartAt, PlannedEndAt: plan.PlannedEndAt, ReservedMinutes: plan.ReservedMinutes,
		Notices: plan.Notices, RequestID: requestID,
	}
	if reg != nil {
		codes, changed := *reg, at
		s.Registration, s.RightVersion, s.RightChangedAt = &codes, 1, &changed
	}
	if s.Notices == nil {
		s.Notices = []domain.Notice{}
	}
	b := reserveBooking(p, s, plan.ReservedMinutes, requestID, at)
	b.Start = s
	return s, b
}

// bumpRight adds to a session update the next version of its right, changed
// at, when the session is registered (registration not null): every change of
// a registered session is a new version for the registrar (README "Pointing
// parkd at a register"), written by the statement of the change itself.
func bumpRight(q *bun.UpdateQuery, at time.Time) *bun.UpdateQuery {
	return q.Set("right_version = right_version + CASE WHEN registration IS NULL THEN 0 ELSE 1 END").
		Set("right_changed_at = CASE WHEN registration IS NULL THEN right_changed_at ELSE ?::timestamptz END", at)
}

// ApplyStop writes a stop decision on a locked session and its locked permit, in
// the caller's transaction: for a settlement or cancellation the session's end and
// charge, the release of the whole reservation and the charge as ledger entries,
// and the permit's balance and usage; for a shortening the new planned end and the
// partial release. requestID is nil for auto-stops and reconciliations. A
// registered session's right gets its next version (bumpRight), which s then
// holds: the caller sends it to the registrar.
func ApplyStop(ctx context.Context, tx bun.IDB, p *Permit, s *Session, plan domain.StopPlan, requestID *string, at time.Time) error {
	switch plan.Kind {
	case domain.StopSettle, domain.StopCancel:
		if err := Book(ctx, tx, p, Settle(p, s, plan, requestID, at)); err != nil {
			return fmt.Errorf("settle session %d on permit %d: %w", s.ID, p.ID, err)
		}
	case domain.StopShorten:
		s.Notices = append(s.Notices, domain.Notice{Code: domain.NoticeShortenedByStop, At: plan.EndAt,
			Message: "the planned end was moved earlier by a stop"})
		if _, err := bumpRight(tx.NewUpdate().Model(s).
			Set("planned_end_at = ?", plan.EndAt).Set("reserved_minutes = ?", plan.NewReserved).
			Set("notices = ?", s.Notices), at).
			WherePK().Where("state = ?", domain.StateOpen).Returning(columns[Session](tx, "")).Exec(ctx); err != nil {
			return fmt.Errorf("shorten session %d: %w", s.ID, err)
		}
		if plan.Release > 0 {
			if err := Book(ctx, tx, p, Booking{PermitID: p.ID, SessionID: s.ID, RequestID: requestID, At: at,
				Kinds: []string{LedgerRelease}, Minutes: []int{plan.Release},
				Balance: plan.Release, Reserved: -plan.Release}); err != nil {
				return fmt.Errorf("release of session %d on permit %d: %w", s.ID, p.ID, err)
			}
		}
	}
	return nil
}

// Settle is ApplyStop's settlement or cancellation (plan.Kind StopSettle or
// StopCancel) but the write: it returns the booking that settles s on the
// locked permit p, for the caller to write in the same transaction (in
// FinishRequest's statement: Finish.Booking; or with Book), and sets s as
// that booking leaves it: its state, end, charge and settled_at, and a
// registered session's next right version (what bumpRight writes).
func Settle(p *Permit, s *Session, plan domain.StopPlan, requestID *string, at time.Time) Booking {
	state := domain.StateStopped
	if plan.Kind == domain.StopCancel {
		state = domain.StateCancelled
	}
	b := settleBooking(p, s, plan, state, requestID, at)
	end, charged, settledAt := plan.EndAt, plan.Charge, at
	s.State, s.EndAt, s.ChargedMinutes, s.SettledAt = state, &end, &charged, &settledAt
	if s.Registration != nil {
		changed := at
		s.RightVersion, s.RightChangedAt = s.RightVersion+1, &changed
	}
	return b
}

// ApplyChange writes an accepted change (domain.PlanChange) on a locked
// session and its locked permit, in the caller's transaction: the session's
// plate, planned end, reservation and notices, and for a moved reservation
// its ledger entry and the permit's balance and reserved minutes (which count
// as the year's usage): a further reserve entry of -DeltaMinutes when it grew,
// a release of +|DeltaMinutes| when it shrank. The settlement later releases
// whatever is then reserved, so the session's entries still net to minus its
// charge. A new plate, or a later end, overlapping another open session of
// the plate in the zone is ErrPlateParked, and then nothing is written: the caller's
// transaction is still usable to record the rejection. A registered
// session's right gets its next version (bumpRight), which s then holds (the
// update returns the row). (The look comes first
// so that the exclusion constraint, which would abort the transaction, is met
// only by a concurrent writer; that refusal is retried, and the retry sees it.)
func ApplyChange(ctx context.Context, tx bun.IDB, p *Permit, s *Session, plan domain.ChangePlan, requestID string, at time.Time) error {
	if !plan.EndChanged && !plan.PlateChanged {
		return nil
	}
	// A new plate, or a later end (which may reach a later session of the
	// same plate, on this permit or another), is looked at.
	if plan.PlateChanged || plan.PlannedEndAt.After(s.PlannedEndAt) {
		parked, err := PlateParked(ctx, tx, s.Zone, plan.Plate, domain.Interval{Start: plan.StartAt, End: plan.PlannedEndAt}, s.ID)
		if err != nil {
			return fmt.Errorf("change session %d: %w", s.ID, err)
		}
		if parked {
			return ErrPlateParked
		}
	}
	// The notices describe the end: a plate corrected leaves them as they were.
	notices := s.Notices
	if plan.EndChanged {
		notices = plan.Notices
	}
	if notices == nil {
		notices = []domain.Notice{}
	}
	res, err := bumpRight(tx.NewUpdate().Model(s).
		Set("plate = ?", plan.Plate).Set("country = ?", plan.Country).
		Set("planned_end_at = ?", plan.PlannedEndAt).Set("reserved_minutes = ?", plan.ReservedMinutes).
		Set("notices = ?", notices), at).
		WherePK().Where("state = ?", domain.StateOpen).Returning(columns[Session](tx, "")).Exec(ctx)
	if err != nil {
		return fmt.Errorf("change session %d: %w", s.ID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("change session %d: it was not open", s.ID)
	}
	if plan.DeltaMinutes == 0 {
		return nil
	}
	kind := LedgerReserve
	if plan.DeltaMinutes < 0 {
		kind = LedgerRelease
	}
	if err := Book(ctx, tx, p, Booking{PermitID: p.ID, SessionID: s.ID, RequestID: &requestID, At: at,
		Kinds: []string{kind}, Minutes: []int{-plan.DeltaMinutes},
		Balance: -plan.DeltaMinutes, Reserved: plan.DeltaMinutes}); err != nil {
		return fmt.Errorf("rebook session %d on permit %d: %w", s.ID, p.ID, err)
	}
	return nil
}

// PlateParked reports whether plate has an open session in zone whose
// interval overlaps iv (the exclusion constraint sessions_plate_not_parked_twice
// as a read), leaving out the session except (0: none): what a start or a
// plate change would meet as plate_already_parked.
func PlateParked(ctx context.Context, db bun.IDB, zone, plate string, iv domain.Interval, except int64) (bool, error) {
	parked, err := db.NewSelect().Model((*Session)(nil)).
		Where("zone = ? AND plate = ? AND state = ? AND id <> ?", zone, plate, domain.StateOpen, except).
		Where("tstzrange(start_at, planned_end_at) && tstzrange(?, ?)", iv.Start, iv.End).
		Exists(ctx)
	if err != nil {
		return false, fmt.Errorf("look for the plate's sessions in zone %s: %w", zone, err)
	}
	return parked, nil
}

// PermitIntervals are the spans of a permit's sessions that overlap iv, for
// zone z's max_concurrent_sessions rule (domain.CheckConcurrentSessions): open
// ones to their planned end, stopped ones to their actual end; cancelled ones
// never ran. except is a session to leave out (the one being changed; 0:
// none). A zone without the cap needs none, and nothing is read. Read under
// the permit's lock, it is what every other writer of the permit sees too:
// starts and changes on one permit are serialised by that lock (in a
// Coalescer's shared transaction as well: a unit that meets another's lock is
// run again alone, and units sharing one transaction see each other's rows).
func PermitIntervals(ctx context.Context, db bun.IDB, z *domain.Zone, permitID int64, iv domain.Interval, except int64) ([]domain.Interval, error) {
	if z.MaxConcurrentSessions < 1 {
		return nil, nil
	}
	var rows []struct {
		StartAt time.Time `bun:"start_at"`
		EndAt   time.Time `bun:"end_at"`
	}
	err := scanPrepared(ctx, db, `
		SELECT start_at, coalesce(end_at, planned_end_at) AS end_at FROM sessions
		WHERE permit_id = $1 AND state <> $2 AND id <> $3 AND start_at < $4 AND coalesce(end_at, planned_end_at) > $5`,
		[]any{permitID, string(domain.StateCancelled), except, iv.End, iv.Start}, &rows)
	if err != nil {
		return nil, fmt.Errorf("sessions of permit %d between %s and %s: %w", permitID,
			iv.Start.Format(time.RFC3339), iv.End.Format(time.RFC3339), err)
	}
	out := make([]domain.Interval, len(rows))
	for i, r := range rows {
		out[i] = domain.Interval{Start: r.StartAt, End: r.EndAt}
	}
	return out, nil
}

// MaxListedSessions bounds a permit's session list: the newest this many.
const MaxListedSessions = 1000

// PermitSessions lists a permit's sessions, newest start first, optionally only
// those with one outside status (planned, active, stopped, cancelled) as seen at
// now. Planned versus active is not stored: it follows from start_at and now.
func PermitSessions(ctx context.Context, db bun.IDB, permitID int64, status string, now time.Time) ([]Session, error) {
	var rows []Session
	q := db.NewSelect().Model(&rows).Where("permit_id = ?", permitID)
	switch status {
	case "":
	case domain.StatusPlanned:
		q = q.Where("state = ? AND start_at > ?", domain.StateOpen, now)
	case domain.StatusActive:
		q = q.Where("state = ? AND start_at <= ?", domain.StateOpen, now)
	case domain.StatusStopped:
		q = q.Where("state = ?", domain.StateStopped)
	case domain.StatusCancelled:
		q = q.Where("state = ?", domain.StateCancelled)
	default:
		return nil, fmt.Errorf("sessions of permit %d: unknown status %q", permitID, status)
	}
	if err := q.OrderExpr("start_at DESC, id DESC").Limit(MaxListedSessions).Scan(ctx); err != nil {
		return nil, fmt.Errorf("sessions of permit %d: %w", permitID, err)
	}
	return rows, nil
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

// OpenSessionsEndingAfter pages through the open sessions whose planned end is
// after at and whose ending notice for it is not sent yet (no session.ending
// event names that end), by ID, after the given ID: their zone, start and
// planned end, as the reconciler needs them to schedule their ending notices
// again. A notice already sent would only run again to send nothing.
func OpenSessionsEndingAfter(ctx context.Context, db bun.IDB, at time.Time, afterID int64, limit int) ([]Session, error) {
	var rows []Session
	err := db.NewSelect().Model(&rows).Column("id", "zone", "start_at", "planned_end_at").
		Where("state = ?", domain.StateOpen).Where("planned_end_at > ?", at).Where("id > ?", afterID).
		Where(`NOT EXISTS (SELECT 1 FROM events AS e WHERE e.type = ? AND e.session_id = session.id
			AND (e.data->>'planned_end_at')::timestamptz = session.planned_end_at)`, jobs.EventSessionEnding).
		OrderExpr("id").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("open sessions ending after %s: %w", at.UTC().Format(time.RFC3339), err)
	}
	return rows, nil
}

// OpenSessionsEndingBetween pages through the open sessions whose planned end
// is in (from, to], by ID, after the given ID: their zone, start and planned
// end, as the reconciler needs them to schedule their auto-stops and ending
// notices when they come within the schedule horizon (sessions_open_by_end).
func OpenSessionsEndingBetween(ctx context.Context, db bun.IDB, from, to time.Time, afterID int64, limit int) ([]Session, error) {
	var rows []Session
	err := db.NewSelect().Model(&rows).Column("id", "zone", "start_at", "planned_end_at").
		Where("state = ?", domain.StateOpen).Where("planned_end_at > ?", from).Where("planned_end_at <= ?", to).
		Where("id > ?", afterID).OrderExpr("id").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("open sessions ending between %s and %s: %w",
			from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339), err)
	}
	return rows, nil
}

// What a load left of the sessions, as the lab (tools/) reads it once the
// load has run: how many are still open, and when each was settled against
// its planned end. An empty ids means every session.

// CountOpenSessions counts the open sessions, and those of them whose planned
// end is at or before at (overdue: an auto-stop should have settled them).
func CountOpenSessions(ctx context.Context, db bun.IDB, at time.Time, ids ...int64) (open, overdue int, err error) {
	q := db.NewSelect().Model((*Session)(nil)).
		ColumnExpr("count(*)").
		ColumnExpr("count(*) FILTER (WHERE planned_end_at <= ?)", at).
		Where("state = ?", domain.StateOpen)
	if len(ids) > 0 {
		q = q.Where("id = ANY(?)", pgdialect.Array(ids))
	}
	if err := q.Scan(ctx, &open, &overdue); err != nil {
		return 0, 0, fmt.Errorf("count open sessions: %w", err)
	}
	return open, overdue, nil
}

// SessionSettlements reads, by ID, each session's request, state, planned end
// and the instant it was settled (nil while open).
func SessionSettlements(ctx context.Context, db bun.IDB, ids ...int64) ([]Session, error) {
	var rows []Session
	q := db.NewSelect().Model(&rows).Column("id", "request_id", "state", "planned_end_at", "settled_at").OrderExpr("id")
	if len(ids) > 0 {
		q = q.Where("id = ANY(?)", pgdialect.Array(ids))
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("read session settlements: %w", err)
	}
	return rows, nil
}
