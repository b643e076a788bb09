package repo

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/domain"
)

// Booking is a change of a locked permit's minutes: its ledger entries and
// the permit's counters, in one statement, and for a settlement the
// session's end and charge in the same statement (nothing is booked unless
// the session was still open). A start's reservation and a stop's
// settlement are the bookings every pair of requests makes; they ride in
// FinishRequest's statement (Finish.Booking), one round trip fewer each
// (issue 16), and Book writes one on its own.
type Booking struct {
	PermitID, SessionID int64
	RequestID           *string   // the request that booked it; nil for auto-stops
	At                  time.Time // when (the entries' at; a settlement's settled_at)
	Kinds               []string  // the ledger entries, in order
	Minutes             []int
	// Deltas of the permit's balance, reserved and used minutes.
	Balance, Reserved, Used int
	// Settle, when set, settles the session: its state becomes State,
	// end_at EndAt and charged_minutes Charged, and a registered session's
	// right its next version (bumpRight).
	Settle *Settlement
}

// Settlement is what a Booking writes on the session it settles.
type Settlement struct {
	State   domain.State
	EndAt   time.Time
	Charged int
}

// reserveBooking is a start's reservation of minutes on permit p for session s.
func reserveBooking(p *Permit, s *Session, minutes int, requestID string, at time.Time) Booking {
	return Booking{PermitID: p.ID, SessionID: s.ID, RequestID: &requestID, At: at,
		Kinds: []string{LedgerReserve}, Minutes: []int{-minutes}, Balance: -minutes, Reserved: minutes}
}

// settleBooking settles session s on permit p as plan says (a stop, an
// auto-stop, a cancellation): the whole reservation released, the charge
// booked, the year's usage counted.
func settleBooking(p *Permit, s *Session, plan domain.StopPlan, state domain.State, requestID *string, at time.Time) Booking {
	return Booking{PermitID: p.ID, SessionID: s.ID, RequestID: requestID, At: at,
		Kinds: []string{LedgerRelease, LedgerCharge}, Minutes: []int{plan.Release, -plan.Charge},
		Balance: plan.Release - plan.Charge, Reserved: -plan.Release, Used: plan.Charge,
		Settle: &Settlement{State: state, EndAt: plan.EndAt, Charged: plan.Charge}}
}

// bookingSQL is a Booking as common table expressions (settled, go, booked,
// booked_permit) whose parameters start at $first, in bookingArgs' order;
// booked_permit returns returning (columns of permits) when the booking was
// written. only, when not "", is a condition the booking also waits for
// (FinishRequest's: that the request was finished).
func bookingSQL(first int, returning, only string) string {
	if only == "" {
		only = "true"
	}
	r := strings.NewReplacer(
		"$BOOK", fmt.Sprintf("$%d::bool", first), "$SETTLE", fmt.Sprintf("$%d::bool", first+1),
		"$STATE", fmt.Sprintf("$%d::text", first+2), "$END", fmt.Sprintf("$%d::timestamptz", first+3),
		"$CHARGED", fmt.Sprintf("$%d::int", first+4), "$AT", fmt.Sprintf("$%d::timestamptz", first+5),
		"$SESSION", fmt.Sprintf("$%d::int8", first+6), "$PERMIT", fmt.Sprintf("$%d::int8", first+7),
		"$REQUEST", fmt.Sprintf("$%d::text", first+8), "$KINDS", fmt.Sprintf("$%d::text[]", first+9),
		"$MINUTES", fmt.Sprintf("$%d::int[]", first+10), "$BALANCE", fmt.Sprintf("$%d::int", first+11),
		"$RESERVED", fmt.Sprintf("$%d::int", first+12), "$USED", fmt.Sprintf("$%d::int", first+13))
	return r.Replace(`settled AS (
    UPDATE sessions SET state = $STATE, end_at = $END, charged_minutes = $CHARGED, settled_at = $AT,
        right_version = right_version + CASE WHEN registration IS NULL THEN 0 ELSE 1 END,
        right_changed_at = CASE WHEN registration IS NULL THEN right_changed_at ELSE $AT END
    WHERE $SETTLE AND ` + only + ` AND id = $SESSION AND state = 'open' RETURNING id),
go AS (SELECT $BOOK AND (NOT $SETTLE OR EXISTS (SELECT 1 FROM settled)) AND ` + only + ` AS ok),
booked AS (
    INSERT INTO ledger (permit_id, kind, minutes, session_id, request_id, at)
    SELECT $PERMIT, x.k, x.m, $SESSION, $REQUEST, $AT
    FROM unnest($KINDS, $MINUTES) WITH ORDINALITY AS x(k, m, i), go WHERE go.ok ORDER BY x.i),
booked_permit AS (
    UPDATE permits SET balance_minutes = balance_minutes + $BALANCE,
        reserved_minutes = reserved_minutes + $RESERVED, used_minutes = used_minutes + $USED
    FROM go WHERE go.ok AND permits.id = $PERMIT RETURNING ` + returning + `)`)
}

// bookingArgs are b's parameters in bookingSQL's order; a nil b books nothing.
func bookingArgs(b *Booking) []any {
	if b == nil {
		return []any{false, false, "", nil, 0, nil, 0, 0, nil, []string{}, []int{}, 0, 0, 0}
	}
	st := &Settlement{}
	if b.Settle != nil {
		st = b.Settle
	}
	var end any
	if b.Settle != nil {
		end = st.EndAt
	}
	return []any{true, b.Settle != nil, string(st.State), end, st.Charged, b.At, b.SessionID, b.PermitID, b.RequestID,
		b.Kinds, b.Minutes, b.Balance, b.Reserved, b.Used}
}

// Book writes booking b in the caller's transaction (one statement) and
// refreshes p, the permit it books on (which the caller has locked). A
// settlement of a session no longer open books nothing and is an error: the
// caller's transaction must be rolled back.
func Book(ctx context.Context, tx bun.IDB, p *Permit, b Booking) error {
	var permits []Permit
	cols := columns[Permit](tx, "permits")
	q := `WITH ` + bookingSQL(1, cols, "") + `
SELECT * FROM booked_permit`
	if err := scanPrepared(ctx, tx, q, bookingArgs(&b), &permits); err != nil {
		return fmt.Errorf("book on permit %d: %w", b.PermitID, err)
	}
	if len(permits) == 0 {
		if b.Settle != nil {
			return fmt.Errorf("settle session %d: it was not open", b.SessionID)
		}
		return fmt.Errorf("book on permit %d: %w", b.PermitID, notFound(sql.ErrNoRows, fmt.Sprintf("permit %d", b.PermitID)))
	}
	permits[0].ZoneUpdatedAt = p.ZoneUpdatedAt
	*p = permits[0]
	return nil
}
