package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
)

// A request's whole life in the requests table: the intake registers it
// before it enqueues the task (RegisterRequest, AdoptRequest, and
// ForgetPendingRequest when the queue is unreachable); the worker claims it
// (ClaimRequest) and finishes it with its outcome in the transaction of the
// change it made (FinishRequest, which announces it: notify.go); the intake
// and clients read the outcome (GetRequest); `parkd check` and the metrics
// watch what stays pending (PendingRequests); the lab reads what became of a
// run (RequestOutcomes).

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
	CreatedAt time.Time       `bun:"created_at,default:current_timestamp"`
	UpdatedAt time.Time       `bun:"updated_at,default:current_timestamp"`
}

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

// ClaimRequest records a request as pending, or locks the row it already has, and
// returns it. Inside the caller's transaction this serialises two deliveries of the
// same request: the second waits for the first to commit and then sees its outcome.
func ClaimRequest(ctx context.Context, tx bun.IDB, id, typ, bodyHash string, subject *string) (*Request, error) {
	// A request that came through the HTTP intake already has its row (the
	// intake records it before enqueueing), so the lock comes first: one
	// statement on that path. A task enqueued directly by an upstream app has
	// none yet: the insert makes it, and the inserted row is ours (locked by the
	// insert itself).
	lock := func() (*Request, error) {
		got := new(Request)
		err := tx.NewSelect().Model(got).Where("request_id = ?", id).For("UPDATE").Scan(ctx)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("lock request %s: %w", id, err)
		}
		return got, nil
	}
	if got, err := lock(); got != nil || err != nil {
		return got, err
	}
	r := &Request{RequestID: id, Type: typ, BodyHash: bodyHash, Status: RequestPending, Subject: subject}
	res, err := tx.NewInsert().Model(r).
		Column("request_id", "type", "body_hash", "status", "subject").
		On("CONFLICT (request_id) DO NOTHING").Returning("*").Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim request %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		return r, nil
	}
	// Inserted by someone else since the first look: lock theirs.
	got, err := lock()
	if err == nil && got == nil {
		err = fmt.Errorf("lock request %s: vanished after a conflicting insert", id)
	}
	return got, err
}

// ErrUnrecordable is returned by FinishRequest for a result that cannot be
// encoded as JSON (an instant outside years 0-9999): the same result never
// can be, so the request must end some other way than by a retry.
var ErrUnrecordable = errors.New("repo: the outcome cannot be encoded")

// Finish is what FinishRequest records of a request: its outcome, and what
// rides with it in the same statement.
type Finish struct {
	Status    string          // RequestApplied or RequestRejected
	Rejection *jobs.Rejection // why, when rejected
	Result    any             // the answer, when applied
	// Outbox are tasks to enqueue once the transaction commits (their IDs
	// are filled in).
	Outbox []*OutboxTask
	// Events are the change's events (eventdata.go).
	Events []*Event
	// A rejection is an event of its own (request.rejected, CONTRACT.md
	// "Events and webhooks"), which occurred At and names the permit the
	// request named, if it exists: PermitID, or the permit of SessionID
	// (the decimal IDs of the payload; "" or an ID that names nothing:
	// permit_id null).
	At                  time.Time
	PermitID, SessionID string
}

// FinishRequest stores a request's outcome and announces it on RequestChannel; the
// notification is delivered when (and only if) the transaction commits. The
// outbox tasks and events given are written by the same statement (one round
// trip), and so is a rejection's request.rejected event: its data is the
// request's ID, type, code and message (already plate-masked by the caller).
func FinishRequest(ctx context.Context, tx bun.IDB, id string, f Finish) error {
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
	// The update, and the notification of the row it changed, first; then
	// what rides with it.
	q := `
		WITH done AS (
			UPDATE requests SET status = ?, error = ?, result = ?, updated_at = now()
			WHERE request_id = ? RETURNING request_id, type, status, error, result),
		notified AS (SELECT pg_notify(?, ` + noticeSQL + `) FROM done)`
	args := []any{f.Status, errJSON, resJSON, id, RequestChannel}
	written := "0"
	if len(f.Events) > 0 {
		q += `,
		ev AS (?)`
		args = append(args, tx.NewInsert().Model(&f.Events).ExcludeColumn("pk", "id", "sequence", "created_at").Returning("pk"))
		written = "(SELECT count(*) FROM ev)"
	}
	if f.Status == RequestRejected && f.Rejection != nil {
		q += `,
		rejected AS (
			INSERT INTO events (type, occurred_at, permit_id, request_id, data)
			SELECT ?, ?, coalesce((SELECT id FROM permits WHERE id = ?), (SELECT permit_id FROM sessions WHERE id = ?)),
			       done.request_id,
			       jsonb_build_object('request_id', done.request_id, 'type', done.type,
			                          'code', done.error->'code', 'message', done.error->'message')
			FROM done RETURNING pk)`
		args = append(args, jobs.EventRequestRejected, Instant(f.At), idOrNil(f.PermitID), idOrNil(f.SessionID))
		written = "(SELECT count(*) FROM rejected)"
	}
	if len(f.Outbox) > 0 {
		q += `,
		o AS (?)
		SELECT o.id, o.task_id, n.notified, n.events FROM o,`
		args = append(args, tx.NewInsert().Model(&f.Outbox).ExcludeColumn("created_at").Returning("id, task_id"))
	} else {
		q += `
		SELECT NULL AS id, NULL AS task_id, n.notified, n.events FROM`
	}
	q += ` (SELECT (SELECT count(*) FROM notified) AS notified, ` + written + ` AS events) n`
	var rows []struct {
		ID       *int64  `bun:"id"`
		TaskID   *string `bun:"task_id"`
		Notified int     `bun:"notified"`
		Events   int     `bun:"events"`
	}
	if err := tx.NewRaw(q, args...).Scan(ctx, &rows); err != nil {
		return fmt.Errorf("finish request %s: %w", id, err)
	}
	wantEvents := len(f.Events)
	if f.Status == RequestRejected && f.Rejection != nil {
		wantEvents = 1
	}
	if len(rows) != max(len(f.Outbox), 1) || rows[0].Notified != 1 || rows[0].Events != wantEvents {
		var n, e int
		if len(rows) > 0 {
			n, e = rows[0].Notified, rows[0].Events
		}
		return fmt.Errorf("finish request %s: %d of %d outbox rows and %d of %d events written, %d notified",
			id, len(rows), len(f.Outbox), e, wantEvents, n)
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

// idOrNil is a decimal ID as a query argument: NULL when it is no ID.
func idOrNil(s string) any {
	if id, ok := ParseID(s); ok {
		return id
	}
	return nil
}

// GetRequest reads a request's outcome.
func GetRequest(ctx context.Context, db bun.IDB, id string) (*Request, error) {
	r := new(Request)
	if err := db.NewSelect().Model(r).Where("request_id = ?", id).Scan(ctx); err != nil {
		return nil, notFound(err, "request "+id)
	}
	return r, nil
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
