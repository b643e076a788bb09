package worker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// decode reads a payload; a payload that cannot be read will never be read, so it
// is not retried.
func decode(t *asynq.Task, v any) error {
	if err := json.Unmarshal(t.Payload(), v); err != nil {
		return unreadablePayload(t, err)
	}
	return nil
}

func unreadablePayload(t *asynq.Task, err error) error {
	return fmt.Errorf("%s payload: %v: %w", t.Type(), err, asynq.SkipRetry)
}

// decodeRequest reads a request task's payload into v and reports whether it
// could. A payload that cannot be read will never be read, so it is not retried;
// when its request_id can still be read, the request is recorded as rejected
// (bad_request, saying why), so that whoever waits for it is answered rather
// than left pending. decodeRequest returns the error to end the task with:
// nil once the rejection is recorded.
func (h *Handlers) decodeRequest(ctx context.Context, t *asynq.Task, v any) (bool, error) {
	cause := json.Unmarshal(t.Payload(), v)
	if cause == nil {
		return true, nil
	}
	var named struct {
		RequestID string `json:"request_id"`
	}
	if json.Unmarshal(t.Payload(), &named) != nil || !jobs.ValidRequestID(named.RequestID) {
		return false, unreadablePayload(t, cause)
	}
	sum := sha256.Sum256(t.Payload())
	req := unreadable{id: named.RequestID, fingerprint: "unreadable:" + hex.EncodeToString(sum[:])}
	// What it names, if that much can be read: its rejection's event names
	// the permit (permit_id, or a session_id's permit).
	var names struct {
		PermitID  any `json:"permit_id"`
		SessionID any `json:"session_id"`
	}
	_ = json.Unmarshal(t.Payload(), &names)
	req.permitID, _ = names.PermitID.(string)
	req.sessionID, _ = names.SessionID.(string)
	what := t.Type() + " payload"
	if f := unreadableField(t.Payload(), v); f != "" {
		what += ": " + f
	}
	return false, h.apply(ctx, t, t.Type(), req, func(context.Context, repo.Tx) (decision, error) {
		return decision{}, domain.Reject(domain.CodeBadRequest, "%s cannot be read: %v", what, cause)
	})
}

// unreadableField names the first field (by JSON name) of payload that v's type
// cannot read, so that the rejection says which: encoding/json names the field
// of a type mismatch, but not that of a value its type refused (an instant in
// year 10000).
func unreadableField(payload []byte, v any) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(payload, &fields) != nil {
		return ""
	}
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		one, err := json.Marshal(map[string]json.RawMessage{name: fields[name]})
		if err != nil {
			continue
		}
		if json.Unmarshal(one, reflect.New(reflect.TypeOf(v).Elem()).Interface()) != nil {
			return name
		}
	}
	return ""
}

// unreadable is a request whose payload could not be decoded, known by its
// request ID and the hash of its payload alone, and by the permit or session
// it names when those could be read.
type unreadable struct{ id, fingerprint, permitID, sessionID string }

func (u unreadable) ID() string           { return u.id }
func (u unreadable) Fingerprint() string  { return u.fingerprint }
func (u unreadable) CheckInstants() error { return nil }

// decision is what a request's transaction decided: the result to record, the
// events of its changes (written with the outcome, in its statement: a unit
// rolled back and run again alone takes them along), and the follow-up tasks
// to hand to Redis once it commits.
type decision struct {
	result  any
	events  []*repo.Event
	outbox  []*repo.OutboxTask
	booking *repo.Booking // written with the outcome, in its statement
	settled []string      // sessions settled, by how (for the Observer)
	// obsolete are scheduled tasks that the request made pointless: a
	// stopped or moved session's auto-stop and ending notice.
	obsolete []queuedTask
	// refused, when set, says what an error of the outcome's statement
	// means as a rule (a *domain.RuleError, recorded as the rejection), or
	// nil when it is no rule's: a start's session meeting the plate's
	// exclusion constraint as it is written.
	refused func(error) error
}

// names are the permit and the session a request names (decimal IDs, "" for
// none): its rejection's event names the permit, or the session's.
func names(req jobs.Request) (permitID, sessionID string) {
	switch p := req.(type) {
	case jobs.SessionStart:
		return p.PermitID, ""
	case jobs.PermitTopup:
		return p.PermitID, ""
	case jobs.PermitEnd:
		return p.PermitID, ""
	case jobs.SessionStop:
		return "", p.SessionID
	case jobs.SessionChange:
		return "", p.SessionID
	case unreadable:
		return p.permitID, p.sessionID
	}
	return "", ""
}

