package repo

import (
	"context"
	"database/sql"
	"encoding/json"
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
	// Start, when set, is a session to insert first (StartSession), with its
	// ID; nothing is booked if the plate's exclusion constraint refuses it.
	Start *Session
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

// bookingSQL is a Booking as common table expressions (started, settled,
// go, booked, booked_permit) whose parameters start at $first, in
// bookingArgs' order; booked_permit returns returning (columns of permits)
// when the booking was written. It comes in two parts: start (the started
// CTE) and the rest. Only the parts of shape are written; a statement that
// leaves some out must still name every parameter's type
// (bookingParamTypes), since Postgres refuses to prepare a statement with a
// parameter it cannot type. (FinishRequest writes its booking set-wise, in
// finish.go.)
func bookingSQL(first int, returning string, shape bookingShape) (start, rest string) {
	casts := bookingParamTypes(first)
	var pairs []string
	for i, n := range bookingParamNames {
		name, _, _ := strings.Cut(n, "::")
		pairs = append(pairs, "$"+name+"$", casts[i])
	}
	r := strings.NewReplacer(pairs...)
	// What the shape leaves out is a CTE that selects nothing and touches no
	// table, under the same name and columns, so that the rest reads alike.
	start = `started AS (SELECT NULL::int8 AS id WHERE false)`
	if shape.start {
		start = r.Replace(bookingStartSQL)
	}
	settled := `settled AS (SELECT NULL::int8 AS id WHERE false)`
	if shape.settle {
		settled = r.Replace(bookingSettledSQL)
	}
	if !shape.book {
		return start, settled + `,
booked_permit AS (SELECT NULL::int8 AS id WHERE false)`
	}
	return start, settled + ",\n" + r.Replace(strings.ReplaceAll(bookingRestSQL, "$RETURNING$", returning))
}

// bookingShape is which parts of a booking a statement writes: a session
// inserted (Start), one settled (Settle), and any booking at all. A statement
// is prepared per shape (issue 16): a CTE that writes nothing still costs
// Postgres the opening of its table and every index of it on every run.
type bookingShape struct{ start, settle, book bool }

// shapeOf is b's shape; a nil b books nothing.
func shapeOf(b *Booking) bookingShape {
	if b == nil {
		return bookingShape{}
	}
	return bookingShape{start: b.Start != nil, settle: b.Settle != nil, book: true}
}

// bookingParamNames are bookingSQL's parameters in bookingArgs' order, each
// with its type.
var bookingParamNames = []string{"BOOK::bool", "SETTLE::bool", "STATE::text", "END::timestamptz", "CHARGED::int", "AT::timestamptz",
	"SESSION::int8", "PERMIT::int8", "REQUEST::text", "KINDS::text[]", "MINUTES::int[]", "BALANCE::int", "RESERVED::int",
	"USED::int", "START::bool", "ZONE::text", "PLATE::text", "COUNTRY::text", "STARTAT::timestamptz",
	"PLANNED::timestamptz", "MINS::int", "NOTICES::jsonb", "REG::jsonb", "RV::int", "RCA::timestamptz"}

// bookingParamTypes is bookingSQL's parameters from $first, each cast to
// its type ("$21::bool", …).
func bookingParamTypes(first int) []string {
	out := make([]string, len(bookingParamNames))
	for i, n := range bookingParamNames {
		_, typ, _ := strings.Cut(n, "::")
		out[i] = fmt.Sprintf("$%d::%s", first+i, typ)
	}
	return out
}

// paramsCTE is a CTE that names every parameter of a statement with its
// type (casts, from $1 in order) and is never read, so Postgres plans it
// away: it types the parameters that the parts a shape leaves out would
// have typed.
func paramsCTE(casts []string) string {
	cols := make([]string, len(casts))
	for i, c := range casts {
		cols[i] = fmt.Sprintf("%s AS p%d", c, i+1)
	}
	return "params AS (SELECT " + strings.Join(cols, ", ") + ")"
}

// bookingSQL's parts, with its parameters named ($NAME$, bookingParamNames).
const bookingStartSQL = `started AS (
    INSERT INTO sessions (id, permit_id, zone, plate, country, state, start_at, planned_end_at, reserved_minutes,
                          notices, request_id, registration, right_version, right_changed_at)
    OVERRIDING SYSTEM VALUE
    SELECT $SESSION$, $PERMIT$, $ZONE$, $PLATE$, $COUNTRY$, 'open', $STARTAT$, $PLANNED$, $MINS$,
           $NOTICES$, $REQUEST$, $REG$, $RV$, $RCA$
    WHERE $START$
    ON CONFLICT DO NOTHING RETURNING id)`

// The settled session is found by a lookup of its ID (kept apart by OFFSET
// 0) and updated by its row's address, as finish.go's settlements are: with
// "id = $SESSION$ AND state = 'open'" in one WHERE, a generic plan made
// while sessions was nearly empty chose the open sessions' partial index
// and filtered it for the ID, reading every open session at each
// settlement once the table had grown (a colleague's review, issue 16).
const bookingSettledSQL = `settled AS (
    UPDATE sessions SET state = $STATE$, end_at = $END$, charged_minutes = $CHARGED$, settled_at = $AT$,
        right_version = right_version + CASE WHEN registration IS NULL THEN 0 ELSE 1 END,
        right_changed_at = CASE WHEN registration IS NULL THEN right_changed_at ELSE $AT$ END
    FROM (SELECT ctid AS tid FROM sessions WHERE id = $SESSION$ OFFSET 0) AS x
    WHERE $SETTLE$ AND sessions.ctid = x.tid AND sessions.state = 'open' RETURNING sessions.id)`

const bookingRestSQL = `go AS (SELECT $BOOK$ AND (NOT $SETTLE$ OR EXISTS (SELECT 1 FROM settled))
              AND (NOT $START$ OR EXISTS (SELECT 1 FROM started)) AS ok),
booked AS (
    INSERT INTO ledger (permit_id, kind, minutes, session_id, request_id, at)
    SELECT $PERMIT$, x.k, x.m, $SESSION$, $REQUEST$, $AT$
    FROM unnest($KINDS$, $MINUTES$) WITH ORDINALITY AS x(k, m, i), go WHERE go.ok ORDER BY x.i),
booked_permit AS (
    UPDATE permits SET balance_minutes = balance_minutes + $BALANCE$,
        reserved_minutes = reserved_minutes + $RESERVED$, used_minutes = used_minutes + $USED$
    FROM go WHERE go.ok AND permits.id = $PERMIT$ RETURNING $RETURNING$)`

// bookingArgs are b's parameters in bookingSQL's order; a nil b books nothing.
func bookingArgs(b *Booking) []any {
	book := b != nil
	if b == nil {
		b = &Booking{Kinds: []string{}, Minutes: []int{}}
	}
	st := &Settlement{}
	if b.Settle != nil {
		st = b.Settle
	}
	var end any
	if b.Settle != nil {
		end = st.EndAt
	}
	start := b.Start
	if start == nil {
		start = &Session{}
	}
	var notices, reg any
	if b.Start != nil {
		n, err := json.Marshal(start.Notices)
		if err != nil {
			panic(err) // codes and instants
		}
		notices = string(n)
		if start.Registration != nil {
			r, err := json.Marshal(start.Registration)
			if err != nil {
				panic(err) // strings
			}
			reg = string(r)
		}
	}
	var at any
	if !b.At.IsZero() {
		at = b.At
	}
	return []any{book, b.Settle != nil, string(st.State), end, st.Charged, at, b.SessionID, b.PermitID, b.RequestID,
		b.Kinds, b.Minutes, b.Balance, b.Reserved, b.Used,
		b.Start != nil, start.Zone, start.Plate, start.Country, nullTime(start.StartAt), nullTime(start.PlannedEndAt),
		start.ReservedMinutes, notices, reg, start.RightVersion, start.RightChangedAt}
}

// nullTime is an instant as a query argument: NULL when zero.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// refused is why a booking wrote nothing: its session could not be inserted
// (ErrPlateParked), was no longer open, or its permit is not there.
func (b *Booking) refused() error {
	switch {
	case b.Start != nil:
		return ErrPlateParked
	case b.Settle != nil:
		return fmt.Errorf("settle session %d: it was not open", b.SessionID)
	}
	return fmt.Errorf("book on permit %d: %w", b.PermitID, notFound(sql.ErrNoRows, fmt.Sprintf("permit %d", b.PermitID)))
}

// Book writes booking b in the caller's transaction (one statement) and
// refreshes p, the permit it books on (which the caller has locked). A
// settlement of a session no longer open books nothing and is an error: the
// caller's transaction must be rolled back.
func Book(ctx context.Context, tx bun.IDB, p *Permit, b Booking) error {
	var permits []Permit
	cols := columns[Permit](tx, "permits")
	start, rest := bookingSQL(1, cols, shapeOf(&b))
	q := `WITH ` + paramsCTE(bookingParamTypes(1)) + `, ` + start + `, ` + rest + `
SELECT * FROM booked_permit`
	if err := scanPrepared(ctx, tx, q, bookingArgs(&b), &permits); err != nil {
		return fmt.Errorf("book on permit %d: %w", b.PermitID, err)
	}
	if len(permits) == 0 {
		return b.refused()
	}
	permits[0].ZoneUpdatedAt = p.ZoneUpdatedAt
	*p = permits[0]
	return nil
}
