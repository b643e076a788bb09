package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
)

// Outcomes written set-wise (issue 16). FinishRequest's statement takes any
// number of requests ("units"), each as an element of one array per column:
// alone it is one unit, and a shared transaction's held outcomes (pipeline.go)
// are one statement for the whole batch. Postgres's cost of a statement is
// mostly its own, whatever it writes (opening every table and index it names,
// compiling their check constraints and index predicates, its foreign-key
// triggers' setup, its round trip); written per unit that was over a quarter
// of Postgres's time (docs/BENCHMARKS.md, "Issue 16, fourth session").
//
// Every unit is written as it would be alone: its start's session first (the
// plate's exclusion constraint may refuse it), its request's row only if the
// session was inserted or there is none to insert, and everything else
// (settlement, ledger entries and permit counters, events, outbox rows, the
// notification) only if its request's row was written. A unit refused writes
// nothing, and the others are not touched by it. Units of one statement see
// the database as it was before the statement, which is why a permit belongs
// to one pipelined unit per batch (Tx.hold): no unit decides from what another
// one writes. Two starts of the same plate in one statement meet the same
// exclusion constraint as two statements would (Postgres checks a row against
// the rows its own statement inserted), and the later unit is the one refused.

// finishUnit is one request's FinishRequest, ready to be written.
type finishUnit struct {
	id               string
	f                Finish
	errJSON, resJSON json.RawMessage
	rejected         bool // recorded as rejected with its request.rejected event
}

// newFinishUnit checks and encodes what FinishRequest records of request id.
func newFinishUnit(id string, f Finish) (finishUnit, error) {
	u := finishUnit{id: id, f: f, rejected: f.Status == RequestRejected && f.Rejection != nil}
	if f.Type == "" || f.BodyHash == "" {
		return u, fmt.Errorf("finish request %s: its type and fingerprint are required", id)
	}
	if b := f.Booking; b != nil && b.Start != nil && b.Settle != nil {
		// A start found parked writes nothing and its batch commits without
		// it (pipeline.go); a settlement riding with it would be written.
		return u, fmt.Errorf("finish request %s: a booking starts a session or settles one, not both", id)
	}
	var err error
	if f.Rejection != nil {
		if u.errJSON, err = json.Marshal(f.Rejection); err != nil {
			return u, err
		}
	}
	if f.Result != nil {
		if u.resJSON, err = json.Marshal(f.Result); err != nil {
			return u, fmt.Errorf("finish request %s: %w: %w", id, ErrUnrecordable, err)
		}
	}
	return u, nil
}

// finishShape is which parts a statement of units writes: sessions
// inserted, settled, bookings, change events, rejections' events, outbox
// rows. A statement is prepared per shape: a part that writes nothing would
// still cost Postgres the opening of its table and every index of it.
type finishShape struct {
	start, settle, book, events, rejected, outbox bool
}

// finishArgs is a statement of units' arguments, one array per column
// (finishSQL's parameters, in finishParams' order).
type finishArgs struct {
	// The units: their requests' rows and rejections.
	ids, statuses, types, hashes []string
	errs, results, subjects      []*string
	tasks                        [][]byte
	starts, rejected             []bool
	at                           []time.Time
	rejPermits, rejSessions      []*int64
	// Sessions inserted (a start's), one per unit that starts one.
	sUnit                             []int
	sID, sPermit                      []int64
	sZone, sPlate, sCountry, sNotices []string
	sRequest, sReg                    []*string
	sStart, sPlanned                  []time.Time
	sMins, sRV                        []int
	sRCA                              []*time.Time
	// Settlements, one per unit that settles a session.
	xUnit     []int
	xSession  []int64
	xState    []string
	xEnd, xAt []time.Time
	xCharged  []int
	// Bookings, one per unit that books; and their ledger entries.
	bUnit                 []int
	bPermit, bSession     []int64
	bRequest              []*string
	bAt                   []*time.Time
	bBalance, bRes, bUsed []int
	bSettle, bStart       []bool
	lUnit, lMinutes       []int
	lKind                 []string
	// Events (the changes'), and outbox rows.
	eUnit              []int
	eType, eData       []string
	eAt                []time.Time
	ePermit, eSession  []*int64
	eRequest           []*string
	oUnit              []int
	oType, oID, oQueue []string
	oPayload           []string
	oAt                []time.Time
}