// rejected is the outcome of a rejected request, with its request.rejected
// event at now.
func rejected(req jobs.Request, code, msg string, now time.Time) repo.Finish {
	f := repo.Finish{Status: repo.RequestRejected, Rejection: &jobs.Rejection{Code: code, Message: msg}, At: now}
	f.PermitID, f.SessionID = names(req)
	return f
}

// apply is the one frame every request runs in (session:start, session:stop,
// session:change,
// permit:issue, permit:topup, permit:end): it claims the request ID in Postgres,
// runs decide under the same transaction, and records the outcome. A second
// delivery (a retry after a crash between commit and acknowledgement, or a
// duplicate enqueue) finds the outcome recorded and changes nothing; another
// request under the same ID is an idempotency conflict (see conflict). A rule
// rejection is the outcome; so is a write the database refuses for good (see
// fail); any other error rolls everything back and asynq retries.
func (h *Handlers) apply(ctx context.Context, t *asynq.Task, typ string, req jobs.Request,
	decide func(ctx context.Context, tx repo.Tx) (decision, error)) error {
	if !jobs.ValidRequestID(req.ID()) {
		return fmt.Errorf("%s: request_id %q is not 1-64 of [A-Za-z0-9_.:-]: %w", typ, req.ID(), asynq.SkipRetry)
	}
	log := h.logger(ctx).With("request_id", req.ID())
	// Who asked, as the HTTP intake put it on the task: the row the claim
	// makes keeps it (the intake records a request only when it answers 202).
	var subject *string
	if t != nil {
		subject = jobs.SubjectOf(t)
	}
	var payload []byte
	if t != nil {
		payload = t.Payload()
	}
	var d decision
	var outcome, code, recordedType string
	var recorded []byte
	// The request's row is written once, with its outcome (FinishRequest),
	// without claiming it first: a claim is a write and a round trip of its
	// own for every request, and what it guards against (the ID already
	// known) is the rare case, which FinishRequest finds (ErrRequestKnown).
	// Then everything decided is rolled back and the request is decided again
	// with its claim first, which serialises it behind any other delivery and
	// says what is known under its ID.
	claim := false
	began := h.clock().Now()
	frame := func(ctx context.Context, tx repo.Tx) error {
		d, outcome, code, recordedType = decision{}, OutcomeDuplicate, "", ""
		if claim {
			r, err := repo.ClaimRequest(ctx, tx, req.ID(), typ, req.Fingerprint(), subject)
			if err != nil {
				return err
			}
			// An ID already known: nothing is applied, and whoever waits for
			// this task (the HTTP intake reads nothing before it enqueues) hears
			// the recorded outcome, and from it a conflict.
			if r.Type != typ || r.BodyHash != req.Fingerprint() {
				outcome, code, recordedType = OutcomeConflict, CodeIdempotencyConflict, r.Type
				// The ID belongs to a request the intake accepted (202, its
				// task recorded) whose own task could not be queued: this
				// one held the ID in Redis. Its recorded task is decided
				// here first, or nothing ever would decide it.
				if r.Status == repo.RequestPending && r.TaskPayload != nil && t != nil {
					recorded = r.TaskPayload
					return errDecideOwner
				}
				return repo.AnnounceRequest(ctx, tx, req.ID())
			}
			if r.Status != repo.RequestPending {
				log.Info("request already " + r.Status + ": nothing to do")
				return repo.AnnounceRequest(ctx, tx, req.ID())
			}
			// The intake answered 202 for this request and recorded its task; a
			// repeat's task (its own receipt) is not the request as accepted:
			// the recorded one is decided instead.
			if r.TaskPayload != nil && t != nil && !bytes.Equal(r.TaskPayload, payload) {
				recorded = r.TaskPayload
				return errDecideRecorded
			}
		}
		// An instant out of range, or a string with NUL, is refused before any
		// rule looks at it: neither can be stored or written back as JSON.
		err := jobs.Check(req)
		if err == nil {
			d, err = decide(ctx, tx)
		}
		var f repo.Finish
		finish := func() error {
			f.Type, f.BodyHash, f.Subject, f.TaskPayload = typ, req.Fingerprint(), subject, payload
			return repo.FinishRequest(ctx, tx, req.ID(), f)
		}
		rejectAs := func(rule *domain.RuleError) {
			// The message is kept, shown to operators and logged: whatever a
			// rule said, the plate the request names shows masked.
			msg := domain.MaskPlatesIn(rule.Message, platesOf(req)...)
			d, outcome, code = decision{}, OutcomeRejected, string(rule.Code)
			f = rejected(req, code, msg, h.now())
		}
		if rule, ok := domain.AsRule(err); ok {
			rejectAs(rule)
		} else if err != nil {
			return err
		} else {
			outcome = OutcomeApplied
			f = repo.Finish{Status: repo.RequestApplied, Result: d.result, Outbox: d.outbox, Events: d.events, Booking: d.booking}
		}
		err = finish()
		if d.refused != nil && err != nil {
			// The write refused what was decided (a plate found parked as
			// the session was inserted): that is the outcome.
			if rule, ok := domain.AsRule(d.refused(err)); ok {
				rejectAs(rule)
				err = finish()
			}
		}
		if errors.Is(err, repo.ErrRequestKnown) {
			claim = true // a batch that shares the transaction runs it again alone
		}
		if err == nil && outcome == OutcomeRejected {
			log.Info("request rejected", "code", code, "reason", f.Rejection.Message)
		}
		return err
	}
	// A start and a stop read what others write only through their permit's
	// lock: their outcomes may be held and written with the batch's, and the
	// row they lock first locked with the batch's
	// (repo.Coalescer.DoPipelined: a statement and a round trip fewer each).
	run := h.inTx
	if pre, ok := prelockOf(req); ok {
		run = func(ctx context.Context, fn func(ctx context.Context, tx repo.Tx) error) error {
			return h.inPipelinedTx(ctx, fn, pre)
		}
	}
	err := run(ctx, frame)
	if errors.Is(err, repo.ErrRequestKnown) {
		// Decided alone, without its claim: again, with it.
		err = run(ctx, frame)
	}
	if errors.Is(err, errDecideRecorded) {
		log.Info("a repeat of a request answered 202: its recorded task is decided, with the receipt it was accepted at")
		return h.Mux().ProcessTask(ctx, asynq.NewTaskWithHeaders(t.Type(), recorded, t.Headers()))
	}
	if errors.Is(err, errDecideOwner) {
		log.Info("another request under an ID accepted with 202: the accepted request's recorded task is decided first",
			"recorded_type", recordedType)
		if err := h.Mux().ProcessTask(ctx, asynq.NewTaskWithHeaders(recordedType, recorded, t.Headers())); err != nil {
			return fmt.Errorf("%s %s: decide the request accepted under its ID (%s): %w", typ, req.ID(), recordedType, err)
		}
		h.observer().RequestDone(typ, OutcomeConflict, CodeIdempotencyConflict, h.clock().Since(began))
		return h.conflict(ctx, t, typ, req.ID(), recordedType)
	}
	if msg, ok := finalFailure(ctx, err); ok {
		return h.fail(ctx, typ, req, subject, msg, err, began)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", typ, req.ID(), err)
	}
	h.observer().RequestDone(typ, outcome, code, h.clock().Since(began))
	if outcome == OutcomeConflict {
		return h.conflict(ctx, t, typ, req.ID(), recordedType)
	}
	if outcome == OutcomeApplied || outcome == OutcomeRejected {
		h.eventsWritten()
	}
	for _, how := range d.settled {
		h.observer().SessionSettled(how, 0)
	}
	h.handOver(ctx, d.outbox)
	h.forget(ctx, d.obsolete, d.outbox)
	return nil
}

