package jobs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"

	"github.com/parkd/parkd/domain"
)

// Task types (the package doc: what upstream apps enqueue).
const (
	TypeSessionStart     = "session:start"
	TypeSessionStop      = "session:stop"
	TypeSessionChange    = "session:change"
	TypeSessionAutoStop  = "session:autostop"
	TypePermitIssue      = "permit:issue"
	TypePermitTopup      = "permit:topup"
	TypePermitEnd        = "permit:end"
	TypePermitRollover   = "permit:rollover"
	TypeSessionReconcile = "session:reconcile"
)

// Queues: sessions first, permits next, maintenance last.
const (
	QueueCritical    = "critical"
	QueueDefault     = "default"
	QueueMaintenance = "maintenance"
)

// Queues maps each of parkd's own queues to its priority weight. The worker
// (worker.NewServer) serves the critical queue on a server of its own, and
// the other two on a second, by these weights.
func Queues() map[string]int {
	return map[string]int{QueueCritical: 6, QueueDefault: 3, QueueMaintenance: 1}
}

// Retry and timeout policy. Requests retry on infrastructure errors (a rule
// rejection is an outcome, never retried) with capped exponential backoff, about
// an hour in all before asynq archives the task for an operator to look at.
const (
	RequestMaxRetry    = 20
	RequestTimeout     = 30 * time.Second
	AutoStopMaxRetry   = 25
	MaintenanceTimeout = 10 * time.Minute
)

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)

// ValidRequestID reports whether id is 1–64 characters of [A-Za-z0-9_.:-].
func ValidRequestID(id string) bool { return requestIDRE.MatchString(id) }

// Request is implemented by every payload that carries a caller's request ID.
type Request interface {
	// ID is the caller's request ID.
	ID() string
	// Fingerprint identifies what the request asks, whatever its ID and the
	// instant it was received: the same ID with another fingerprint is an
	// idempotency conflict.
	Fingerprint() string
	// CheckInstants refuses a request naming an instant outside the years
	// parkd accepts (domain.CheckInstant: a bad_request rejection). The
	// constructors check it; the worker checks it again, since a payload may
	// come from anywhere, and records the rejection as the request's outcome.
	CheckInstants() error
}

// SessionStart asks for a visitor session on a permit. Country is the plate's
// (ISO 3166-1 alpha-2, "" for NL). StartAt nil means the instant the request
// was received (ReceivedAt); EndAt nil means the longest session allowed.
type SessionStart struct {
	RequestID  string     `json:"request_id"`
	PermitID   string     `json:"permit_id"`
	Plate      string     `json:"plate"`
	Country    string     `json:"country,omitempty"`
	StartAt    *time.Time `json:"start_at,omitempty"`
	EndAt      *time.Time `json:"end_at,omitempty"`
	ReceivedAt time.Time  `json:"received_at,omitzero"`
}

// SessionStop asks to stop (or, before its start, cancel) a session. At nil
// means the instant the request was received.
type SessionStop struct {
	RequestID  string     `json:"request_id"`
	SessionID  string     `json:"session_id"`
	At         *time.Time `json:"at,omitempty"`
	ReceivedAt time.Time  `json:"received_at,omitzero"`
}

// SessionChange asks to move a planned or active session's end, to correct its
// plate, or both (nil: unchanged). EndAt is the new planned end; the rules
// (DOMAIN.md "Change a session") cut it as a start's end is cut.
type SessionChange struct {
	RequestID  string     `json:"request_id"`
	SessionID  string     `json:"session_id"`
	EndAt      *time.Time `json:"end_at,omitempty"`
	Plate      *string    `json:"plate,omitempty"`
	ReceivedAt time.Time  `json:"received_at,omitzero"`
}

