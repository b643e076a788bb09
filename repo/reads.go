package repo

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
)

// This file holds what the HTTP intake reads and the bookkeeping it does on the
// requests table before a request reaches the queue. Every query here is a single
// indexed statement: the intake answers from Postgres directly, without locks.

// RegisterRequest records a request the intake is about to enqueue as pending,
// owned by subject (who asked, "role:sub"), unless its ID is already known. It
// returns the row as it now stands and whether this call created it. The caller
// compares type, fingerprint and subject: the same ID for another request is an
// idempotency conflict, and an ID already finished is answered from its outcome.
//
// The row exists before the task does, so that GET /v1/requests/{id} knows the
// request (and whose it is) from the moment it was accepted, and the worker's
// ClaimRequest finds it and keeps its subject.
func RegisterRequest(ctx context.Context, db bun.IDB, id, typ, bodyHash, subject string) (*Request, bool, error) {
	var rows []Request
	err := db.NewRaw(`
		INSERT INTO requests (request_id, type, body_hash, status, subject)
		VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (request_id) DO NOTHING
		RETURNING *`, id, typ, bodyHash, RequestPending, subject).Scan(ctx, &rows)
	if err != nil {
		return nil, false, fmt.Errorf("register request %s: %w", id, err)
	}
	if len(rows) == 1 {
		return &rows[0], true, nil
	}
	r, err := GetRequest(ctx, db, id)
	if err != nil {
		return nil, false, err
	}
	return r, false, nil
}

// AdoptRequest gives a request that has no subject (enqueued through package jobs
// directly, or re-created by the worker after the intake forgot it) to subject,
// provided it is the same request. It reports whether the request is now
// subject's.
func AdoptRequest(ctx context.Context, db bun.IDB, id, typ, bodyHash, subject string) (bool, error) {
	res, err := db.NewUpdate().Model((*Request)(nil)).Set("subject = ?", subject).
		Where("request_id = ? AND type = ? AND body_hash = ? AND subject IS NULL", id, typ, bodyHash).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("adopt request %s: %w", id, err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// ForgetPendingRequest deletes a request the intake registered but could not hand
// to the queue, so that no pending request is left that nothing will ever finish.
// Only a still-pending row of the same subject goes: if the task did reach Redis
// after all and a worker already finished it, its outcome stays.
func ForgetPendingRequest(ctx context.Context, db bun.IDB, id, subject string) error {
	if _, err := db.NewDelete().Model((*Request)(nil)).
		Where("request_id = ? AND status = ? AND subject = ?", id, RequestPending, subject).Exec(ctx); err != nil {
		return fmt.Errorf("forget request %s: %w", id, err)
	}
	return nil
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

// PermitStatements lists a permit's closed years (rows of permit_years),
// newest first. bun scans the columns into the answer's fields by name.
func PermitStatements(ctx context.Context, db bun.IDB, permitID int64) ([]jobs.Statement, error) {
	var rows []jobs.Statement
	err := db.NewRaw(`
		SELECT year_starts_at, year_ends_at, purchased_minutes, used_minutes, carried_over_minutes
		FROM permit_years WHERE permit_id = ? ORDER BY year_starts_at DESC`, permitID).Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("statements of permit %d: %w", permitID, err)
	}
	for i := range rows {
		rows[i].YearStartsAt = rows[i].YearStartsAt.UTC()
		rows[i].YearEndsAt = rows[i].YearEndsAt.UTC()
	}
	return rows, nil
}

// MaxSessionSpan is the longest any session can last (CompileZone allows at most
// 1440 minutes). It bounds the rights lookup to one day of a plate's history.
const MaxSessionSpan = 24 * time.Hour

// coveringSQL finds the newest session of a plate in a zone that covers an
// instant; arguments: plate, zone, at, at - MaxSessionSpan, at.
const coveringSQL = `
	SELECT id FROM sessions
	WHERE plate = ? AND zone = ? AND state <> 'cancelled'
	  AND start_at <= ? AND start_at > ?
	  AND coalesce(end_at, planned_end_at) > ?
	ORDER BY start_at DESC
	LIMIT 1`

func rightsQuery(plate, code string, at time.Time) (string, []any) {
	return `SELECT z.updated_at, (` + coveringSQL + `) AS session_id FROM zones z WHERE z.code = ?`,
		[]any{plate, code, at, at.Add(-MaxSessionSpan), at, code}
}

// RightsLookup answers in one round trip what an enforcement question needs
// from Postgres: the zone (compiled, from the cache unless the zone changed) and
// the session of plate in it that covers at, if any. A zone that does not
// exist is ErrNotFound.
func (s *Store) RightsLookup(ctx context.Context, db bun.IDB, plate, code string, at time.Time) (*domain.Zone, int64, bool, error) {
	var rows []struct {
		UpdatedAt time.Time `bun:"updated_at"`
		SessionID *int64    `bun:"session_id"`
	}
	q, args := rightsQuery(plate, code, at)
	err := db.NewRaw(q, args...).Scan(ctx, &rows)
	if err != nil {
		return nil, 0, false, fmt.Errorf("rights of %s in %s: %w", domain.MaskPlate(plate), code, err)
	}
	if len(rows) == 0 {
		return nil, 0, false, fmt.Errorf("zone %s: %w", code, ErrNotFound)
	}
	s.zoneMu.Lock()
	c, ok := s.zones[code]
	s.zoneMu.Unlock()
	z := c.zone
	if !ok || !c.updatedAt.Equal(rows[0].UpdatedAt) {
		if z, err = s.Zone(ctx, db, code); err != nil {
			return nil, 0, false, err
		}
	}
	if rows[0].SessionID == nil {
		return z, 0, false, nil
	}
	return z, *rows[0].SessionID, true, nil
}

// IsUnavailable reports whether err means Postgres could not be reached or did
// not answer in time (as opposed to a query it refused), so that callers can
// answer "try again later" instead of "our bug".
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || pgconn.Timeout(err) {
		return true
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	if errors.As(err, &ce) || errors.As(err, &ne) {
		return true
	}
	switch code := pgCode(err); {
	case len(code) == 5 && (code[:2] == "08" || code[:2] == "53"): // connection exception, insufficient resources
		return true
	case code == "57P01" || code == "57P02" || code == "57P03": // shutting down, cannot connect now
		return true
	}
	return false
}
