package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Handlers applies tasks to Postgres.
type Handlers struct {
	Store  *repo.Store
	Client *asynq.Client         // hands outbox tasks to Redis right after commit
	Redis  redis.UniversalClient // for the reconciler's check that Redis kept its data
	Log    *slog.Logger
	Now    func() time.Time
	// ReconcileGrace overrides the default ReconcileGrace (tests set it small).
	ReconcileGrace time.Duration
	// Observer is told what happened, for metrics; nil observes nothing.
	Observer Observer
	// Coalescer, when set, lets requests handled at the same time share one
	// transaction (and one commit); nil gives each its own.
	Coalescer *repo.Coalescer

	inspectorOnce sync.Once
	inspector     *asynq.Inspector
}

// inTx runs fn in a transaction: a shared one through the Coalescer when there
// is one. fn may run twice (see repo.Coalescer), so it must start from scratch.
func (h *Handlers) inTx(ctx context.Context, fn func(ctx context.Context, tx repo.Tx) error) error {
	if h.Coalescer != nil {
		return h.Coalescer.Do(ctx, fn)
	}
	return h.Store.InTx(ctx, fn)
}

// now is the worker's clock, at Postgres's precision (microseconds), so that an
// instant written and read back compares equal.
func (h *Handlers) now() time.Time {
	if h.Now != nil {
		return repo.Instant(h.Now())
	}
	return repo.Instant(time.Now())
}

func instantPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := repo.Instant(*t)
	return &u
}

// Mux routes every task type parkd handles.
func (h *Handlers) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.Use(h.frame)
	mux.HandleFunc(jobs.TypeSessionStart, h.SessionStart)
	mux.HandleFunc(jobs.TypeSessionStop, h.SessionStop)
	mux.HandleFunc(jobs.TypeSessionAutoStop, h.SessionAutoStop)
	mux.HandleFunc(jobs.TypePermitIssue, h.PermitIssue)
	mux.HandleFunc(jobs.TypePermitTopup, h.PermitTopup)
	mux.HandleFunc(jobs.TypePermitEnd, h.PermitEnd)
	mux.HandleFunc(jobs.TypePermitRollover, h.PermitRollover)
	mux.HandleFunc(jobs.TypeSessionReconcile, h.SessionReconcile)
	return mux
}

type logKey struct{}

// frame runs every task: it gives the task its logger and stops the retries of
// a failure that no retry can cure. A request ends such a failure itself, as a
// recorded outcome (apply); for the others (auto-stop, rollover,
// reconciliation, which have no requester to tell) the task is archived at
// once with an error in the log, where operators look, instead of being retried
// for an hour to the same refusal.
func (h *Handlers) frame(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		l := h.Log.With("task_id", id, "task_type", t.Type())
		ctx = context.WithValue(ctx, logKey{}, l)
		err := next.ProcessTask(ctx, t)
		if _, final := finalFailure(ctx, err); final {
			l.Error("task failed for good: archived, not retried", "err", err)
			return fmt.Errorf("%w: %w", err, asynq.SkipRetry)
		}
		if err != nil && !errors.Is(err, asynq.SkipRetry) {
			l.Warn("task failed, will retry", "err", err)
		}
		return err
	})
}

// logger is the task's logger (with its task ID), or the handlers' own when a
// handler is called directly (the seed command, tests).
func (h *Handlers) logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(logKey{}).(*slog.Logger); ok {
		return l
	}
	if h.Log != nil {
		return h.Log
	}
	return slog.Default()
}

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
// request ID and the hash of its payload alone.
type unreadable struct{ id, fingerprint string }

func (u unreadable) ID() string           { return u.id }
func (u unreadable) Fingerprint() string  { return u.fingerprint }
func (u unreadable) CheckInstants() error { return nil }

// decision is what a request's transaction decided: the result to record and the
// follow-up tasks to hand to Redis once it commits.
type decision struct {
	result  any
	outbox  []*repo.OutboxTask
	settled []string // sessions settled, by how (for the Observer)
	// obsolete are scheduled tasks (critical queue) that the request made
	// pointless: a stopped session's auto-stop.
	obsolete []string
}