// list is the arguments in finishParams' order.
func (a *finishArgs) list() []any {
	return []any{a.ids, a.statuses, a.errs, a.results, a.types, a.hashes, a.subjects, a.tasks,
		a.starts, a.rejected, a.at, a.rejPermits, a.rejSessions,
		a.sUnit, a.sID, a.sPermit, a.sZone, a.sPlate, a.sCountry, a.sStart, a.sPlanned, a.sMins, a.sNotices, a.sRequest, a.sReg, a.sRV, a.sRCA,
		a.xUnit, a.xSession, a.xState, a.xEnd, a.xCharged, a.xAt,
		a.bUnit, a.bPermit, a.bSession, a.bRequest, a.bAt, a.bBalance, a.bRes, a.bUsed, a.bSettle, a.bStart,
		a.lUnit, a.lKind, a.lMinutes,
		a.eUnit, a.eType, a.eAt, a.ePermit, a.eSession, a.eRequest, a.eData,
		a.oUnit, a.oType, a.oID, a.oQueue, a.oPayload, a.oAt}
}

// finishParams are finishSQL's parameters, $1 on, each with its type.
var finishParams = []string{"text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "bytea[]",
	"bool[]", "bool[]", "timestamptz[]", "int8[]", "int8[]",
	"int[]", "int8[]", "int8[]", "text[]", "text[]", "text[]", "timestamptz[]", "timestamptz[]", "int[]", "text[]", "text[]", "text[]", "int[]", "timestamptz[]",
	"int[]", "int8[]", "text[]", "timestamptz[]", "int[]", "timestamptz[]",
	"int[]", "int8[]", "int8[]", "text[]", "timestamptz[]", "int[]", "int[]", "int[]", "bool[]", "bool[]",
	"int[]", "text[]", "int[]",
	"int[]", "text[]", "timestamptz[]", "int8[]", "int8[]", "text[]", "text[]",
	"int[]", "text[]", "text[]", "text[]", "text[]", "timestamptz[]"}

