package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
)

// A request's whole life in the requests table: the worker claims it
// (ClaimRequest, which makes its row when none is there) and finishes it with
// its outcome in the transaction of the change it made (FinishRequest, which
// announces it: notify.go); the HTTP intake reads it first (GetRequest: an ID
// already known answers for itself) and records it, with its task's payload,
// only when it is about to answer 202 or asked not to wait (RegisterRequest,
// AdoptRequest, and ForgetPendingRequest when the queue is unreachable); the
// reconciler enqueues again what such a record promised and Redis lost
// (StrandedRequests); `parkd check` and the metrics watch what stays pending
// (PendingRequests); the lab reads what became of a run (RequestOutcomes).

// Request statuses.
const (
	RequestPending  = "pending"
	RequestApplied  = "applied"
	RequestRejected = "rejected"
)

// Request is a row of requests: the outcome of one request ID.
type Request struct {
	bun.BaseModel `bun:"table:requests"`

	RequestID string          `bun:"request_id,pk"`
	Type      string          `bun:"type"`
	BodyHash  string          `bun:"body_hash"`
	Status    string          `bun:"status"`
	Subject   *string         `bun:"subject"`
	Error     json.RawMessage `bun:"error,type:jsonb"`
	Result    json.RawMessage `bun:"result,type:jsonb"`
	// TaskPayload is the payload of the request's task while the request is
	// pending and its record was made by the intake (RegisterRequest): what
	// the reconciler enqueues again should Redis lose the task. Nil once
	// finished (it names a plate).
	TaskPayload []byte    `bun:"task_payload"`
	CreatedAt   time.Time `bun:"created_at,default:current_timestamp"`
	UpdatedAt   time.Time `bun:"updated_at,default:current_timestamp"`
}

