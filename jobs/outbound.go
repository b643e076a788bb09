package jobs

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// Telling others (DOMAIN.md "Telling others", README "Events and webhooks:
// how an upstream app subscribes", "Pointing parkd at a register"): the tasks
// that carry parkd's changes out, and the answer types of events and
// webhooks.

// Task types of the outbound work. None carries a plate: each names a row in
// Postgres, which the handler reads when it runs.
const (
	TypeSessionEnding = "session:ending"
	TypeEventDeliver  = "event:deliver"
	TypeRightRegister = "right:register"
)

// The outbound queues. Each is served by an asynq server of its own (see
// worker.NewOutboundServer), so a slow or dead receiver never holds a slot a
// session's task needs.
const (
	QueueWebhooks  = "webhooks"
	QueueRegistrar = "registrar"
)

// AllQueues lists every queue parkd uses (metrics report each from the first scrape).
func AllQueues() []string {
	return []string{QueueCritical, QueueDefault, QueueMaintenance, QueueWebhooks, QueueRegistrar}
}

// Event types (README "Events and webhooks: how an upstream app subscribes").
const (
	EventSessionStarted   = "session.started"
	EventSessionChanged   = "session.changed"
	EventSessionEnding    = "session.ending"
	EventSessionStopped   = "session.stopped"
	EventSessionCancelled = "session.cancelled"
	EventPermitIssued     = "permit.issued"
	EventPermitToppedUp   = "permit.topped_up"
	EventPermitEnded      = "permit.ended"
	EventPermitYearRolled = "permit.year_rolled"
	EventRequestRejected  = "request.rejected"
)

// EventTypes are every event type, in the contract's order.
func EventTypes() []string {
	return []string{EventSessionStarted, EventSessionChanged, EventSessionEnding, EventSessionStopped,
		EventSessionCancelled, EventPermitIssued, EventPermitToppedUp, EventPermitEnded,
		EventPermitYearRolled, EventRequestRejected}
}

// Reasons a session.stopped event gives.
const (
	StopReasonManual      = "manual"
	StopReasonAuto        = "auto"
	StopReasonPermitEnded = "permit_ended"
)

// SessionEnding tells upstream apps that a session ends soon: the worker
// enqueues it for the zone's ending_notice_minutes before PlannedEndAt. It does
// nothing once the session was stopped or its end moved.
type SessionEnding struct {
	SessionID    string    `json:"session_id"`
	PlannedEndAt time.Time `json:"planned_end_at"`
}

// EventDeliver delivers one event to one webhook.
type EventDeliver struct {
	EventID string `json:"event_id"`
	Webhook string `json:"webhook"`
}

// RightRegister sends a session's right to the registrar. Version is the
// right's version when the task was made; a newer version queued makes it
// pointless, and it is skipped.
type RightRegister struct {
	SessionID string `json:"session_id"`
	Version   int    `json:"version"`
}

// Retry policy of the outbound tasks.
const (
	// EndingMaxRetry: a notice that cannot be written within about an hour is
	// not worth sending.
	EndingMaxRetry = 20
	// DeliverMaxRetry with the worker's webhook backoff (worker.WebhookBackoff:
	// 10 s doubling to an hour, less up to a fifth of jitter) keeps a delivery
	// trying for more than 24 hours (24.3 to 30.4) before it is archived.
	DeliverMaxRetry = 38
	// RegisterMaxRetry is "until acknowledged": with a backoff capped at a
	// minute, about 70 days; the reconciler re-enqueues what Redis lost.
	RegisterMaxRetry = 100_000
	// OutboundTimeout bounds one delivery or registration (its HTTP call
	// has 10 s).
	OutboundTimeout = 30 * time.Second
)

// EndingTaskID is deterministic per session and planned end, like the auto-stop's.
func EndingTaskID(sessionID string, plannedEnd time.Time) string {
	return fmt.Sprintf("ending:%s:%d", sessionID, plannedEnd.Unix())
}

// DeliverTaskID is deterministic per webhook and event.
func DeliverTaskID(webhook, eventID string) string {
	return "deliver:" + webhook + ":" + eventID
}

// RightTaskID is deterministic per session and right version.
func RightTaskID(sessionID string, version int) string {
	return fmt.Sprintf("right:%s:%d", sessionID, version)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only strings, ints and instants of 2000-2199
	}
	return b
}

// SessionEndingPayload encodes a session:ending payload.
func SessionEndingPayload(sessionID string, plannedEnd time.Time) []byte {
	return mustJSON(SessionEnding{SessionID: sessionID, PlannedEndAt: plannedEnd.UTC()})
}

// EventDeliverPayload encodes an event:deliver payload.
func EventDeliverPayload(eventID, webhook string) []byte {
	return mustJSON(EventDeliver{EventID: eventID, Webhook: webhook})
}

// RightRegisterPayload encodes a right:register payload.
func RightRegisterPayload(sessionID string, version int) []byte {
	return mustJSON(RightRegister{SessionID: sessionID, Version: version})
}

// NewSessionEnding builds a session's ending notice, due at notifyAt.
func NewSessionEnding(sessionID string, plannedEnd, notifyAt time.Time) *asynq.Task {
	return Rebuild(TypeSessionEnding, EndingTaskID(sessionID, plannedEnd), QueueDefault,
		SessionEndingPayload(sessionID, plannedEnd), notifyAt)
}

// NewEventDeliver builds the delivery of an event to a webhook.
func NewEventDeliver(eventID, webhook string) *asynq.Task {
	return Rebuild(TypeEventDeliver, DeliverTaskID(webhook, eventID), QueueWebhooks,
		EventDeliverPayload(eventID, webhook), time.Time{})
}

// NewRightRegister builds the registration of a session's right at a version.
func NewRightRegister(sessionID string, version int) *asynq.Task {
	return Rebuild(TypeRightRegister, RightTaskID(sessionID, version), QueueRegistrar,
		RightRegisterPayload(sessionID, version), time.Time{})
}

// Registration is where a session's right stands with the registrar (the
// session answer's "registration"): Status off (not registered: the zone has
// no register codes, or no registrar is configured), pending (version not yet
// acknowledged), registered (acknowledged, at RegisteredAt) or rejected (the
// registrar refused the newest version). Version grows with every change of
// the session (0 when off).
type Registration struct {
	Status       string     `json:"status"`
	Version      int        `json:"version"`
	RegisteredAt *time.Time `json:"registered_at,omitempty"`
}

// Registration statuses.
const (
	RegistrationOff        = "off"
	RegistrationPending    = "pending"
	RegistrationRegistered = "registered"
	RegistrationRejected   = "rejected"
)

// Event is one change of a session or permit (GET /v1/events, and the body of
// every webhook delivery). Sequence grows strictly in the order events were
// committed; PermitID is null where the request named no existing permit; Data
// is the session or permit as an operator reads it (plates masked), plus
// "reason" where one applies, or for request.rejected the request's ID, type,
// code and message.
type Event struct {
	ID         string          `json:"id"`
	Sequence   int64           `json:"sequence"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurred_at"`
	PermitID   *string         `json:"permit_id"`
	SessionID  *string         `json:"session_id,omitempty"`
	Data       json.RawMessage `json:"data"`
}

// Webhook is a subscription as operators read it: never its secret. Types nil
// means every type.
type Webhook struct {
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Types     []string  `json:"types"`
	Active    bool      `json:"active"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}