// add appends unit u (its place, from 1) and returns its shape.
func (a *finishArgs) add(n int, u finishUnit) finishShape {
	f := u.f
	var sh finishShape
	a.ids = append(a.ids, u.id)
	a.statuses = append(a.statuses, f.Status)
	a.errs = append(a.errs, jsonOrNil(u.errJSON))
	a.results = append(a.results, jsonOrNil(u.resJSON))
	a.types = append(a.types, f.Type)
	a.hashes = append(a.hashes, f.BodyHash)
	a.subjects = append(a.subjects, f.Subject)
	a.tasks = append(a.tasks, f.TaskPayload)
	a.rejected = append(a.rejected, u.rejected)
	a.at = append(a.at, Instant(f.At))
	a.rejPermits = append(a.rejPermits, idPtr(f.PermitID))
	a.rejSessions = append(a.rejSessions, idPtr(f.SessionID))
	sh.rejected = u.rejected
	b := f.Booking
	a.starts = append(a.starts, b != nil && b.Start != nil)
	if b != nil {
		sh.book = true
		if s := b.Start; s != nil {
			sh.start = true
			notices, err := json.Marshal(s.Notices)
			if err != nil {
				panic(err) // codes and instants
			}
			var reg *string
			if s.Registration != nil {
				r, err := json.Marshal(s.Registration)
				if err != nil {
					panic(err) // strings
				}
				reg = new(string(r))
			}
			a.sUnit = append(a.sUnit, n)
			a.sID = append(a.sID, b.SessionID)
			a.sPermit = append(a.sPermit, b.PermitID)
			a.sZone = append(a.sZone, s.Zone)
			a.sPlate = append(a.sPlate, s.Plate)
			a.sCountry = append(a.sCountry, s.Country)
			a.sStart = append(a.sStart, s.StartAt)
			a.sPlanned = append(a.sPlanned, s.PlannedEndAt)
			a.sMins = append(a.sMins, s.ReservedMinutes)
			a.sNotices = append(a.sNotices, string(notices))
			a.sRequest = append(a.sRequest, b.RequestID)
			a.sReg = append(a.sReg, reg)
			a.sRV = append(a.sRV, s.RightVersion)
			a.sRCA = append(a.sRCA, s.RightChangedAt)
		}
		if st := b.Settle; st != nil {
			sh.settle = true
			a.xUnit = append(a.xUnit, n)
			a.xSession = append(a.xSession, b.SessionID)
			a.xState = append(a.xState, string(st.State))
			a.xEnd = append(a.xEnd, st.EndAt)
			a.xCharged = append(a.xCharged, st.Charged)
			a.xAt = append(a.xAt, b.At)
		}
		var at *time.Time
		if !b.At.IsZero() {
			at = &b.At
		}
		a.bUnit = append(a.bUnit, n)
		a.bPermit = append(a.bPermit, b.PermitID)
		a.bSession = append(a.bSession, b.SessionID)
		a.bRequest = append(a.bRequest, b.RequestID)
		a.bAt = append(a.bAt, at)
		a.bBalance = append(a.bBalance, b.Balance)
		a.bRes = append(a.bRes, b.Reserved)
		a.bUsed = append(a.bUsed, b.Used)
		a.bSettle = append(a.bSettle, b.Settle != nil)
		a.bStart = append(a.bStart, b.Start != nil)
		for i, k := range b.Kinds {
			a.lUnit = append(a.lUnit, n)
			a.lKind = append(a.lKind, k)
			a.lMinutes = append(a.lMinutes, b.Minutes[i])
		}
	}
	for _, e := range f.Events {
		sh.events = true
		a.eUnit = append(a.eUnit, n)
		a.eType = append(a.eType, e.Type)
		a.eAt = append(a.eAt, e.OccurredAt)
		a.ePermit = append(a.ePermit, e.PermitID)
		a.eSession = append(a.eSession, e.SessionID)
		a.eRequest = append(a.eRequest, e.RequestID)
		a.eData = append(a.eData, string(e.Data))
	}
	for _, t := range f.Outbox {
		sh.outbox = true
		a.oUnit = append(a.oUnit, n)
		a.oType = append(a.oType, t.TaskType)
		a.oID = append(a.oID, t.TaskID)
		a.oQueue = append(a.oQueue, t.Queue)
		a.oPayload = append(a.oPayload, string(t.Payload))
		a.oAt = append(a.oAt, t.ProcessAt)
	}
	return sh
}

// or is the shape with the parts of both.
func (s finishShape) or(o finishShape) finishShape {
	return finishShape{s.start || o.start, s.settle || o.settle, s.book || o.book,
		s.events || o.events, s.rejected || o.rejected, s.outbox || o.outbox}
}

// finishResult is a row finishSQL returns: one per unit (unit from 1, with
// what was written of it), then one per outbox row written (unit 0).
type finishResult struct {
	Unit     int     `bun:"unit"`
	Done     int     `bun:"done"`
	Started  int     `bun:"started"`
	Notified int     `bun:"notified"`
	Booked   int     `bun:"booked"`
	Events   int     `bun:"events"` // of all the units
	ID       *int64  `bun:"id"`
	TaskID   *string `bun:"task_id"`
}