// apply is the one frame every request runs in (session:start, session:stop,
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
	var d decision
	var outcome, code, recordedType string
	began := time.Now()
	err := h.inTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		d, outcome, code, recordedType = decision{}, OutcomeDuplicate, "", ""
		r, err := repo.ClaimRequest(ctx, tx, req.ID(), typ, req.Fingerprint(), nil)
		if err != nil {
			return err
		}
		if r.Type != typ || r.BodyHash != req.Fingerprint() {
			outcome, code, recordedType = OutcomeConflict, CodeIdempotencyConflict, r.Type
			return nil
		}
		if r.Status != repo.RequestPending {
			log.Info("request already " + r.Status + ": nothing to do")
			return nil
		}
		// An instant out of range is refused before any rule looks at it: some
		// cannot even be stored or written back as JSON.
		if err = req.CheckInstants(); err == nil {
			d, err = decide(ctx, tx)
		}
		if rule, ok := domain.AsRule(err); ok {
			// The message is kept, shown to operators and logged: whatever a
			// rule said, the plate the request names shows masked.
			msg := domain.MaskPlatesIn(rule.Message, platesOf(req)...)
			log.Info("request rejected", "code", rule.Code, "reason", msg)
			d, outcome, code = decision{}, OutcomeRejected, string(rule.Code)
			return repo.FinishRequest(ctx, tx, req.ID(), repo.RequestRejected,
				&jobs.Rejection{Code: string(rule.Code), Message: msg}, nil)
		}
		if err != nil {
			return err
		}
		outcome = OutcomeApplied
		return repo.FinishRequest(ctx, tx, req.ID(), repo.RequestApplied, nil, d.result, d.outbox...)
	})
	if msg, ok := finalFailure(ctx, err); ok {
		return h.fail(ctx, typ, req, msg, err, began)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", typ, req.ID(), err)
	}
	h.observer().RequestDone(typ, outcome, code, time.Since(began))
	if outcome == OutcomeConflict {
		return h.conflict(ctx, t, typ, req.ID(), recordedType)
	}
	for _, how := range d.settled {
		h.observer().SessionSettled(how, 0)
	}
	h.handOver(ctx, d.outbox)
	h.forget(ctx, d.obsolete, d.outbox)
	return nil
}

// platesOf are the plates a request names.
func platesOf(req jobs.Request) []string {
	if p, ok := req.(jobs.SessionStart); ok {
		return []string{p.Plate}
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
func (h *Handlers) fail(ctx context.Context, typ string, req jobs.Request, msg string, cause error, began time.Time) error {
	log := h.logger(ctx).With("request_id", req.ID())
	recorded := false
	err := h.inTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		recorded = false
		r, err := repo.ClaimRequest(ctx, tx, req.ID(), typ, req.Fingerprint(), nil)
		if err != nil {
			return err
		}
		if r.Type != typ || r.BodyHash != req.Fingerprint() || r.Status != repo.RequestPending {
			return nil // another request's, or decided meanwhile: not ours to end
		}
		recorded = true
		return repo.FinishRequest(ctx, tx, req.ID(), repo.RequestRejected,
			&jobs.Rejection{Code: string(domain.CodeRequestFailed), Message: msg}, nil)
	})
	if err != nil {
		return fmt.Errorf("%s %s: record that it failed for good (%w): %w", typ, req.ID(), cause, err)
	}
	if recorded {
		log.Error("request failed for good: recorded as rejected, not retried", "code", domain.CodeRequestFailed, "err", cause)
		h.observer().RequestDone(typ, OutcomeRejected, string(domain.CodeRequestFailed), time.Since(began))
	}
	return nil
}

// CodeIdempotencyConflict is the answer to a request whose ID was used for a
// different request (CONTRACT.md: 409 over HTTP).
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

// forget deletes scheduled tasks that can no longer do anything. Without it a
// stopped session's auto-stop would wait in Redis until the session's planned
// end (hours, at hundreds of sessions a second) only to find nothing to do. A
// failure costs nothing but that: the task runs and finds the session settled.
func (h *Handlers) forget(ctx context.Context, taskIDs []string, keep []*repo.OutboxTask) {
	if len(taskIDs) == 0 || h.Redis == nil {
		return
	}
	h.inspectorOnce.Do(func() { h.inspector = asynq.NewInspectorFromRedisClient(h.Redis) })
next:
	for _, id := range taskIDs {
		for _, k := range keep {
			if k.TaskID == id { // a shortening by less than a second: the same ID, still wanted
				continue next
			}
		}
		if err := h.inspector.DeleteTask(jobs.QueueCritical, id); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			h.logger(ctx).Debug("obsolete task not deleted; it will run and find nothing to do", "task_id", id, "err", err)
		}
	}
}

// handOver enqueues freshly committed outbox tasks and forgets them. It is the
// fast path: whatever fails here the relay retries from the outbox.
func (h *Handlers) handOver(ctx context.Context, rows []*repo.OutboxTask) {
	if len(rows) == 0 || h.Client == nil {
		return
	}
	var done []int64
	for _, r := range rows {
		if err := enqueueOutbox(ctx, h.Client, r); err != nil {
			h.logger(ctx).Warn("outbox hand-over failed; the relay will retry", "task_id", r.TaskID, "err", err)
			continue
		}
		done = append(done, r.ID)
	}
	if len(done) == 0 {
		return
	}
	err := h.inTx(context.WithoutCancel(ctx), func(ctx context.Context, tx repo.Tx) error {
		return repo.DeleteOutbox(ctx, tx, done...)
	})
	if err != nil {
		h.logger(ctx).Warn("outbox cleanup failed; the relay will re-enqueue (harmless)", "err", err)
	}
}

