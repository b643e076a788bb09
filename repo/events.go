package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/uptrace/bun"
)

// Event is a row of events: one change of a session or permit (DOMAIN.md
// "Telling others"), written in the transaction of the change. Sequence is nil
// until the sequencer has numbered it (SequenceEvents); only numbered events
// are read by consumers.
type Event struct {
	bun.BaseModel `bun:"table:events"`

	PK         int64           `bun:"pk,pk,autoincrement"`
	ID         string          `bun:"id,type:uuid,nullzero"` // gen_random_uuid() by default
	Sequence   *int64          `bun:"sequence"`
	Type       string          `bun:"type"`
	OccurredAt time.Time       `bun:"occurred_at"`
	PermitID   *int64          `bun:"permit_id"`
	SessionID  *int64          `bun:"session_id"`
	RequestID  *string         `bun:"request_id"`
	Data       json.RawMessage `bun:"data,type:jsonb"`
	CreatedAt  time.Time       `bun:"created_at,nullzero,default:current_timestamp"`
}

// AddEvents writes events in the caller's transaction, in one statement.
func AddEvents(ctx context.Context, tx bun.IDB, events ...*Event) error {
	if len(events) == 0 {
		return nil
	}
	if _, err := tx.NewInsert().Model(&events).ExcludeColumn("pk", "id", "sequence", "created_at").Exec(ctx); err != nil {
		return fmt.Errorf("write %d events: %w", len(events), err)
	}
	return nil
}

// Webhook is a row of webhooks: a subscription to events.
type Webhook struct {
	bun.BaseModel `bun:"table:webhooks"`

	Name      string    `bun:"name,pk"`
	URL       string    `bun:"url"`
	Secret    string    `bun:"secret"` // whsec_ + base64; never shown
	Types     []string  `bun:"types,array"`
	Active    bool      `bun:"active"`
	CreatedAt time.Time `bun:"created_at,nullzero,default:current_timestamp"`
	UpdatedAt time.Time `bun:"updated_at,nullzero,default:current_timestamp"`
}

// WebhookDelivery is a row of webhook_deliveries: an event owed to a webhook.
type WebhookDelivery struct {
	bun.BaseModel `bun:"table:webhook_deliveries"`

	Webhook     string     `bun:"webhook,pk"`
	EventID     string     `bun:"event_id,pk,type:uuid"`
	Status      string     `bun:"status"` // DeliveryPending, DeliveryDelivered, DeliveryFailed, DeliveryDropped
	Attempts    int        `bun:"attempts"`
	LastError   *string    `bun:"last_error"`
	CreatedAt   time.Time  `bun:"created_at,nullzero,default:current_timestamp"`
	DeliveredAt *time.Time `bun:"delivered_at"`
}

// Delivery statuses: pending (not yet delivered, being tried), delivered (a
// 2xx came back), failed (the task gave up after its retries: archived, an
// operator may run it again), dropped (the webhook was deleted or made
// inactive before it was delivered).
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
	DeliveryDropped   = "dropped"
)
