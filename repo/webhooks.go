package repo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/parkd/parkd/jobs"
)

// Webhooks and what each is owed (README "Events and webhooks: how an upstream
// app subscribes"). The subscriptions are written directly by operators
// (PUT /v1/admin/webhooks); the deliveries by the sequencer (SequenceEvents)
// and the event:deliver task.

// PutWebhook creates the webhook w names, or replaces its url, secret, types
// and active flag, and returns it as stored. Events already numbered keep the
// deliveries they were owed; the new settings apply to events numbered from
// now on.
func PutWebhook(ctx context.Context, db bun.IDB, w *Webhook) (*Webhook, error) {
	out := new(Webhook)
	err := db.NewRaw(`
		INSERT INTO webhooks (name, url, secret, types, active) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE
		SET url = EXCLUDED.url, secret = EXCLUDED.secret, types = EXCLUDED.types,
		    active = EXCLUDED.active, updated_at = now()
		RETURNING `+columns[Webhook](db, ""), w.Name, w.URL, w.Secret, pgTextArray(w.Types), w.Active).Scan(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("put webhook %s: %w", w.Name, err)
	}
	return out, nil
}

// pgTextArray is a text[] argument, NULL for nil.
func pgTextArray(s []string) any {
	if s == nil {
		return nil
	}
	return pgdialect.Array(s)
}

// GetWebhook reads a webhook by name (ErrNotFound when there is none).
func GetWebhook(ctx context.Context, db bun.IDB, name string) (*Webhook, error) {
	return getPrepared[Webhook](ctx, db, "webhook "+name, `SELECT `+columns[Webhook](db, "")+` FROM webhooks WHERE name = $1`, name)
}

// ListWebhooks lists every webhook by name.
func ListWebhooks(ctx context.Context, db bun.IDB) ([]Webhook, error) {
	var out []Webhook
	if err := db.NewSelect().Model(&out).OrderExpr("name").Scan(ctx); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return out, nil
}

// DeleteWebhook deletes a webhook and, in the same transaction, drops what it
// was still owed (a webhook made again under the same name starts afresh). It
// reports whether there was one.
func DeleteWebhook(ctx context.Context, db bun.IDB, name string) (bool, error) {
	deleted := false
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*Webhook)(nil)).Where("name = ?", name).Exec(ctx)
		if err != nil {
			return err
		}
		n, _ := res.RowsAffected()
		deleted = n > 0
		_, err = tx.NewUpdate().Model((*WebhookDelivery)(nil)).Set("status = ?", DeliveryDropped).
			Where("webhook = ?", name).Where("status IN (?)", bun.List(undelivered)).Exec(ctx)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("delete webhook %s: %w", name, err)
	}
	return deleted, nil
}

// View is the webhook as operators read it: never its secret.
func (w *Webhook) View() jobs.Webhook {
	return jobs.Webhook{Name: w.Name, URL: w.URL, Types: w.Types, Active: w.Active,
		CreatedAt: w.CreatedAt.UTC(), UpdatedAt: w.UpdatedAt.UTC()}
}

// undelivered are the statuses of a delivery still owed: pending (being
// tried) and failed (given up on after its retries, until an operator runs its
// archived task again).
var undelivered = []string{DeliveryPending, DeliveryFailed}

// GetDelivery reads what an event owes a webhook (ErrNotFound when nothing).
func GetDelivery(ctx context.Context, db bun.IDB, webhook, eventID string) (*WebhookDelivery, error) {
	return getPrepared[WebhookDelivery](ctx, db, "delivery of event "+eventID+" to webhook "+webhook,
		`SELECT `+columns[WebhookDelivery](db, "")+` FROM webhook_deliveries WHERE webhook = $1 AND event_id = $2::uuid`, webhook, eventID)
}

// DeliveryWork is what an event:deliver task reads: the delivery, its
// webhook (nil when deleted) and its event.
type DeliveryWork struct {
	Delivery WebhookDelivery `bun:"embed:d__"`
	Webhook  *Webhook        `bun:"-"`
	Event    Event           `bun:"embed:e__"`
}