// RegisterRequest records a request the intake has enqueued or is about to
// (its task's payload, taskPayload) as pending, owned by subject (who asked,
// "role:sub"), unless its ID is already known. It returns the row as it now
// stands and whether this call created it. The caller compares type,
// fingerprint and subject: the same ID for another request is an idempotency
// conflict, and an ID already finished (the worker may have finished it a
// moment ago) is answered from its outcome.
//
// The intake calls it before it answers 202, so that GET /v1/requests/{id}
// knows the request (and whose it is) from the moment it was accepted, and
// the reconciler can enqueue the payload again should Redis lose the task
// (StrandedRequests): a 202 is never lost.
func RegisterRequest(ctx context.Context, db bun.IDB, id, typ, bodyHash, subject string, taskPayload []byte) (*Request, bool, error) {
	var rows []Request
	err := db.NewRaw(`
		INSERT INTO requests (request_id, type, body_hash, status, subject, task_payload)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (request_id) DO NOTHING
		RETURNING `+columns[Request](db, ""), id, typ, bodyHash, RequestPending, subject, taskPayload).Scan(ctx, &rows)
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

// RecordHeldTask replaces the task recorded with pending request id, ours,
// with held: the same request's task that already held its task ID in
// Redis when ours was refused (jobs.HeldTask), its first receipt, which is
// the one the worker must decide. A request finished, or recorded with
// another task meanwhile, is left as it is.
func RecordHeldTask(ctx context.Context, db bun.IDB, id string, ours, held []byte) error {
	if _, err := db.NewUpdate().Model((*Request)(nil)).Set("task_payload = ?", held).
		Where("request_id = ? AND status = ? AND task_payload = ?", id, RequestPending, ours).Exec(ctx); err != nil {
		return fmt.Errorf("record the held task of request %s: %w", id, err)
	}
	return nil
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

// ClaimRequest records a request as pending, or locks the row it already has, and
// returns it. Inside the caller's transaction this serialises two deliveries of the
// same request: the second waits for the first to commit and then sees its outcome.
// subject is who asked, as the intake put it on the task (nil: a task enqueued
// directly by an upstream app); a row the intake recorded keeps its own.
func ClaimRequest(ctx context.Context, tx bun.IDB, id, typ, bodyHash string, subject *string) (*Request, error) {
	// The intake records a request only when it answers 202 (RegisterRequest),
	// so most requests have no row yet: the insert comes first, and the row it
	// inserts is ours (locked by the insert itself), one statement. An insert
	// that meets a row, the intake's or an earlier delivery's, waits for its
	// transaction, and then the row is locked and read.
	var mine []Request
	if err := scanPrepared(ctx, tx, `
		INSERT INTO requests (request_id, type, body_hash, status, subject) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (request_id) DO NOTHING RETURNING `+columns[Request](tx, ""),
		[]any{id, typ, bodyHash, RequestPending, subject}, &mine); err != nil {
		return nil, fmt.Errorf("claim request %s: %w", id, err)
	}
	if len(mine) == 1 {
		return &mine[0], nil
	}
	got := new(Request)
	err := tx.NewSelect().Model(got).Where("request_id = ?", id).For("UPDATE").Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		// Deleted between the two (ForgetPendingRequest of an intake whose
		// enqueue failed): asynq runs the task again and the insert makes it.
		return nil, fmt.Errorf("lock request %s: gone after a conflicting insert", id)
	}
	if err != nil {
		return nil, fmt.Errorf("lock request %s: %w", id, err)
	}
	return got, nil
}

// ErrUnrecordable is returned by FinishRequest for a result that cannot be
// encoded as JSON (an instant outside years 0-9999): the same result never
// can be, so the request must end some other way than by a retry.
var ErrUnrecordable = errors.New("repo: the outcome cannot be encoded")

// Finish is what FinishRequest records of a request: its outcome, and what
// rides with it in the same statement.
type Finish struct {
	// Type and BodyHash are the request's (its task type and fingerprint),
	// Subject who asked (nil: a task enqueued directly), and TaskPayload the
	// payload of the task being decided (nil outside a task): a row already
	// there is finished only if it is this request, still pending, and, when
	// the intake recorded its task (a 202), that task (see FinishRequest).
	Type, BodyHash string
	Subject        *string
	TaskPayload    []byte
	Status         string          // RequestApplied or RequestRejected
	Rejection      *jobs.Rejection // why, when rejected
	Result         any             // the answer, when applied
	// Outbox are tasks to enqueue once the transaction commits (their IDs
	// are filled in).
	Outbox []*OutboxTask
	// Events are the change's events (eventdata.go).
	Events []*Event
	// Booking, when set, is written by the same statement (booking.go): a
	// start's session and reservation, a stop's settlement. A settlement of
	// a session no longer open writes nothing and FinishRequest fails.
	Booking *Booking
	// A rejection is an event of its own (request.rejected, CONTRACT.md
	// "Events and webhooks"), which occurred At and names the permit the
	// request named, if it exists: PermitID, or the permit of SessionID
	// (the decimal IDs of the payload; "" or an ID that names nothing:
	// permit_id null).
	At                  time.Time
	PermitID, SessionID string
}

// ErrRequestKnown is returned by FinishRequest when the request's ID is
// already recorded as something other than this request, pending: finished
// (a second delivery of it), another request under the same ID, or a 202's
// recorded task other than the one decided. The caller's transaction must be
// rolled back (what it decided was decided without knowing that) and the
// request claimed first (ClaimRequest), which tells which of these it is.
var ErrRequestKnown = errors.New("repo: the request ID is already recorded")

// FinishRequest stores a request's outcome and announces it on RequestChannel; the
// notification is delivered when (and only if) the transaction commits. The
// outbox tasks and events given are written by the same statement (one round
// trip), and so is a rejection's request.rejected event: its data is the
// request's ID, type, code and message (already plate-masked by the caller).
//
// The request's row is written here, once, with its outcome: a worker need
// not claim it first (ClaimRequest). A row already there (the intake's record
// of a 202, or a claim) is finished only if it is the same request (f.Type,
// f.BodyHash), still pending, and its recorded task, if any, is
// f.TaskPayload; otherwise nothing is written and the error is
// ErrRequestKnown. Two deliveries of one request decided at once cannot both
// finish it: the second's insert waits for the first's transaction on the
// primary key, and then finds it finished. A start's session (Booking.Start)
// that the plate's exclusion constraint refuses writes nothing at all, and the
// error is ErrPlateParked: the caller may record the rejection instead.
//
// In a pipelined unit of a shared transaction (Coalescer.DoPipelined) the
// statement is held and sent with the batch's others before the commit
// (pipeline.go): FinishRequest then returns nil; ErrPlateParked there makes
// the unit run again alone after the commit, and any other of these errors
// fails the batch, whose units then run again alone.
func FinishRequest(ctx context.Context, tx bun.IDB, id string, f Finish) error {
	if f.Type == "" || f.BodyHash == "" {
		return fmt.Errorf("finish request %s: its type and fingerprint are required", id)
	}
	var errJSON, resJSON json.RawMessage
	var err error
	if f.Rejection != nil {
		if errJSON, err = json.Marshal(f.Rejection); err != nil {
			return err
		}
	}
	if f.Result != nil {
		if resJSON, err = json.Marshal(f.Result); err != nil {
			return fmt.Errorf("finish request %s: %w: %w", id, ErrUnrecordable, err)
		}
	}
	// The events and outbox rows go as arrays, one per column, so that the
	// statement's text is the same whatever they are: prepared once per
	// connection (prepared.go).
	var ev struct {
		types, requests, data []*string
		at                    []time.Time
		permits, sessions     []*int64
	}
	for _, e := range f.Events {
		data := string(e.Data)
		ev.types = append(ev.types, &e.Type)
		ev.at = append(ev.at, e.OccurredAt)
		ev.permits = append(ev.permits, e.PermitID)
		ev.sessions = append(ev.sessions, e.SessionID)
		ev.requests = append(ev.requests, e.RequestID)
		ev.data = append(ev.data, &data)
	}
	var ob struct {
		types, ids, queues, payloads []string
		at                           []time.Time
	}
	for _, t := range f.Outbox {
		ob.types = append(ob.types, t.TaskType)
		ob.ids = append(ob.ids, t.TaskID)
		ob.queues = append(ob.queues, t.Queue)
		ob.payloads = append(ob.payloads, string(t.Payload))
		ob.at = append(ob.at, t.ProcessAt)
	}
	rejected := f.Status == RequestRejected && f.Rejection != nil
	args := []any{f.Status, nullJSON(errJSON), nullJSON(resJSON), id,
		ev.types, ev.at, ev.permits, ev.sessions, ev.requests, ev.data,
		rejected, jobs.EventRequestRejected, Instant(f.At), idOrNil(f.PermitID), idOrNil(f.SessionID),
		ob.types, ob.ids, ob.queues, ob.payloads, ob.at}
	args = append(args, bookingArgs(f.Booking)...)
	args = append(args, f.Type, f.BodyHash, f.Subject, f.TaskPayload)
	shape := finishShape{bookingShape: shapeOf(f.Booking), rejected: rejected, events: len(f.Events) > 0, outbox: len(f.Outbox) > 0}
	check := func(rows []finishRow) error { return checkFinish(id, f, rejected, rows) }
	if t, ok := holding(tx); ok {
		// Sent with the batch's other outcomes before its commit (pipeline.go).
		t.shared.held = append(t.shared.held, heldFinish{unit: t.unit, query: finishSQL(shape), args: args, check: check})
		return nil
	}
	var rows []finishRow
	if err := scanPrepared(ctx, tx, finishSQL(shape), args, &rows); err != nil {
		return fmt.Errorf("finish request %s: %w", id, err)
	}
	return check(rows)
}

// finishRow is a row finishSQL returns.
type finishRow struct {
	ID       *int64  `bun:"id"`
	TaskID   *string `bun:"task_id"`
	Notified int     `bun:"notified"`
	Events   int     `bun:"events"`
	Booked   int     `bun:"booked"`
	Done     int     `bun:"done"`
	Started  int     `bun:"started"`
}

// checkFinish says what FinishRequest's statement did, from its rows: nil
// when it wrote what f asked for (and then f's outbox rows have their IDs),
// ErrPlateParked, ErrRequestKnown, a booking's refusal, or an error naming
// what is missing.
func checkFinish(id string, f Finish, rejected bool, rows []finishRow) error {
	if f.Booking != nil && f.Booking.Start != nil && (len(rows) == 0 || rows[0].Started != 1) {
		return fmt.Errorf("finish request %s: %w", id, ErrPlateParked)
	}
	if len(rows) == 0 || rows[0].Done != 1 {
		return fmt.Errorf("finish request %s: %w", id, ErrRequestKnown)
	}
	wantEvents := len(f.Events)
	if rejected {
		wantEvents++
	}
	if f.Booking != nil && rows[0].Booked != 1 {
		return fmt.Errorf("finish request %s: %w", id, f.Booking.refused())
	}
	if len(rows) != max(len(f.Outbox), 1) || rows[0].Notified != 1 || rows[0].Events != wantEvents {
		return fmt.Errorf("finish request %s: %d of %d outbox rows and %d of %d events written, %d notified",
			id, len(rows), len(f.Outbox), rows[0].Events, wantEvents, rows[0].Notified)
	}
	byTask := map[string]int64{}
	for _, r := range rows {
		if r.ID != nil && r.TaskID != nil {
			byTask[*r.TaskID] = *r.ID
		}
	}
	for _, t := range f.Outbox {
		t.ID = byTask[t.TaskID]
	}
	return nil
}

// finishSQL is FinishRequest's statement for a shape: the outcome, its
// notification (noticeSQL), the change's events ($5-$10, one array per
// column), a rejection's request.rejected event ($11-$15) and the outbox rows
// ($16-$20), a booking ($21-$45, bookingSQL: a start's session first), and
// the request's type, fingerprint, subject and decided task ($46-$49). The
// outcome is inserted, or finishes the row already there if that is this
// request, pending (done), once a start's session was inserted; nothing else
// is written unless it was. Its last SELECT gives one row per outbox row (one
// with NULLs when there are none), each with how many requests were finished
// (0 or 1), notifications and events written, and whether it booked. The
// parts a shape has none of are left out (bookingShape says why).
func finishSQL(shape finishShape) string {
	if q, ok := finishSQLs.Load(shape); ok {
		return q.(string)
	}
	bookingStart, bookingRest := bookingSQL(21, "permits.id", "EXISTS (SELECT 1 FROM done)", shape.bookingShape)
	ev := `ev AS (SELECT NULL::int8 AS pk WHERE false)`
	if shape.events {
		ev = `ev AS (
    INSERT INTO events (type, occurred_at, permit_id, session_id, request_id, data)
    SELECT t, a, p, s, r, d::jsonb
    FROM unnest($5::text[], $6::timestamptz[], $7::int8[], $8::int8[], $9::text[], $10::text[]) AS e(t, a, p, s, r, d)
    WHERE EXISTS (SELECT 1 FROM done)
    RETURNING pk)`
	}
	rejected := `rejected AS (SELECT NULL::int8 AS pk WHERE false)`
	if shape.rejected {
		rejected = `rejected AS (
    INSERT INTO events (type, occurred_at, permit_id, request_id, data)
    SELECT $12, $13, coalesce((SELECT id FROM permits WHERE id = $14), (SELECT permit_id FROM sessions WHERE id = $15)),
           done.request_id,
           jsonb_build_object('request_id', done.request_id, 'type', done.type,
                              'code', done.error->'code', 'message', done.error->'message')
    FROM done WHERE $11::bool RETURNING pk)`
	}
	o := `o AS (SELECT NULL::int8 AS id, NULL::text AS task_id WHERE false)`
	if shape.outbox {
		o = `o AS (
    INSERT INTO outbox (task_type, task_id, queue, payload, process_at)
    SELECT t, i, q, p::jsonb, a
    FROM unnest($16::text[], $17::text[], $18::text[], $19::text[], $20::timestamptz[]) AS x(t, i, q, p, a)
    WHERE EXISTS (SELECT 1 FROM done)
    RETURNING id, task_id)`
	}
	casts := []string{"$1::text", "$2::jsonb", "$3::jsonb", "$4::text",
		"$5::text[]", "$6::timestamptz[]", "$7::int8[]", "$8::int8[]", "$9::text[]", "$10::text[]",
		"$11::bool", "$12::text", "$13::timestamptz", "$14::int8", "$15::int8",
		"$16::text[]", "$17::text[]", "$18::text[]", "$19::text[]", "$20::timestamptz[]"}
	casts = append(casts, bookingParamTypes(21)...)
	for i, t := range []string{"text", "text", "text", "bytea"} {
		casts = append(casts, "$"+lastParam(i+1)+"::"+t)
	}
	q := `
WITH ` + paramsCTE(casts) + `,
` + bookingStart + `,
done AS (
    INSERT INTO requests AS r (request_id, type, body_hash, status, subject, error, result, updated_at)
    SELECT $4, $` + lastParam(1) + `, $` + lastParam(2) + `, $1, $` + lastParam(3) + `, $2::jsonb, $3::jsonb, now()
    WHERE NOT $` + startParam + `::bool OR EXISTS (SELECT 1 FROM started)
    ON CONFLICT (request_id) DO UPDATE
    SET status = excluded.status, error = excluded.error, result = excluded.result, task_payload = NULL, updated_at = now()
    WHERE r.status = '` + RequestPending + `' AND r.type = excluded.type AND r.body_hash = excluded.body_hash
      AND (r.task_payload IS NULL OR $` + lastParam(4) + `::bytea IS NULL OR r.task_payload = $` + lastParam(4) + `::bytea)
    RETURNING request_id, type, body_hash, subject, status, error, result),
notified AS (SELECT pg_notify('` + RequestChannel + `', ` + noticeSQL + `) FROM done),
` + ev + `,
` + rejected + `,
` + o + `,
` + bookingRest + `,
n AS (SELECT (SELECT count(*) FROM done) AS done,
             (SELECT count(*) FROM started) AS started,
             (SELECT count(*) FROM notified) AS notified,
             (SELECT count(*) FROM ev) + (SELECT count(*) FROM rejected) AS events,
             (SELECT count(*) FROM booked_permit) AS booked)
SELECT o.id, o.task_id, n.done, n.started, n.notified, n.events, n.booked FROM n LEFT JOIN o ON true`
	finishSQLs.Store(shape, q)
	return q
}

// finishShape is which parts a FinishRequest writes: its booking's, a
// rejection's event, the change's events, outbox rows.
type finishShape struct {
	bookingShape
	rejected, events, outbox bool
}

// finishSQLs holds finishSQL's statement of each shape met so far.
var finishSQLs sync.Map

// startParam is the parameter of finishSQL that says whether its booking
// starts a session (bookingSQL's START, from $21).
var startParam = fmt.Sprint(21 + slices.Index(bookingParamNames, "START::bool"))

// lastParam is the n-th parameter of finishSQL after the booking's: the
// request's type, fingerprint, subject and decided task.
func lastParam(n int) string { return fmt.Sprint(20 + bookingParams + n) }

// nullJSON is a JSON document as a query argument: NULL when empty.
func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// AnnounceRequest announces request id's recorded outcome on RequestChannel
// (delivered when the caller's transaction commits), as FinishRequest does
// when it records it: the worker calls it for a request ID it finds already
// known (a repeat of a finished request, or another request under the same
// ID), whose waiting intake has read nothing itself and learns the answer,
// or the conflict, from the notice.
func AnnounceRequest(ctx context.Context, tx bun.IDB, id string) error {
	rows, err := queryPrepared(ctx, tx, `SELECT pg_notify('`+RequestChannel+`', `+noticeSQL+`) FROM requests WHERE request_id = $1`, id)
	if err != nil {
		return fmt.Errorf("announce request %s: %w", id, err)
	}
	return rows.Close()
}

// idOrNil is a decimal ID as a query argument: NULL when it is no ID.
func idOrNil(s string) any {
	if id, ok := ParseID(s); ok {
		return id
	}
	return nil
}

// GetRequest reads a request's outcome.
func GetRequest(ctx context.Context, db bun.IDB, id string) (*Request, error) {
	return getPrepared[Request](ctx, db, "request "+id, `SELECT `+columns[Request](db, "")+` FROM requests WHERE request_id = $1`, id)
}

// StrandedRequests reads up to limit requests the intake answered 202 (their
// record holds the task's payload) that are still pending more than olderThan
// after they were recorded, oldest first: the reconciler enqueues each again
// (under its request's task ID, so one still queued is left as it is), since
// Redis may have lost it (a flush, a failover to a replica that had not yet
// received it). Postgres's clock ages them, as it stamped them.
func StrandedRequests(ctx context.Context, db bun.IDB, olderThan time.Duration, limit int) ([]Request, error) {
	var out []Request
	err := db.NewSelect().Model(&out).Column("request_id", "type", "subject", "task_payload").
		Where("status = ?", RequestPending).
		Where("created_at < now() - ?::interval", fmt.Sprintf("%d milliseconds", olderThan.Milliseconds())).
		Where("task_payload IS NOT NULL").
		OrderExpr("created_at").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("stranded requests: %w", err)
	}
	return out, nil
}

