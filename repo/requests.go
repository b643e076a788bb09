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
	// A rejection is an event of its own (request.rejected, README "Events and
	// webhooks: how an upstream app subscribes"), which occurred At and names
	// the permit the request named, if it exists: PermitID, or the permit of
	// SessionID (the decimal IDs of the payload; "" or an ID that names nothing:
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
// outcome is held and written with the batch's others, in one statement,
// before the commit (pipeline.go, finish.go): FinishRequest then returns nil;
// ErrPlateParked there makes the unit run again alone after the commit, and
// any other of these errors fails the batch, whose units then run again
// alone.
func FinishRequest(ctx context.Context, tx bun.IDB, id string, f Finish) error {
	u, err := newFinishUnit(id, f)
	if err != nil {
		return err
	}
	if t, ok := holding(tx); ok {
		// Written with the batch's other outcomes before its commit
		// (pipeline.go).
		t.shared.held = append(t.shared.held, heldUnit{unit: t.unit, finish: u})
		return nil
	}
	errs, err := finishUnits(ctx, tx, []finishUnit{u})
	if err != nil {
		return err
	}
	return errs[0]
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