// errDecideRecorded ends the claim of a task whose request the intake
// recorded with another payload (its receipt) when it answered 202: apply
// then runs the recorded task instead.
var errDecideRecorded = errors.New("the request's recorded task is decided instead")

// errDecideOwner ends the claim of a task that is another request under an
// ID the intake accepted (202) and recorded with its own task: apply decides
// the recorded task, then answers this one as the conflict it is.
var errDecideOwner = errors.New("the recorded request under this ID is decided first")

// platesOf are the plates a request names.
func platesOf(req jobs.Request) []string {
	switch p := req.(type) {
	case jobs.SessionStart:
		return []string{p.Plate}
	case jobs.SessionChange:
		if p.Plate != nil {
			return []string{*p.Plate}
		}
	}
	return nil
}

// ConflictTries is how many times a request meets a unique or exclusion
// violation before it is taken as final: such a refusal can be a concurrent
// writer's doing, which the next attempt sees and takes another path around.
const ConflictTries = 3

// finalFailure reports whether err is one that trying again cannot cure, and
// says what it is in words fit for the requester and operators (never a value,
// which may be a plate): the database refusing the write for good
// (repo.Refusal), or an outcome that cannot be written down. Outside a task
// (the seed command, tests) a conflict counts as final at once.
func finalFailure(ctx context.Context, err error) (string, bool) {
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		return "", false
	}
	if errors.Is(err, repo.ErrUnrecordable) {
		return "the outcome of this request cannot be recorded (a value in it cannot be written down); sending it again will not help", true
	}
	ref, ok := repo.AsRefusal(err)
	if !ok {
		return "", false
	}
	if ref.Conflict() {
		if retried, inTask := asynq.GetRetryCount(ctx); inTask && retried+1 < ConflictTries {
			return "", false
		}
	}
	return ref.Message(), true
}