// PendingRequestLimit is how long a request may stay pending before `parkd
// check` reports it. A request waits for a worker for milliseconds, and for
// its retries (up to about an hour) only while something is down: minutes of
// pending mean a task that nothing will run (archived, lost with Redis's data,
// never enqueued) or an outage worth a look.
const PendingRequestLimit = 5 * time.Minute

// PendingStats is how many requests (or rights, RightsBacklog) are pending and
// how long the oldest has waited.
type PendingStats struct {
	Count  int64
	Oldest time.Duration // zero when none is pending
}

// PendingRequests counts the pending requests and ages the oldest, on
// Postgres's clock (the one that stamped them).
func PendingRequests(ctx context.Context, db bun.IDB) (PendingStats, error) {
	var row struct {
		Count  int64   `bun:"n"`
		Oldest float64 `bun:"oldest"`
	}
	err := db.NewRaw(`SELECT count(*) AS n, coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest
		FROM requests WHERE status = ?`, RequestPending).Scan(ctx, &row)
	if err != nil {
		return PendingStats{}, fmt.Errorf("pending requests: %w", err)
	}
	return PendingStats{Count: row.Count, Oldest: time.Duration(row.Oldest * float64(time.Second))}, nil
}

// RequestOutcome is what became of one request, as the lab (tools/) holds it
// against the answer its client was given.
type RequestOutcome struct {
	RequestID string `bun:"request_id"`
	Type      string `bun:"type"`
	Status    string `bun:"status"` // RequestPending, RequestApplied or RequestRejected
	Code      string `bun:"code"`   // a rejection's rule code, else ""
}

// RequestOutcomes reads the outcome of every request of the given types.
func RequestOutcomes(ctx context.Context, db bun.IDB, types ...string) ([]RequestOutcome, error) {
	var out []RequestOutcome
	err := db.NewSelect().Model((*Request)(nil)).
		Column("request_id", "type", "status").
		ColumnExpr("coalesce(error->>'code', '') AS code").
		Where("type IN (?)", bun.In(types)).
		Scan(ctx, &out)
	if err != nil {
		return nil, fmt.Errorf("read request outcomes: %w", err)
	}
	return out, nil
}
