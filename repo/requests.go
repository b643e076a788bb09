package repo

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/parkd/parkd/jobs"
)

// RequestChannel is the LISTEN/NOTIFY channel on which every finished request ID
// is announced, so that waiting HTTP intakes wake at once instead of polling.
const RequestChannel = "parkd_request_done"

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

// GetRequest reads a request's outcome.
func GetRequest(ctx context.Context, db bun.IDB, id string) (*Request, error) {
	r := new(Request)
	if err := db.NewSelect().Model(r).Where("request_id = ?", id).Scan(ctx); err != nil {
		return nil, notFound(err, "request "+id)
	}
	return r, nil
}

// noticeSQL is the payload announced on RequestChannel for a finished request
// (a row of done): the outcome itself as JSON, so that a waiting intake can
// answer without reading it back; or, when that would pass NOTIFY's 8000-byte
// limit, only the request ID. ParseRequestNotice reads both.
const noticeSQL = `(SELECT CASE WHEN octet_length(n) < 7900 THEN n ELSE request_id END
	FROM (SELECT json_build_object('request_id', request_id, 'status', status, 'error', error, 'result', result)::text AS n) j)`

// RequestNotice is the payload of a notification on RequestChannel.
type RequestNotice struct {
	RequestID string          `json:"request_id"`
	Status    string          `json:"status"`
	Error     json.RawMessage `json:"error"`
	Result    json.RawMessage `json:"result"`
}

// ParseRequestNotice reads a notification's payload: the request ID, and the
// finished request's outcome when the payload carries it (nil otherwise).
func ParseRequestNotice(payload string) (string, *Request) {
	if !strings.HasPrefix(payload, "{") {
		return payload, nil
	}
	var n RequestNotice
	if err := json.Unmarshal([]byte(payload), &n); err != nil || n.RequestID == "" {
		return payload, nil
	}
	r := &Request{RequestID: n.RequestID, Status: n.Status}
	// JSON null is what SQL NULL became: absent, as a read from the table gives.
	if string(n.Error) != "null" {
		r.Error = n.Error
	}
	if string(n.Result) != "null" {
		r.Result = n.Result
	}
	return n.RequestID, r
}

// ErrUnrecordable is returned by FinishRequest for a result that cannot be
// encoded as JSON (an instant outside years 0-9999): the same result never
// can be, so the request must end some other way than by a retry.
var ErrUnrecordable = errors.New("repo: the outcome cannot be encoded")

// FinishRequest stores a request's outcome and announces it on RequestChannel; the
// notification is delivered when (and only if) the transaction commits. Outbox
// tasks given are recorded by the same statement (their IDs filled in), saving
// the round trip of AddOutbox.
func FinishRequest(ctx context.Context, tx bun.IDB, id, status string, rejection *jobs.Rejection, result any, outbox ...*OutboxTask) error {
	var errJSON, resJSON json.RawMessage
	var err error
	if rejection != nil {
		if errJSON, err = json.Marshal(rejection); err != nil {
			return err
		}
	}
	if result != nil {
		if resJSON, err = json.Marshal(result); err != nil {
			return fmt.Errorf("finish request %s: %w: %w", id, ErrUnrecordable, err)
		}
	}
	if len(outbox) == 0 {
		// One round trip: the update, and the notification of the row it changed.
		if _, err := tx.NewRaw(`
			WITH done AS (
				UPDATE requests SET status = ?, error = ?, result = ?, updated_at = now()
				WHERE request_id = ? RETURNING request_id, status, error, result)
			SELECT pg_notify(?, `+noticeSQL+`) FROM done`,
			status, errJSON, resJSON, id, RequestChannel).Exec(ctx); err != nil {
			return fmt.Errorf("finish request %s: %w", id, err)
		}
		return nil
	}
	ins := tx.NewInsert().Model(&outbox).ExcludeColumn("created_at").Returning("id, task_id")
	var rows []struct {
		ID       int64  `bun:"id"`
		TaskID   string `bun:"task_id"`
		Notified int    `bun:"notified"`
	}
	if err := tx.NewRaw(`
		WITH o AS (?),
		done AS (
			UPDATE requests SET status = ?, error = ?, result = ?, updated_at = now()
			WHERE request_id = ? RETURNING request_id, status, error, result),
		notified AS (SELECT pg_notify(?, `+noticeSQL+`) FROM done)
		SELECT o.id, o.task_id, (SELECT count(*) FROM notified) AS notified FROM o`,
		ins, status, errJSON, resJSON, id, RequestChannel).Scan(ctx, &rows); err != nil {
		return fmt.Errorf("finish request %s with its outbox: %w", id, err)
	}
	if len(rows) != len(outbox) || rows[0].Notified != 1 {
		return fmt.Errorf("finish request %s: %d of %d outbox rows written, %d notified", id, len(rows), len(outbox), rows[0].Notified)
	}
	byTask := map[string]int64{}
	for _, r := range rows {
		byTask[r.TaskID] = r.ID
	}
	for _, t := range outbox {
		t.ID = byTask[t.TaskID]
	}
	return nil
}

// PendingRequestLimit is how long a request may stay pending before `parkd
// check` reports it. A request waits for a worker for milliseconds, and for
// its retries (up to about an hour) only while something is down: minutes of
// pending mean a task that nothing will run (archived, lost with Redis's data,
// never enqueued) or an outage worth a look.
const PendingRequestLimit = 5 * time.Minute

// PendingStats is how many requests are pending and how long the oldest has.
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