func enqueueOutbox(ctx context.Context, c *asynq.Client, r *repo.OutboxTask) error {
	t := jobs.Rebuild(r.TaskType, r.TaskID, r.Queue, r.Payload, r.ProcessAt)
	if _, err := c.EnqueueContext(ctx, t); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return err
	}
	return nil
}

func autoStopOutbox(s *repo.Session) *repo.OutboxTask {
	sid := repo.FormatID(s.ID)
	return &repo.OutboxTask{
		TaskType: jobs.TypeSessionAutoStop, TaskID: jobs.AutoStopTaskID(sid, s.PlannedEndAt),
		Queue: jobs.QueueCritical, Payload: jobs.AutoStopPayload(sid), ProcessAt: s.PlannedEndAt,
	}
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

// lockPermit locks the permit a request names; an ID that names no permit is not_found.
func lockPermit(ctx context.Context, tx repo.Tx, id string) (*repo.Permit, error) {
	pid, ok := repo.ParseID(id)
	if !ok {
		return nil, domain.Reject(domain.CodeNotFound, "permit %q not found", id)
	}
	p, err := repo.LockPermit(ctx, tx, pid)
	return p, notFoundRule(err, "permit", id)
}

// SessionStart handles session:start.
func (h *Handlers) SessionStart(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionStart
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypeSessionStart, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		permit, err := lockPermit(ctx, tx, p.PermitID)
		if err != nil {
			return decision{}, err
		}
		if err := h.currentYear(ctx, tx, permit, now); err != nil {
			return decision{}, err
		}
		zone, err := h.Store.ZoneOf(ctx, tx, permit)
		if err != nil {
			return decision{}, err
		}
		plan, err := domain.PlanSession(zone, permit.State(), domain.StartRequest{
			Plate: p.Plate, Country: p.Country, StartAt: instantPtr(p.StartAt), EndAt: instantPtr(p.EndAt), ReceivedAt: receivedAt(p.ReceivedAt, now),
		})
		if err != nil {
			return decision{}, err
		}
		s, err := repo.ApplyStart(ctx, tx, permit, plan, p.RequestID, now)
		if errors.Is(err, repo.ErrPlateParked) {
			return decision{}, domain.Reject(domain.CodePlateAlreadyParked,
				"plate %s already has a session in zone %s that overlaps this one", domain.MaskPlate(plan.Plate), permit.Zone)
		}
		if err != nil {
			return decision{}, err
		}
		return decision{result: s.View(now), outbox: []*repo.OutboxTask{autoStopOutbox(s)}}, nil
	})
}

// SessionStop handles session:stop.
func (h *Handlers) SessionStop(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionStop
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypeSessionStop, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		sid, ok := repo.ParseID(p.SessionID)
		if !ok {
			return decision{}, domain.Reject(domain.CodeNotFound, "session %q not found", p.SessionID)
		}
		s, permit, err := repo.LockSessionAndPermit(ctx, tx, sid)
		if err != nil {
			return decision{}, notFoundRule(err, "session", p.SessionID)
		}
		plan, err := domain.PlanStop(s.DomainState(), domain.StopRequest{At: instantPtr(p.At), ReceivedAt: receivedAt(p.ReceivedAt, now)}, now)
		if err != nil {
			return decision{}, err
		}
		if err := h.currentYear(ctx, tx, permit, chargeInstant(plan, now)); err != nil {
			return decision{}, err
		}
		rid := p.RequestID
		// The auto-stop scheduled for the planned end so far is obsolete after
		// any stop: settled, cancelled, or shortened (which schedules its own).
		obsolete := jobs.AutoStopTaskID(repo.FormatID(s.ID), s.PlannedEndAt)
		if err := repo.ApplyStop(ctx, tx, permit, s, plan, &rid, now); err != nil {
			return decision{}, err
		}
		d := decision{result: s.View(now), obsolete: []string{obsolete}}
		switch plan.Kind {
		case domain.StopShorten:
			d.outbox = append(d.outbox, autoStopOutbox(s))
		case domain.StopSettle:
			d.settled = []string{SettledStop}
		case domain.StopCancel:
			d.settled = []string{SettledCancel}
		}
		return d, nil
	})
}