// finishUnits writes units (FinishRequest's, in order) in one statement on
// tx. It returns each unit's error as FinishRequest would (nil, ErrPlateParked
// when its session was refused and nothing of it written, ErrRequestKnown,
// a booking's refusal), and fills in the IDs of the outbox rows of the units
// written; an error of the statement, or a count that does not add up, is
// the second result, and then the transaction must be rolled back.
func finishUnits(ctx context.Context, tx bun.IDB, units []finishUnit) ([]error, error) {
	// One request ID twice is a request decided twice: alone, the second
	// would find the first's row. In one statement Postgres would refuse
	// the whole of it (a row affected twice); it is said as what it is.
	seen := make(map[string]bool, len(units))
	settles := map[int64]bool{}
	for _, u := range units {
		if seen[u.id] {
			return nil, fmt.Errorf("finish %d requests: request %s twice: %w", len(units), u.id, ErrRequestKnown)
		}
		seen[u.id] = true
		// Two settlements of one session would settle it once and book
		// twice; a session is one unit's (Tx.hold), and this says so.
		if b := u.f.Booking; b != nil && b.Settle != nil {
			if settles[b.SessionID] {
				return nil, fmt.Errorf("finish %d requests: session %d settled twice", len(units), b.SessionID)
			}
			settles[b.SessionID] = true
		}
	}
	var a finishArgs
	var shape finishShape
	for i, u := range units {
		shape = shape.or(a.add(i+1, u))
	}
	var rows []finishResult
	if err := scanPrepared(ctx, tx, finishSQL(shape), a.list(), &rows); err != nil {
		return nil, fmt.Errorf("finish %d requests: %w", len(units), err)
	}
	byUnit := make(map[int]finishResult, len(units))
	byTask := map[string]int64{}
	events := 0
	for _, r := range rows {
		if r.Unit > 0 {
			byUnit[r.Unit] = r
			events = r.Events
		} else if r.ID != nil && r.TaskID != nil {
			byTask[*r.TaskID] = *r.ID
		}
	}
	errs := make([]error, len(units))
	wantEvents := 0
	for i, u := range units {
		r, ok := byUnit[i+1]
		errs[i] = u.check(r, ok, byTask)
		// A unit's events are written with its request's row, whatever
		// else of it was refused (a settlement that found its session no
		// longer open is said by its own error, not by this count).
		if ok && r.Done == 1 {
			wantEvents += len(u.f.Events)
			if u.rejected {
				wantEvents++
			}
		}
	}
	if events != wantEvents {
		return nil, fmt.Errorf("finish %d requests: %d of %d events written", len(units), events, wantEvents)
	}
	return errs, nil
}

// check says what the statement did of u from its row r: nil when it wrote
// what u asked for (and then u's outbox rows have their IDs, from byTask),
// ErrPlateParked, ErrRequestKnown, a booking's refusal, or an error naming
// what is missing.
func (u finishUnit) check(r finishResult, ok bool, byTask map[string]int64) error {
	f := u.f
	if !ok {
		return fmt.Errorf("finish request %s: no answer for it", u.id)
	}
	if f.Booking != nil && f.Booking.Start != nil && r.Started != 1 {
		return fmt.Errorf("finish request %s: %w", u.id, ErrPlateParked)
	}
	if r.Done != 1 {
		return fmt.Errorf("finish request %s: %w", u.id, ErrRequestKnown)
	}
	if f.Booking != nil && r.Booked != 1 {
		return fmt.Errorf("finish request %s: %w", u.id, f.Booking.refused())
	}
	if r.Notified != 1 {
		return fmt.Errorf("finish request %s: %d notifications", u.id, r.Notified)
	}
	for _, t := range f.Outbox {
		id, ok := byTask[t.TaskID]
		if !ok {
			return fmt.Errorf("finish request %s: its outbox row %s was not written", u.id, t.TaskID)
		}
		t.ID = id
	}
	return nil
}