// SessionAutoStop settles a session at its planned end. The worker enqueues it.
// PlannedEndAt is the planned end it was scheduled for: once a change has moved
// the end, the auto-stop of the old end finds another end on the session and
// does nothing (the new end has its own). Absent (tasks queued before it was
// carried), the task settles the session whenever its end is due; the
// auto-stop of an end a change moved is also deleted from Redis.
type SessionAutoStop struct {
	SessionID    string     `json:"session_id"`
	PlannedEndAt *time.Time `json:"planned_end_at,omitempty"`
}

// PermitIssue asks for a visitor permit for a resident at an address.
type PermitIssue struct {
	RequestID  string    `json:"request_id"`
	ResidentID string    `json:"resident_id"`
	AddressID  string    `json:"address_id"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// PermitTopup buys whole hours on a permit; payment happened upstream.
type PermitTopup struct {
	RequestID  string    `json:"request_id"`
	PermitID   string    `json:"permit_id"`
	Hours      int       `json:"hours"`
	PaymentRef string    `json:"payment_ref"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// PermitEnd ends a permit (moved house, on request, expiry).
type PermitEnd struct {
	RequestID  string     `json:"request_id"`
	PermitID   string     `json:"permit_id"`
	At         *time.Time `json:"at,omitempty"`
	Reason     string     `json:"reason"`
	ReceivedAt time.Time  `json:"received_at,omitzero"`
}

// PermitRollover starts new permit years for every permit whose year ended by Day.
type PermitRollover struct {
	Day string `json:"day"` // YYYY-MM-DD
}

// ID implements Request.
func (p SessionStart) ID() string { return p.RequestID }

// ID implements Request.
func (p SessionStop) ID() string { return p.RequestID }

// ID implements Request.
func (p SessionChange) ID() string { return p.RequestID }

// ID implements Request.
func (p PermitIssue) ID() string { return p.RequestID }

// ID implements Request.
func (p PermitTopup) ID() string { return p.RequestID }

// ID implements Request.
func (p PermitEnd) ID() string { return p.RequestID }

// Fingerprint implements Request. A country is a part only when it is not
// the default: no country and NL ask the same, and a start recorded before
// starts had a country keeps its fingerprint.
func (p SessionStart) Fingerprint() string {
	parts := []string{TypeSessionStart, p.PermitID, p.Plate, timeOrEmpty(p.StartAt), timeOrEmpty(p.EndAt)}
	if p.Country != "" && p.Country != domain.DefaultCountry {
		parts = append(parts, p.Country)
	}
	return fingerprint(parts...)
}

// Fingerprint implements Request.
func (p SessionStop) Fingerprint() string {
	return fingerprint(TypeSessionStop, p.SessionID, timeOrEmpty(p.At))
}

// Fingerprint implements Request. An absent plate and an absent end are
// parts of their own ("-"), distinct from any plate or instant.
func (p SessionChange) Fingerprint() string {
	plate := "-"
	if p.Plate != nil {
		plate = "=" + *p.Plate
	}
	return fingerprint(TypeSessionChange, p.SessionID, timeOrEmpty(p.EndAt), plate)
}

// Fingerprint implements Request.
func (p PermitIssue) Fingerprint() string {
	return fingerprint(TypePermitIssue, p.ResidentID, p.AddressID)
}

// Fingerprint implements Request.
func (p PermitTopup) Fingerprint() string {
	return fingerprint(TypePermitTopup, p.PermitID, fmt.Sprint(p.Hours), p.PaymentRef)
}

// Fingerprint implements Request.
func (p PermitEnd) Fingerprint() string {
	return fingerprint(TypePermitEnd, p.PermitID, timeOrEmpty(p.At), p.Reason)
}

// CheckInstants implements Request.
func (p SessionStart) CheckInstants() error {
	return checkInstants(p.ReceivedAt, field{"start_at", p.StartAt}, field{"end_at", p.EndAt})
}

// CheckInstants implements Request.
func (p SessionStop) CheckInstants() error {
	return checkInstants(p.ReceivedAt, field{"at", p.At})
}

// CheckInstants implements Request.
func (p SessionChange) CheckInstants() error {
	return checkInstants(p.ReceivedAt, field{"end_at", p.EndAt})
}

// CheckInstants implements Request.
func (p PermitIssue) CheckInstants() error { return checkInstants(p.ReceivedAt) }

// CheckInstants implements Request.
func (p PermitTopup) CheckInstants() error { return checkInstants(p.ReceivedAt) }

// CheckInstants implements Request.
func (p PermitEnd) CheckInstants() error {
	return checkInstants(p.ReceivedAt, field{"at", p.At})
}

// field is an optional instant of a payload, by its JSON name.
type field struct {
	name string
	t    *time.Time
}

// checkInstants checks a payload's received_at (zero: not stamped, the worker
// uses its clock) and its optional instants.
func checkInstants(receivedAt time.Time, fields ...field) error {
	if !receivedAt.IsZero() {
		fields = append(fields, field{"received_at", &receivedAt})
	}
	for _, f := range fields {
		if f.t == nil {
			continue
		}
		if err := domain.CheckInstant(f.name, *f.t); err != nil {
			return err
		}
	}
	return nil
}

func fingerprint(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func timeOrEmpty(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// clock stamps ReceivedAt: the real clock, which this package's tests replace.
// The constructors keep their signatures, so it is not injected from outside:
// a caller with a clock of its own sets ReceivedAt itself (as the intake does).
var clock = clockwork.NewRealClock()

func stamp(t *time.Time) {
	if t.IsZero() {
		*t = clock.Now()
	}
	*t = t.UTC()
}

func checkRequestID(id string) error {
	if !ValidRequestID(id) {
		return fmt.Errorf("jobs: request_id %q must be 1-64 characters of A-Z a-z 0-9 _ . : -", truncate(id, 80))
	}
	return nil
}

func checkNonEmpty(field, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("jobs: %s is required", field)
	}
	if len(v) > 64 {
		return fmt.Errorf("jobs: %s is longer than 64 characters", field)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RequestTaskPrefix starts the asynq task ID of every request. A request ID is
// the caller's free choice, and parkd names its own tasks too (AutoStopTaskID's
// "autostop:…", RolloverTaskID's "permit:rollover:…"; the reconciliation gets
// a random UUID): without a namespace of their own a caller could pick an ID
// that a task of parkd holds, and have the request refused as "already queued"
// and never applied. No task of parkd's own has an ID starting with this.
const RequestTaskPrefix = "request:"

// RequestTaskID is the asynq task ID of the request with the caller's request
// ID requestID: RequestTaskPrefix + requestID.
func RequestTaskID(requestID string) string { return RequestTaskPrefix + requestID }

// RequestQueue is the queue of a request task type, and false for a type that
// is no request.
func RequestQueue(typ string) (string, bool) {
	switch typ {
	case TypeSessionStart, TypeSessionStop, TypeSessionChange:
		return QueueCritical, true
	case TypePermitIssue, TypePermitTopup, TypePermitEnd:
		return QueueDefault, true
	}
	return "", false
}

func requestTask(typ string, payload Request) (*asynq.Task, error) {
	queue, ok := RequestQueue(typ)
	if !ok {
		return nil, fmt.Errorf("jobs: %s is not a request type", typ)
	}
	if err := Check(payload); err != nil {
		return nil, fmt.Errorf("jobs: %s: %w", typ, err)
	}
	requestID := payload.ID()
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("jobs: encode %s: %w", typ, err)
	}
	return asynq.NewTask(typ, b,
		asynq.Queue(queue), asynq.TaskID(RequestTaskID(requestID)),
		asynq.MaxRetry(RequestMaxRetry), asynq.Timeout(RequestTimeout),
	), nil
}

// SubjectHeader is the task header in which parkd's HTTP intake says who
// asked for a request ("role:subject"), so that the worker's claim records it
// with the request (GET /v1/requests/{id} answers only them and operators).
// A task enqueued directly by an upstream app has none: its request has no
// subject until an HTTP repeat under its ID adopts it.
const SubjectHeader = "parkd-subject"

// WithSubject is task t (a request task built by this package) with who asked
// in its SubjectHeader; its queue, ID and retry policy are those of its type.
func WithSubject(t *asynq.Task, subject string) (*asynq.Task, error) {
	return RebuildRequest(t.Type(), t.Payload(), subject)
}

// RebuildRequest builds the task of a request from its type and payload as
// recorded (repo.Request), with subject in SubjectHeader ("" for none): the
// reconciler enqueues it again should Redis have lost it.
func RebuildRequest(typ string, payload []byte, subject string) (*asynq.Task, error) {
	queue, ok := RequestQueue(typ)
	if !ok {
		return nil, fmt.Errorf("jobs: %s is not a request type", typ)
	}
	var named struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(payload, &named); err != nil || !ValidRequestID(named.RequestID) {
		return nil, fmt.Errorf("jobs: %s payload names no valid request_id", typ)
	}
	var headers map[string]string
	if subject != "" {
		headers = map[string]string{SubjectHeader: subject}
	}
	return asynq.NewTaskWithHeaders(typ, payload, headers,
		asynq.Queue(queue), asynq.TaskID(RequestTaskID(named.RequestID)),
		asynq.MaxRetry(RequestMaxRetry), asynq.Timeout(RequestTimeout),
	), nil
}

// SubjectOf is who asked for the request of task t (SubjectHeader), nil when
// it does not say.
func SubjectOf(t *asynq.Task) *string {
	if v, ok := t.Headers()[SubjectHeader]; ok && v != "" {
		return &v
	}
	return nil
}

// NewSessionStart builds a session:start task, stamping ReceivedAt with the
// current instant when it is zero.
func NewSessionStart(p SessionStart) (*asynq.Task, error) {
	if err := checkRequestID(p.RequestID); err != nil {
		return nil, err
	}
	if err := checkNonEmpty("permit_id", p.PermitID); err != nil {
		return nil, err
	}
	stamp(&p.ReceivedAt)
	return requestTask(TypeSessionStart, p)
}

// NewSessionStop builds a session:stop task, stamping ReceivedAt.
func NewSessionStop(p SessionStop) (*asynq.Task, error) {
	if err := checkRequestID(p.RequestID); err != nil {
		return nil, err
	}
	if err := checkNonEmpty("session_id", p.SessionID); err != nil {
		return nil, err
	}
	stamp(&p.ReceivedAt)
	return requestTask(TypeSessionStop, p)
}

// NewSessionChange builds a session:change task, stamping ReceivedAt. A
// change names a new end, a new plate or both; one naming neither is refused
// by the worker (bad_request), after the rule that a stopped or cancelled
// session is session_not_open whatever the change says.
func NewSessionChange(p SessionChange) (*asynq.Task, error) {
	if err := checkRequestID(p.RequestID); err != nil {
		return nil, err
	}
	if err := checkNonEmpty("session_id", p.SessionID); err != nil {
		return nil, err
	}
	stamp(&p.ReceivedAt)
	return requestTask(TypeSessionChange, p)
}

// NewPermitIssue builds a permit:issue task, stamping ReceivedAt.
func NewPermitIssue(p PermitIssue) (*asynq.Task, error) {
	if err := checkRequestID(p.RequestID); err != nil {
		return nil, err
	}
	if err := checkNonEmpty("resident_id", p.ResidentID); err != nil {
		return nil, err
	}
	if err := checkNonEmpty("address_id", p.AddressID); err != nil {
		return nil, err
	}
	stamp(&p.ReceivedAt)
	return requestTask(TypePermitIssue, p)
}

// NewPermitTopup builds a permit:topup task, stamping ReceivedAt.
func NewPermitTopup(p PermitTopup) (*asynq.Task, error) {
	if err := checkRequestID(p.RequestID); err != nil {
		return nil, err
	}
	if err := checkNonEmpty("permit_id", p.PermitID); err != nil {
		return nil, err
	}
	stamp(&p.ReceivedAt)
	return requestTask(TypePermitTopup, p)
}

// NewPermitEnd builds a permit:end task, stamping ReceivedAt.
func NewPermitEnd(p PermitEnd) (*asynq.Task, error) {
	if err := checkRequestID(p.RequestID); err != nil {
		return nil, err
	}
	if err := checkNonEmpty("permit_id", p.PermitID); err != nil {
		return nil, err
	}
	stamp(&p.ReceivedAt)
	return requestTask(TypePermitEnd, p)
}

// AutoStopTaskID is deterministic per session and planned end, so that however
// often the auto-stop is handed to Redis (outbox relay, reconciler after Redis
// lost its data) it is queued once; a moved end gets a new ID.
func AutoStopTaskID(sessionID string, plannedEnd time.Time) string {
	return fmt.Sprintf("autostop:%s:%d", sessionID, plannedEnd.Unix())
}

// AutoStopPayload encodes a session:autostop payload for the planned end it
// is scheduled for.
func AutoStopPayload(sessionID string, plannedEnd time.Time) []byte {
	end := plannedEnd.UTC()
	b, _ := json.Marshal(SessionAutoStop{SessionID: sessionID, PlannedEndAt: &end}) // cannot fail: a string and an instant of 2000-2199
	return b
}

// NewSessionAutoStop builds the auto-stop of a session, due at its planned end.
func NewSessionAutoStop(sessionID string, plannedEnd time.Time) *asynq.Task {
	return asynq.NewTask(TypeSessionAutoStop, AutoStopPayload(sessionID, plannedEnd),
		asynq.Queue(QueueCritical), asynq.TaskID(AutoStopTaskID(sessionID, plannedEnd)),
		asynq.ProcessAt(plannedEnd), asynq.MaxRetry(AutoStopMaxRetry), asynq.Timeout(RequestTimeout))
}

// NewSessionReconcile builds the periodic reconciliation. Several schedulers
// enqueue it every minute; a uniqueness lock shorter than the minute makes that
// one task per minute. (A fixed task ID would do the same until one run failed:
// archived, it would keep the ID and block every later minute. The lock expires
// on its own, so a failed run blocks nothing past its minute.)
func NewSessionReconcile() *asynq.Task {
	return asynq.NewTask(TypeSessionReconcile, nil,
		asynq.Queue(QueueMaintenance), asynq.Unique(ReconcileUniqueFor),
		asynq.MaxRetry(0), asynq.Timeout(MaintenanceTimeout))
}

// ReconcileUniqueFor is how long an enqueued reconciliation keeps others from
// being enqueued: less than the minute between runs.
const ReconcileUniqueFor = 50 * time.Second

// Rebuild turns a task recorded in the outbox back into an asynq task with the
// policy of its type.
func Rebuild(typ, taskID, queue string, payload []byte, processAt time.Time) *asynq.Task {
	maxRetry, timeout := RequestMaxRetry, RequestTimeout
	switch typ {
	case TypeSessionAutoStop:
		maxRetry = AutoStopMaxRetry
	case TypeSessionEnding:
		maxRetry = EndingMaxRetry
	case TypeEventDeliver:
		maxRetry, timeout = DeliverMaxRetry, OutboundTimeout
	case TypeRightRegister:
		maxRetry, timeout = RegisterMaxRetry, OutboundTimeout
	}
	opts := []asynq.Option{asynq.Queue(queue), asynq.TaskID(taskID), asynq.MaxRetry(maxRetry), asynq.Timeout(timeout)}
	if !processAt.IsZero() {
		opts = append(opts, asynq.ProcessAt(processAt))
	}
	return asynq.NewTask(typ, payload, opts...)
}