// GetDeliveryWork reads the delivery of event eventID to webhook, with the
// webhook and the event, in one statement (issue 16: three before, for every
// event and webhook); ErrNotFound when no such delivery is owed.
func GetDeliveryWork(ctx context.Context, db bun.IDB, webhook, eventID string) (*DeliveryWork, error) {
	var rows []deliveryWorkRow
	if err := scanPrepared(ctx, db, deliveryWorkSQL(db, "$1", "$2::uuid"), []any{webhook, eventID}, &rows); err != nil {
		return nil, fmt.Errorf("delivery of event %s to webhook %s: %w", eventID, webhook, err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("delivery of event %s to webhook %s: %w", eventID, webhook, ErrNotFound)
	}
	return rows[0].work(), nil
}

// deliveryWorkRow is a row of deliveryWorkSQL.
type deliveryWorkRow struct {
	DeliveryWork
	Hook  Webhook `bun:"embed:w__"`
	Found bool    `bun:"webhook_found"`
}

func (r *deliveryWorkRow) work() *DeliveryWork {
	w := r.DeliveryWork
	if r.Found {
		w.Webhook = &r.Hook
	}
	return &w
}

// deliveryWorkSQL selects the delivery of event (an expression of type uuid)
// to webhook (of type text), with its event and its webhook, as
// deliveryWorkRow: one row or none.
func deliveryWorkSQL(db bun.IDB, webhook, event string) string {
	return `SELECT ` + aliasedColumns[WebhookDelivery](db, "d", "d__") + `, ` + aliasedColumns[Event](db, "e", "e__") + `,
		` + aliasedColumns[Webhook](db, "w", "w__") + `, w.name IS NOT NULL AS webhook_found
		FROM webhook_deliveries AS d JOIN events AS e ON e.id = d.event_id LEFT JOIN webhooks AS w ON w.name = d.webhook
		WHERE d.webhook = ` + webhook + ` AND d.event_id = ` + event
}

// PendingDeliveries lists, after the delivery (afterWebhook, afterEvent) in
// (webhook, event_id) order, at most limit deliveries still being tried
// (pending) to an active webhook: the ones whose event:deliver task lives
// only in Redis, which the reconciler queues again when Redis lost its data.
// The first page starts after ("", "").
func PendingDeliveries(ctx context.Context, db bun.IDB, afterWebhook, afterEvent string, limit int) ([]WebhookDelivery, error) {
	if afterEvent == "" {
		afterEvent = "00000000-0000-0000-0000-000000000000"
	}
	var out []WebhookDelivery
	err := db.NewSelect().Model(&out).ModelTableExpr("webhook_deliveries AS d").Column("d.webhook", "d.event_id").
		Join("JOIN webhooks AS w ON w.name = d.webhook AND w.active").
		Where("d.status = ?", DeliveryPending).
		Where("(d.webhook, d.event_id) > (?, ?::uuid)", afterWebhook, afterEvent).
		OrderExpr("d.webhook, d.event_id").Limit(int64(limit)).Scan(ctx)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("pending deliveries: %w", err)
	}
	return out, nil
}

// RecordDelivered records an attempt the receiver answered with a 2xx, at.
func RecordDelivered(ctx context.Context, db bun.IDB, webhook, eventID string, at time.Time) error {
	_, err := execPrepared(ctx, db, `UPDATE webhook_deliveries SET status = $1, delivered_at = $2, attempts = attempts + 1
		WHERE webhook = $3 AND event_id = $4::uuid`, DeliveryDelivered, at, webhook, eventID)
	if err != nil {
		return fmt.Errorf("record delivery of event %s to webhook %s: %w", eventID, webhook, err)
	}
	return nil
}

// RecordDeliveryFailure records a delivery that did not succeed: an attempt (counted,
// with its error) when attempted, else a try skipped without a call (the
// receiver's circuit breaker was open); final marks it failed, its task
// archived after its last retry. A delivery already delivered or dropped
// stays so.
func RecordDeliveryFailure(ctx context.Context, db bun.IDB, webhook, eventID, lastError string, attempted, final bool) error {
	status := DeliveryPending
	if final {
		status = DeliveryFailed
	}
	q := db.NewUpdate().Model((*WebhookDelivery)(nil)).Set("status = ?", status).
		Where("webhook = ?", webhook).Where("event_id = ?::uuid", eventID).Where("status IN (?)", bun.List(undelivered))
	if attempted {
		q = q.Set("attempts = attempts + 1").Set("last_error = ?", lastError)
	}
	if _, err := q.Exec(ctx); err != nil {
		return fmt.Errorf("record failed delivery of event %s to webhook %s: %w", eventID, webhook, err)
	}
	return nil
}