// SessionAutoStop handles session:autostop: the session is settled at its planned
// end, however late the task runs.
func (h *Handlers) SessionAutoStop(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionAutoStop
	if err := decode(t, &p); err != nil {
		return err
	}
	sid, ok := repo.ParseID(p.SessionID)
	if !ok {
		return fmt.Errorf("session:autostop: session_id %q: %w", p.SessionID, asynq.SkipRetry)
	}
	_, err := h.autoStop(ctx, sid, SettledAutoStop)
	if errors.Is(err, repo.ErrNotFound) {
		return fmt.Errorf("session:autostop: %w: %w", err, asynq.SkipRetry)
	}
	return err
}

var errNotDue = errors.New("auto-stop came before the planned end")

// autoStop settles one session at its planned end if it is due, and reports
// whether it did; how says who settled it (the auto-stop task or the reconciler).
func (h *Handlers) autoStop(ctx context.Context, sessionID int64, how string) (bool, error) {
	var plan domain.StopPlan
	var lateness time.Duration
	err := h.inTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		plan, lateness = domain.StopPlan{}, 0
		now := h.now()
		s, permit, err := repo.LockSessionAndPermit(ctx, tx, sessionID)
		if err != nil {
			return err
		}
		plan = domain.PlanAutoStop(s.DomainState(), now)
		switch plan.Kind {
		case domain.StopNotDue:
			// Early (clocks disagree): fail, and asynq retries it within a second or so.
			return fmt.Errorf("%w: planned end %s", errNotDue, s.PlannedEndAt.Format(time.RFC3339Nano))
		case domain.StopSettle:
			if err := h.currentYear(ctx, tx, permit, chargeInstant(plan, now)); err != nil {
				return err
			}
			lateness = now.Sub(s.PlannedEndAt)
			h.logger(ctx).Info("auto-stopped", "session_id", s.ID, "planned_end_at", s.PlannedEndAt,
				"lateness", lateness.String(), "charged_minutes", plan.Charge, "by", how)
			return repo.ApplyStop(ctx, tx, permit, s, plan, nil, now)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("auto-stop session %d: %w", sessionID, err)
	}
	if plan.Kind == domain.StopSettle {
		h.observer().SessionSettled(how, lateness)
	}
	return plan.Kind == domain.StopSettle, nil
}

// PermitIssue handles permit:issue.
func (h *Handlers) PermitIssue(ctx context.Context, t *asynq.Task) error {
	var p jobs.PermitIssue
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypePermitIssue, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		facts, err := repo.GatherIssueFacts(ctx, tx, p.ResidentID, p.AddressID)
		if err != nil {
			return decision{}, err
		}
		if err := domain.CheckIssue(facts); err != nil {
			return decision{}, err
		}
		zone, err := h.Store.Zone(ctx, tx, facts.AddressZone)
		if err != nil {
			return decision{}, err
		}
		permit, err := repo.InsertPermit(ctx, tx, zone, p.ResidentID, p.AddressID, p.RequestID, receivedAt(p.ReceivedAt, now))
		if errors.Is(err, repo.ErrPermitExists) {
			return decision{}, domain.Reject(domain.CodePermitExistsForAddress, "the address already has an active visitor permit")
		}
		if err != nil {
			return decision{}, err
		}
		return decision{result: permit.View()}, nil
	})
}

// PermitTopup handles permit:topup.
func (h *Handlers) PermitTopup(ctx context.Context, t *asynq.Task) error {
	var p jobs.PermitTopup
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypePermitTopup, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		permit, err := lockPermit(ctx, tx, p.PermitID)
		if err != nil {
			return decision{}, err
		}
		// A payment reference is used once in the whole system. Its lock comes
		// before anything is written: in a shared transaction a busy one
		// defers the unit, which must then have written nothing.
		if err := repo.LockPaymentRef(ctx, tx, p.PaymentRef); err != nil {
			return decision{}, err
		}
		if err := h.currentYear(ctx, tx, permit, h.now()); err != nil {
			return decision{}, err
		}
		prior, err := repo.PriorTopup(ctx, tx, permit.ID, p.PaymentRef)
		if err != nil {
			return decision{}, err
		}
		// The same payment sent again (under another request ID) is the same
		// top-up: nothing is added, and it is answered as the first was.
		if repeat, err := domain.CheckPaymentRef(prior, p.Hours); err != nil || repeat {
			return decision{result: permit.View()}, err
		}
		zone, err := h.Store.ZoneOf(ctx, tx, permit)
		if err != nil {
			return decision{}, err
		}
		top, err := domain.PlanTopup(zone, permit.State(), p.Hours, p.PaymentRef)
		if err != nil {
			return decision{}, err
		}
		if err := repo.ApplyTopup(ctx, tx, permit, top, p.PaymentRef, p.RequestID, h.now()); err != nil {
			return decision{}, err
		}
		return decision{result: permit.View()}, nil
	})
}