// fail ends a request that can never be applied: the transaction that tried it
// was rolled back whole (nothing of it is written), and a fresh one records the
// request as rejected with domain.CodeRequestFailed, so that the client reads
// an outcome (422) instead of a 202 that stays pending through every retry.
// Only a failure to record that is retried.
func (h *Handlers) fail(ctx context.Context, typ string, req jobs.Request, subject *string, msg string, cause error, began time.Time) error {
	log := h.logger(ctx).With("request_id", req.ID())
	recorded := false
	err := h.inTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		recorded = false
		r, err := repo.ClaimRequest(ctx, tx, req.ID(), typ, req.Fingerprint(), subject)
		if err != nil {
			return err
		}
		if r.Type != typ || r.BodyHash != req.Fingerprint() || r.Status != repo.RequestPending {
			return nil // another request's, or decided meanwhile: not ours to end
		}
		recorded = true
		f := rejected(req, string(domain.CodeRequestFailed), msg, h.now())
		f.Type, f.BodyHash, f.Subject = typ, req.Fingerprint(), subject
		return repo.FinishRequest(ctx, tx, req.ID(), f)
	})
	if err != nil {
		return fmt.Errorf("%s %s: record that it failed for good (%w): %w", typ, req.ID(), cause, err)
	}
	if recorded {
		h.eventsWritten()
		log.Error("request failed for good: recorded as rejected, not retried", "code", domain.CodeRequestFailed, "err", cause)
		h.observer().RequestDone(typ, OutcomeRejected, string(domain.CodeRequestFailed), h.clock().Since(began))
	}
	return nil
}

// CodeIdempotencyConflict is the answer to a request whose ID was used for a
// different request (intake/openapi.yaml: 409 over HTTP).
const CodeIdempotencyConflict = "idempotency_conflict"

// conflict answers a task whose request ID was already used for a different
// request (another type, or another payload): the recorded request and its
// outcome stay as they are, and this one is applied never. The intake answers
// that 409 before it enqueues anything; a task enqueued directly (package jobs)
// meets it here. Taking it for a repeat of the first would answer the sender
// with an outcome of something it did not ask, so the task gets its own answer
// instead: an idempotency_conflict written as the task's result and its error,
// and it is archived at once (not retried: it can never succeed), where
// asynq's Inspector and asynqmon show it.
func (h *Handlers) conflict(ctx context.Context, t *asynq.Task, typ, id, recordedType string) error {
	msg := fmt.Sprintf("request ID %s was already used for a different request (%s)", id, recordedType)
	h.logger(ctx).Warn("request ID reused for a different request: refused", "request_id", id, "recorded_type", recordedType)
	if w := t.ResultWriter(); w != nil { // nil when the handler is called directly
		body, _ := json.Marshal(map[string]any{ // cannot fail: strings
			"request_id": id, "status": repo.RequestRejected,
			"error": jobs.Rejection{Code: CodeIdempotencyConflict, Message: msg},
		})
		if _, err := w.Write(body); err != nil {
			h.logger(ctx).Warn("could not write the conflict as the task's result", "err", err)
		}
	}
	return fmt.Errorf("%s: %s; this %s is not applied: %w", CodeIdempotencyConflict, msg, typ, asynq.SkipRetry)
}

func receivedAt(t time.Time, now time.Time) time.Time {
	if t.IsZero() {
		// A payload enqueued without the jobs constructors carries no receipt
		// instant; the worker's clock is the best left.
		return now
	}
	return repo.Instant(t)
}

func notFoundRule(err error, what, id string) error {
	if errors.Is(err, repo.ErrNotFound) {
		return domain.Reject(domain.CodeNotFound, "%s %s not found", what, id)
	}
	return err
}

// prelockOf is the row a session's start (its permit) or stop (its session)
// locks first, and whether req is one of those, whose unit is pipelined. An
// ID that names nothing names no row: the lock call then says not_found.
func prelockOf(req jobs.Request) (repo.Prelock, bool) {
	switch r := req.(type) {
	case jobs.SessionStart:
		id, _ := repo.ParseID(r.PermitID)
		return repo.Prelock{StartPermit: id}, true
	case jobs.SessionStop:
		id, _ := repo.ParseID(r.SessionID)
		return repo.Prelock{Session: id}, true
	}
	return repo.Prelock{}, false
}