// finishSQL is the statement of units of a shape (finishArgs; see the top of
// this file for what waits for what). The parts a shape has none of are left
// out, and a never-read CTE of casts (paramsCTE) types their parameters.
func finishSQL(shape finishShape) string {
	if q, ok := finishSQLs.Load(shape); ok {
		return q.(string)
	}
	casts := make([]string, len(finishParams))
	for i, t := range finishParams {
		casts[i] = fmt.Sprintf("$%d::%s", i+1, t)
	}
	started := `started AS (SELECT NULL::int8 AS id WHERE false),
st AS (SELECT NULL::int8 AS unit WHERE false)`
	if shape.start {
		started = `started AS (
    INSERT INTO sessions (id, permit_id, zone, plate, country, state, start_at, planned_end_at, reserved_minutes,
                          notices, request_id, registration, right_version, right_changed_at)
    OVERRIDING SYSTEM VALUE
    SELECT id, permit, zone, plate, country, 'open', start_at, planned, mins, notices::jsonb, request, reg::jsonb, rv, rca
    FROM unnest($14::int[], $15::int8[], $16::int8[], $17::text[], $18::text[], $19::text[], $20::timestamptz[],
                $21::timestamptz[], $22::int[], $23::text[], $24::text[], $25::text[], $26::int[], $27::timestamptz[])
         AS s(unit, id, permit, zone, plate, country, start_at, planned, mins, notices, request, reg, rv, rca)
    WHERE (SELECT count(*) FROM settled) >= 0 -- read first: the settlements are written before (see settled)
    ORDER BY unit
    ON CONFLICT DO NOTHING RETURNING id),
st AS (SELECT s.unit FROM unnest($14::int[], $15::int8[]) AS s(unit, id) JOIN started USING (id))`
	}
	// Settled first, before any session is inserted: a start after a stop of
	// its plate in the same batch then finds that session no longer open, as
	// it would alone. A settlement does not wait for its request's row: a
	// unit whose row is refused is ErrRequestKnown, and the caller rolls the
	// transaction back. Each session is found by a lookup of its ID (LATERAL,
	// kept apart by OFFSET 0) and updated by its row's address (ctid): a
	// join of the array with sessions is planned from the table's statistics
	// when the statement is first prepared, and a generic plan made while
	// sessions was nearly empty read every open session for each batch.
	settled := `settled AS (SELECT NULL::int8 AS id WHERE false)`
	if shape.settle {
		settled = `settled AS (
    UPDATE sessions SET state = x.state, end_at = x.end_at, charged_minutes = x.charged, settled_at = x.at,
        right_version = right_version + CASE WHEN registration IS NULL THEN 0 ELSE 1 END,
        right_changed_at = CASE WHEN registration IS NULL THEN right_changed_at ELSE x.at END
    FROM (SELECT x.*, s.tid
          FROM unnest($28::int[], $29::int8[], $30::text[], $31::timestamptz[], $32::int[], $33::timestamptz[])
               AS x(unit, session, state, end_at, charged, at),
               LATERAL (SELECT ctid AS tid FROM sessions WHERE id = x.session OFFSET 0) AS s) AS x
    WHERE sessions.ctid = x.tid AND sessions.state = 'open'
    RETURNING sessions.id)`
	}
	booked := `go AS (SELECT NULL::int8 AS unit, NULL::int8 AS permit WHERE false),
booked_permit AS (SELECT NULL::int8 AS id WHERE false)`
	if shape.book {
		// A permit is one unit's in a statement (Tx.hold); summed all the
		// same, so that two units on one permit could never count once.
		// Found and updated as the settled sessions are (see settled).
		booked = `go AS (
    SELECT b.* FROM unnest($34::int[], $35::int8[], $36::int8[], $37::text[], $38::timestamptz[], $39::int[], $40::int[],
                           $41::int[], $42::bool[], $43::bool[])
         AS b(unit, permit, session, request, at, balance, reserved, used, settle, start)
    WHERE b.unit IN (SELECT n FROM d)
      AND (NOT b.settle OR b.session IN (SELECT id FROM settled))
      AND (NOT b.start OR b.session IN (SELECT id FROM started))),
booked AS (
    INSERT INTO ledger (permit_id, kind, minutes, session_id, request_id, at)
    SELECT go.permit, l.kind, l.minutes, go.session, go.request, go.at
    FROM unnest($44::int[], $45::text[], $46::int[]) WITH ORDINALITY AS l(unit, kind, minutes, i) JOIN go USING (unit)
    ORDER BY l.unit, l.i),
booked_permit AS (
    UPDATE permits SET balance_minutes = balance_minutes + g.balance,
        reserved_minutes = reserved_minutes + g.reserved, used_minutes = used_minutes + g.used
    FROM (SELECT g.*, p.tid
          FROM (SELECT permit, sum(balance) AS balance, sum(reserved) AS reserved, sum(used) AS used FROM go GROUP BY permit) g,
               LATERAL (SELECT ctid AS tid FROM permits WHERE id = g.permit OFFSET 0) AS p) AS g
    WHERE permits.ctid = g.tid RETURNING permits.id)`
	}
	var evs []string
	if shape.events {
		evs = append(evs, `SELECT e.unit, e.i, e.type, e.at, e.permit_id, e.session_id, e.request_id, e.data::jsonb AS data
        FROM unnest($47::int[], $48::text[], $49::timestamptz[], $50::int8[], $51::int8[], $52::text[], $53::text[])
             WITH ORDINALITY AS e(unit, type, at, permit_id, session_id, request_id, data, i)
        WHERE e.unit IN (SELECT n FROM d)`)
	}
	if shape.rejected {
		evs = append(evs, `SELECT u.n, 0, '`+jobs.EventRequestRejected+`', u.at,
               coalesce((SELECT id FROM permits WHERE id = u.permit_id), (SELECT permit_id FROM sessions WHERE id = u.session_id)),
               NULL::int8, done.request_id,
               jsonb_build_object('request_id', done.request_id, 'type', done.type,
                                  'code', done.error->'code', 'message', done.error->'message')
        FROM u JOIN done USING (request_id) WHERE u.rejected`)
	}
	ev := `ev AS (SELECT NULL::int8 AS pk WHERE false)`
	if len(evs) > 0 {
		ev = `ev AS (
    INSERT INTO events (type, occurred_at, permit_id, session_id, request_id, data)
    SELECT type, at, permit_id, session_id, request_id, data FROM (
        ` + strings.Join(evs, "\n        UNION ALL\n        ") + `
    ) x(unit, i, type, at, permit_id, session_id, request_id, data)
    ORDER BY unit, i
    RETURNING pk)`
	}
	o := `o AS (SELECT NULL::int8 AS id, NULL::text AS task_id WHERE false)`
	if shape.outbox {
		o = `o AS (
    INSERT INTO outbox (task_type, task_id, queue, payload, process_at)
    SELECT t, i, q, p::jsonb, a
    FROM unnest($54::int[], $55::text[], $56::text[], $57::text[], $58::text[], $59::timestamptz[])
         WITH ORDINALITY AS x(unit, t, i, q, p, a, k)
    WHERE x.unit IN (SELECT n FROM d)
    ORDER BY x.unit, x.k
    RETURNING id, task_id)`
	}
	q := `
WITH ` + paramsCTE(casts) + `,
u AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::bytea[],
                         $9::bool[], $10::bool[], $11::timestamptz[], $12::int8[], $13::int8[])
         WITH ORDINALITY AS u(request_id, status, error, result, type, body_hash, subject, task, start, rejected, at,
                              permit_id, session_id, n)),
` + settled + `,
` + started + `,
done AS (
    INSERT INTO requests AS r (request_id, type, body_hash, status, subject, error, result, updated_at)
    SELECT request_id, type, body_hash, status, subject, error::jsonb, result::jsonb, now()
    FROM u WHERE NOT u.start OR u.n IN (SELECT unit FROM st)
    ORDER BY u.n
    ON CONFLICT (request_id) DO UPDATE
    SET status = excluded.status, error = excluded.error, result = excluded.result, task_payload = NULL, updated_at = now()
    WHERE r.status = '` + RequestPending + `' AND r.type = excluded.type AND r.body_hash = excluded.body_hash
      AND (r.task_payload IS NULL
           OR (SELECT u.task IS NULL OR u.task = r.task_payload FROM u WHERE u.request_id = excluded.request_id))
    RETURNING request_id, type, body_hash, subject, status, error, result),
d AS (SELECT u.n FROM u JOIN done USING (request_id) WHERE NOT u.start OR u.n IN (SELECT unit FROM st)),
notified AS (SELECT request_id, pg_notify('` + RequestChannel + `', ` + noticeSQL + `) FROM done),
` + ev + `,
` + o + `,
` + booked + `
SELECT u.n::int AS unit,
       (u.n IN (SELECT n FROM d))::int AS done,
       (u.n IN (SELECT unit FROM st))::int AS started,
       (SELECT count(*) FROM notified WHERE notified.request_id = u.request_id)::int AS notified,
       (u.n IN (SELECT go.unit FROM go JOIN booked_permit ON booked_permit.id = go.permit))::int AS booked,
       (SELECT count(*) FROM ev)::int AS events,
       NULL::int8 AS id, NULL::text AS task_id
FROM u
UNION ALL
SELECT 0, 0, 0, 0, 0, 0, o.id, o.task_id FROM o`
	finishSQLs.Store(shape, q)
	return q
}

// finishSQLs holds finishSQL's statement of each shape met so far.
var finishSQLs sync.Map

// jsonOrNil is a JSON document as an element of a text[] argument: nil (NULL) when empty.
func jsonOrNil(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	return new(string(b))
}

// idPtr is a decimal ID of a payload as an int8 argument: nil when it names
// nothing a permit or session could be.
func idPtr(s string) *int64 {
	if id, ok := ParseID(s); ok {
		return &id
	}
	return nil
}