// DropDelivery records that a delivery will not be made: its webhook was
// deleted or made inactive before it was delivered.
func DropDelivery(ctx context.Context, db bun.IDB, webhook, eventID string) error {
	_, err := db.NewUpdate().Model((*WebhookDelivery)(nil)).Set("status = ?", DeliveryDropped).
		Where("webhook = ?", webhook).Where("event_id = ?::uuid", eventID).Where("status IN (?)", bun.List(undelivered)).Exec(ctx)
	if err != nil {
		return fmt.Errorf("drop delivery of event %s to webhook %s: %w", eventID, webhook, err)
	}
	return nil
}

// WebhookBacklog is what an active webhook is still owed: deliveries pending
// or failed, and the age in seconds of the oldest (0 when none).
type WebhookBacklog struct {
	Webhook       string  `bun:"webhook"`
	Undelivered   int64   `bun:"undelivered"`
	OldestSeconds float64 `bun:"oldest_seconds"`
}

// WebhookBacklogs reads every active webhook's backlog in one query (the
// webhook_deliveries_undelivered index), for the metrics' gauges.
func WebhookBacklogs(ctx context.Context, db bun.IDB) ([]WebhookBacklog, error) {
	var out []WebhookBacklog
	err := db.NewRaw(`
		SELECT w.name AS webhook, count(d.event_id) AS undelivered,
		       coalesce(extract(epoch FROM now() - min(d.created_at)), 0)::float8 AS oldest_seconds
		FROM webhooks w
		LEFT JOIN webhook_deliveries d ON d.webhook = w.name AND d.status IN (?)
		WHERE w.active
		GROUP BY w.name
		ORDER BY w.name`, bun.List(undelivered)).Scan(ctx, &out)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("webhook backlogs: %w", err)
	}
	return out, nil
}

// EventDeliveryLimit is how long an event may stay unnumbered, or undelivered
// to an active webhook it is owed to, before `parkd check` lists it: the
// sequencer runs every 250 ms, a delivery's first retry comes within 30 s.
const EventDeliveryLimit = 5 * time.Minute

// eventAuditChecks are the audit's checks of events and webhooks (AuditChecks).
// Deliveries are owed from the pass that numbered the event (same
// transaction), so a delivery row is the whole of what is owed: a webhook made
// or activated later is owed only the events numbered after.
func eventAuditChecks() []AuditCheck {
	limit := fmt.Sprintf("'%d seconds'::interval", int(EventDeliveryLimit.Seconds()))
	return []AuditCheck{
		{"no event unnumbered longer than " + EventDeliveryLimit.String(), `
			SELECT format('event %s (%s, permit %s, session %s): unnumbered for %s',
			              id, type, coalesce(permit_id::text, '-'), coalesce(session_id::text, '-'),
			              date_trunc('second', now() - created_at))
			FROM events
			WHERE sequence IS NULL AND created_at < now() - ` + limit + `
			ORDER BY pk`},
		{"every event numbered more than " + EventDeliveryLimit.String() + " ago delivered to every active webhook it is owed to", `
			SELECT format('event %s (sequence %s, %s) to webhook %s: %s for %s, %s attempts, last error: %s',
			              e.id, e.sequence, e.type, d.webhook, d.status, date_trunc('second', now() - d.created_at),
			              d.attempts, coalesce(d.last_error, '-'))
			FROM webhook_deliveries d
			JOIN webhooks w ON w.name = d.webhook AND w.active
			JOIN events e ON e.id = d.event_id
			WHERE d.status IN ('pending', 'failed') AND d.created_at < now() - ` + limit + `
			ORDER BY d.created_at`},
	}
}
