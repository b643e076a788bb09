package intake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Writes go through the queue. The life of one write:
//
//  1. The form is checked here (JSON, types, sizes, text, instants): a bad form
//     is a 400 and nothing is written anywhere.
//  2. Nothing is read first. With ?wait=0 the request is recorded as pending
//     at once (step 5); an ID already known then answers for itself: another
//     request under it is 409 idempotency_conflict, a finished one is
//     answered from its recorded outcome without enqueuing. With a wait, an
//     ID already known is found by the worker's claim, which changes nothing
//     and announces the recorded outcome (repo.AnnounceRequest): the intake
//     answers it, or 409 when it is another request's.
//  3. The task is submitted (jobs.Submit) under its request's task ID
//     (jobs.RequestTaskID: the request ID in a namespace no task of parkd's
//     own can take), saying who asked (jobs.WithSubject: the worker's claim
//     records it with the request). A still-pending request is submitted
//     again on every repeat: if an earlier attempt recorded it but never
//     reached Redis, the repeat repairs that; if its task is still there,
//     Submit looks at it: one waiting, running or retrying is awaited, an
//     archived one (retries spent, or archived by an operator: nothing would
//     ever run it) is run again, and for one that has finished the recorded
//     outcome is read and answered.
//  4. The outcome is awaited up to ?wait= (see repo.Listener). One that
//     comes is answered, 201/200 with the result or 422 with the rule's code,
//     once it is known to be this request's (the notice carries its type,
//     fingerprint and requester; another's under the same ID is 409). The
//     intake has then written nothing: the worker's transaction made the
//     request's row with its outcome.
//  5. If the wait runs out (or ?wait=0), the request is recorded as pending
//     with its task's payload (RegisterRequest) before 202 is answered: GET
//     /v1/requests/{id} knows it from then on, and should Redis lose the task
//     the reconciler enqueues it again from the record
//     (worker.requeueStrandedRequests). A 202 is a promise kept whatever Redis
//     loses. With ?wait=0 the record comes first, then the task.
//  6. If Redis refuses the task, the pending row this attempt created (if
//     any) is deleted and the client gets 503: nothing of the request
//     remains, and a retry under the same key starts afresh. (Should the task
//     have reached Redis despite the error, the worker makes the row when it
//     runs it, and a retry under the same key adopts that row; the change is
//     still applied once, by the worker's claim on the request ID.)

// writeParams reads what every write takes besides its body: the request ID
// (Idempotency-Key, or a fresh one) and ?wait=.
func writeParams(r *http.Request) (string, time.Duration, error) {
	wait, err := parseWait(r)
	if err != nil {
		return "", 0, err
	}
	// A header given empty or twice is a client's mistake, not a key left
	// out: answered 400, never taken for a request of its own.
	keys := r.Header.Values("Idempotency-Key")
	switch {
	case len(keys) > 1:
		return "", 0, badRequest("Idempotency-Key", "is given more than once; give one key")
	case len(keys) == 1 && keys[0] == "":
		return "", 0, badRequest("Idempotency-Key", "is empty; give a key of 1-64 characters of A-Z a-z 0-9 _ . : -, or leave the header out")
	case len(keys) == 0:
		// The one withLog chose, so that the log lines carry it.
		if id, ok := r.Context().Value(requestIDKey{}).(string); ok {
			return id, wait, nil
		}
		return newRequestID(), wait, nil
	}
	id := keys[0]
	if !jobs.ValidRequestID(id) {
		return "", 0, badRequest("Idempotency-Key", "must be 1-64 characters of A-Z a-z 0-9 _ . : -")
	}
	return id, wait, nil
}

func newRequestID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "req_" + hex.EncodeToString(b)
}

// parseWait reads ?wait=: a Go duration ("1500ms", "2s") or a number of seconds
// ("0", "2.5"), from 0 to MaxWait.
func parseWait(r *http.Request) (time.Duration, error) {
	q := r.URL.Query()
	if !q.Has("wait") {
		return DefaultWait, nil
	}
	v := q.Get("wait")
	d, err := time.ParseDuration(v)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > MaxWait.Seconds() {
			return 0, badRequest("wait", "want a duration such as 2s or a number of seconds, at most %s", MaxWait)
		}
		d = time.Duration(f * float64(time.Second))
	}
	if d < 0 || d > MaxWait {
		return 0, badRequest("wait", "must be between 0 and %s", MaxWait)
	}
	return d, nil
}

// submission is a write ready for the queue.
type submission struct {
	typ    string
	req    jobs.Request
	build  func() (*asynq.Task, error)
	status int // the status of an applied outcome: 201 for what it creates, else 200
	wait   time.Duration
	// applied, when set, is told the result of an applied outcome as it is
	// answered.
	applied func(result json.RawMessage)
}

// submit looks up, enqueues and awaits a write, records it if it must
// answer 202, and answers it.
func (s *Server) submit(w http.ResponseWriter, r *http.Request, p *identity.Principal, sub submission) error {
	id, fp, subject := sub.req.ID(), sub.req.Fingerprint(), p.Subject()
	// Subscribe before anything is read or enqueued: an outcome committed at
	// any moment after wakes this request, so none is missed and no re-read
	// is needed before the first wake-up.
	var watch *repo.Subscription
	if s.Listener != nil {
		watch = s.Listener.Subscribe(id)
		defer watch.Close()
	}
	conflict := &apiError{Status: http.StatusConflict, Code: CodeIdempotencyConflict,
		Message: fmt.Sprintf("request ID %s was already used for a different request", id)}
	// known answers for a request ID already recorded: a conflict, or the
	// outcome of a finished request; nil (go on) for this request, pending.
	known := func(rec *repo.Request) (bool, error) {
		if rec.Type != sub.typ || rec.BodyHash != fp {
			return true, conflict
		}
		if rec.Subject == nil {
			ctx, cancel := dbCtx(r.Context())
			ok, err := repo.AdoptRequest(ctx, s.Store.DB, id, sub.typ, fp, subject)
			cancel()
			if err != nil {
				return true, err
			}
			if !ok {
				return true, conflict
			}
		} else if *rec.Subject != subject {
			return true, conflict
		}
		if rec.Status != repo.RequestPending {
			return true, s.answer(w, rec, sub)
		}
		return false, nil
	}

	task, err := sub.build()
	if err == nil {
		task, err = jobs.WithSubject(task, subject)
	}
	if err != nil {
		// The form was checked before, so this is a bug; nothing is written.
		return fmt.Errorf("build %s task: %w", sub.typ, err)
	}
	// With a wait, nothing is read or written first: an ID already known is
	// answered by the worker's claim, which announces the recorded outcome
	// (and a conflict shows in it: known). Without one, the answer is 202, so
	// the record comes before the task.
	rec := &repo.Request{RequestID: id, Type: sub.typ, BodyHash: fp, Subject: &subject, Status: repo.RequestPending}
	recorded, created := false, false
	if sub.wait <= 0 {
		ctx, cancel := dbCtx(r.Context())
		rec, created, err = repo.RegisterRequest(ctx, s.Store.DB, id, sub.typ, fp, subject, task.Payload())
		cancel()
		if err != nil {
			return err
		}
		recorded = true
		if done, err := known(rec); done {
			return err
		}
	}

	var last jobs.Submitted
	for tries := 1; ; tries++ {
		ctx, cancel := dbCtx(r.Context())
		st, err := jobs.Submit(ctx, s.Client, s.inspector(), task)
		cancel()
		last = st
		if err != nil {
			s.forget(r, created, id, subject)
			return errUnavailable("the queue", err)
		}
		// The request's logger is made only for a line that is written
		// (requestLog): the level is the base logger's.
		if st == jobs.Rerun {
			s.logger(r).Info("request's task was archived: queued again", "task_type", sub.typ, "task", st.String(), "wait", sub.wait.String())
		} else if s.baseLog().Enabled(r.Context(), slog.LevelDebug) {
			s.logger(r).Debug("request enqueued", "task_type", sub.typ, "task", st.String(), "wait", sub.wait.String())
		}
		// A task under this ID was there already (its outcome may have been
		// recorded and announced before this request subscribed: a repeat's
		// task not yet acknowledged), or it has run (the outcome is recorded,
		// unless what ran under this ID was not this request: then the next
		// round queues it). Either way, look.
		look := st == jobs.Queued && !recorded
		if !look && (st != jobs.Finished || tries == maxSubmits) {
			break
		}
		ctx, cancel = dbCtx(r.Context())
		got, err := repo.GetRequest(ctx, s.Store.DB, id)
		cancel()
		if err != nil && !errors.Is(err, repo.ErrNotFound) {
			return err
		}
		if err == nil && got.Status != repo.RequestPending {
			_, err := known(got)
			return err
		}
		if look {
			break
		}
	}
	// What a 202 records is the request as first accepted: an earlier
	// attempt's task that still holds the ID (its receipt), not this
	// repeat's.
	accepted := task.Payload()
	if st := last; st == jobs.Queued || st == jobs.Rerun {
		if held, same, err := jobs.HeldTask(s.inspector(), task); err != nil {
			s.logger(r).Warn("could not read the task holding the request's ID", "err", err)
		} else if same && !bytes.Equal(held, accepted) {
			accepted = held
			if recorded {
				ctx, cancel := dbCtx(context.WithoutCancel(r.Context()))
				err := repo.RecordHeldTask(ctx, s.Store.DB, id, task.Payload(), held)
				cancel()
				if err != nil {
					return errUnavailable("the database", err)
				}
			}
		}
	}

	// Unrecorded, the request may be a repeat of one finished long ago whose
	// new task waits behind others: one look at the table after firstLook
	// answers it then rather than at the end of the wait. A request that is
	// new is answered by its notice well before (it costs the slowest few a
	// read).
	look := time.Duration(0)
	if !recorded {
		look = firstLook
	}
	rec, err = s.await(r.Context(), rec, watch, sub.wait, look)
	if err != nil {
		// The request is queued and will be applied; only reading its outcome
		// failed. It is recorded below before 202 is answered.
		s.logger(r).Warn("reading the outcome failed; answering pending", "err", err)
		rec = &repo.Request{RequestID: id, Type: sub.typ, BodyHash: fp, Subject: &subject, Status: repo.RequestPending}
	}
	if rec.Status != repo.RequestPending {
		// An outcome that came while waiting: this request's, or another's
		// under the same ID (a conflict the worker refused to apply).
		_, err := known(rec)
		return err
	}
	if !recorded {
		// 202: recorded first, so that the promise holds whatever Redis
		// loses. The worker may have finished it a moment ago: then its
		// outcome is the answer.
		ctx, cancel := dbCtx(context.WithoutCancel(r.Context()))
		rec, _, err = repo.RegisterRequest(ctx, s.Store.DB, id, sub.typ, fp, subject, accepted)
		cancel()
		if err != nil {
			// Queued, but not promised: say so, and a retry under the same key
			// finds it (or its outcome).
			return errUnavailable("the database", err)
		}
		if done, err := known(rec); done {
			return err
		}
	}
	return s.answer(w, rec, sub)
}

// firstLook is when a waiting request the intake has not recorded reads its
// row once, in case it is a repeat of a finished request (see submit).
const firstLook = 250 * time.Millisecond

// maxSubmits bounds the rounds of submit: a task that finished between a
// conflicting enqueue and the look at it makes a second round, and only a
// race with another request under the same ID could make a third.
const maxSubmits = 3

// inspector looks at the request tasks that hold a task ID (jobs.Submit).
func (s *Server) inspector() *asynq.Inspector {
	s.inspectorOnce.Do(func() { s.insp = asynq.NewInspectorFromRedisClient(s.Redis) })
	return s.insp
}

// forget deletes the pending row this attempt created when its task could not be
// enqueued. Postgres may be what failed; then the row stays pending and the
// client's retry under the same key enqueues it (step 3 above).
func (s *Server) forget(r *http.Request, created bool, id, subject string) {
	if !created {
		return
	}
	ctx, cancel := dbCtx(context.WithoutCancel(r.Context()))
	defer cancel()
	if err := repo.ForgetPendingRequest(ctx, s.Store.DB, id, subject); err != nil {
		s.logger(r).Error("could not forget a request that was not enqueued; a retry with the same key will enqueue it",
			"err", err)
	}
}

// await waits up to wait for the outcome of rec, a request known to be pending
// (recorded or not: a request without a row is one no worker has finished),
// and returns the request as it then stands; with look, it also reads the row
// once at that time. watch is the listener's
// subscription to the request (nil without a listener); a notification that
// carries the outcome is the answer, one that does not is a cue to read it;
// while the listener is down (or there is none) it polls.
func (s *Server) await(ctx context.Context, rec *repo.Request, watch *repo.Subscription, wait, look time.Duration) (*repo.Request, error) {
	if wait <= 0 {
		return rec, nil
	}
	var wake <-chan struct{}
	if watch != nil {
		wake = watch.C
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	var first <-chan time.Time
	if look > 0 && look < wait {
		t := time.NewTimer(look)
		defer t.Stop()
		first = t.C
	}
	for last := false; !last; {
		var poll <-chan time.Time
		if s.Listener == nil || !s.Listener.Connected() {
			interval := 200 * time.Millisecond
			if s.Listener != nil {
				interval = s.Listener.PollInterval
			}
			poll = time.After(interval)
		}
		select {
		case <-wake:
			if got := watch.Outcome(); got != nil && got.Status != repo.RequestPending {
				return got, nil
			}
		case <-poll:
		case <-first:
		case <-deadline.C:
			last = true // one more look: the outcome may have just missed the timer
		case <-ctx.Done():
			return rec, nil
		}
		rctx, cancel := dbCtx(ctx)
		got, err := repo.GetRequest(rctx, s.Store.DB, rec.RequestID)
		cancel()
		if errors.Is(err, repo.ErrNotFound) {
			continue // not recorded yet: the worker has not finished it
		}
		if err != nil {
			return nil, err
		}
		if rec = got; rec.Status != repo.RequestPending {
			break
		}
	}
	return rec, nil
}

// answer writes a request's outcome: the result with sub's status when
// applied (and tells sub.applied), the rule's error when rejected, 202 with
// where to look when still pending.
func (s *Server) answer(w http.ResponseWriter, rec *repo.Request, sub submission) error {
	switch rec.Status {
	case repo.RequestApplied:
		w.Header().Set("X-Request-Id", rec.RequestID)
		// jsonb stores the result with spaces; answer it compact, like every
		// other answer.
		var body bytes.Buffer
		if err := json.Compact(&body, rec.Result); err != nil || body.Len() == 0 {
			// Not the result itself: it holds the plate, and this goes to the log.
			return fmt.Errorf("request %s: recorded result (%d bytes) unreadable: %w", rec.RequestID, len(rec.Result), err)
		}
		writeRaw(w, sub.status, body.Bytes())
		if sub.applied != nil {
			sub.applied(rec.Result)
		}
		return nil
	case repo.RequestRejected:
		var ro jobs.Rejection
		if err := json.Unmarshal(rec.Error, &ro); err != nil {
			return fmt.Errorf("request %s: recorded error: %w", rec.RequestID, err)
		}
		w.Header().Set("X-Request-Id", rec.RequestID)
		return &domain.RuleError{Code: domain.Code(ro.Code), Message: ro.Message}
	}
	w.Header().Set("Location", "/v1/requests/"+rec.RequestID)
	writeJSON(w, http.StatusAccepted, jobs.Outcome{RequestID: rec.RequestID, Status: repo.RequestPending})
	return nil
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	_, _ = w.Write([]byte("\n"))
}

// startSession: POST /v1/permits/{permit_id}/sessions (resident).
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	permitID := r.PathValue("permit_id")
	holder, err := s.reach(r.Context(), p, permitID, "")
	if err != nil {
		return err
	}
	id, wait, err := writeParams(r)
	if err != nil {
		return err
	}
	b, err := readBody(w, r)
	if err != nil {
		return err
	}
	f, err := decodeStart(b)
	if err != nil {
		return err
	}
	pl := jobs.SessionStart{RequestID: id, PermitID: permitID, Plate: f.Plate, Country: f.Country,
		StartAt: f.StartAt, EndAt: f.EndAt, ReceivedAt: s.now()}
	// The session started is remembered with its permit's holder as reach
	// found it (the resident's own sub, since reach let it through), so that
	// its stop or change reads nothing before it is queued.
	permit, _ := repo.ParseID(permitID) // reach passed: a permit's ID
	return s.submit(w, r, p, submission{typ: jobs.TypeSessionStart, req: pl, status: http.StatusCreated, wait: wait,
		build:   func() (*asynq.Task, error) { return jobs.NewSessionStart(pl) },
		applied: func(result json.RawMessage) { s.holders.started(result, permit, holder) }})
}

// startForm is a session start's body, checked for form (the rules are the
// worker's: an odd plate is its invalid_plate, an odd country its
// invalid_country, not a 400).
type startForm struct {
	Plate, Country string
	StartAt, EndAt *time.Time
}

func decodeStart(b []byte) (startForm, error) {
	var f struct {
		Plate   *string `json:"plate"`
		Country *string `json:"country"`
		StartAt *string `json:"start_at"`
		EndAt   *string `json:"end_at"`
	}
	var out startForm
	if err := decodeBody(b, &f); err != nil {
		return out, err
	}
	var err error
	if out.Plate, err = required("plate", f.Plate); err != nil {
		return out, err
	}
	if err := optionalText("country", f.Country); err != nil {
		return out, err
	}
	if f.Country != nil {
		out.Country = *f.Country
	}
	if out.StartAt, err = instant("start_at", f.StartAt); err != nil {
		return out, err
	}
	if out.EndAt, err = instant("end_at", f.EndAt); err != nil {
		return out, err
	}
	return out, nil
}

// stopSession: POST /v1/sessions/{session_id}/stop (resident). The session is
// read first: whose it is decides 403, and one that does not exist is 404.
func (s *Server) stopSession(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	sessionID, err := s.sessionWriteFor(r, p)
	if err != nil {
		return err
	}
	id, wait, err := writeParams(r)
	if err != nil {
		return err
	}
	var f struct {
		At *string `json:"at"`
	}
	if err := decodeOptionalJSON(w, r, &f); err != nil {
		return err
	}
	at, err := instant("at", f.At)
	if err != nil {
		return err
	}
	pl := jobs.SessionStop{RequestID: id, SessionID: repo.FormatID(sessionID), At: at, ReceivedAt: s.now()}
	return s.submit(w, r, p, submission{typ: jobs.TypeSessionStop, req: pl, status: http.StatusOK, wait: wait,
		build: func() (*asynq.Task, error) { return jobs.NewSessionStop(pl) }})
}

// changeSession: PATCH /v1/sessions/{session_id} (resident): a new end, a
// corrected plate, or both. Whose the session is decides as for a stop; the
// rules (session_not_open first) are the worker's.
func (s *Server) changeSession(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	sessionID, err := s.sessionWriteFor(r, p)
	if err != nil {
		return err
	}
	id, wait, err := writeParams(r)
	if err != nil {
		return err
	}
	var f struct {
		EndAt *string `json:"end_at"`
		Plate *string `json:"plate"`
	}
	if err := decodeJSON(w, r, &f); err != nil {
		return err
	}
	end, err := instant("end_at", f.EndAt)
	if err != nil {
		return err
	}
	if err := optionalText("plate", f.Plate); err != nil {
		return err
	}
	// A change naming neither is the worker's to refuse (bad_request), after
	// session_not_open, which comes before any other check.
	pl := jobs.SessionChange{RequestID: id, SessionID: repo.FormatID(sessionID), EndAt: end, Plate: f.Plate, ReceivedAt: s.now()}
	return s.submit(w, r, p, submission{typ: jobs.TypeSessionChange, req: pl, status: http.StatusOK, wait: wait,
		build: func() (*asynq.Task, error) { return jobs.NewSessionChange(pl) }})
}

// topup: POST /v1/permits/{permit_id}/topups (resident).
func (s *Server) topup(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	permitID := r.PathValue("permit_id")
	if _, err := s.reach(r.Context(), p, permitID, ""); err != nil {
		return err
	}
	id, wait, err := writeParams(r)
	if err != nil {
		return err
	}
	var f struct {
		Hours      *int    `json:"hours"`
		PaymentRef *string `json:"payment_ref"`
	}
	if err := decodeJSON(w, r, &f); err != nil {
		return err
	}
	if f.Hours == nil {
		return badRequest("hours", "is required")
	}
	ref, err := required("payment_ref", f.PaymentRef)
	if err != nil {
		return err
	}
	pl := jobs.PermitTopup{RequestID: id, PermitID: permitID, Hours: *f.Hours, PaymentRef: ref, ReceivedAt: s.now()}
	return s.submit(w, r, p, submission{typ: jobs.TypePermitTopup, req: pl, status: http.StatusCreated, wait: wait,
		build: func() (*asynq.Task, error) { return jobs.NewPermitTopup(pl) }})
}

// issuePermit: POST /v1/permits (eloket).
func (s *Server) issuePermit(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	id, wait, err := writeParams(r)
	if err != nil {
		return err
	}
	var f struct {
		ResidentID *string `json:"resident_id"`
		AddressID  *string `json:"address_id"`
	}
	if err := decodeJSON(w, r, &f); err != nil {
		return err
	}
	resident, err := identifier("resident_id", f.ResidentID)
	if err != nil {
		return err
	}
	address, err := identifier("address_id", f.AddressID)
	if err != nil {
		return err
	}
	pl := jobs.PermitIssue{RequestID: id, ResidentID: resident, AddressID: address, ReceivedAt: s.now()}
	return s.submit(w, r, p, submission{typ: jobs.TypePermitIssue, req: pl, status: http.StatusCreated, wait: wait,
		build: func() (*asynq.Task, error) { return jobs.NewPermitIssue(pl) }})
}

// endPermit: POST /v1/permits/{permit_id}/end (eloket). An empty or over-long
// reason is the rule invalid_end_reason's to refuse (422), like every rule.
func (s *Server) endPermit(w http.ResponseWriter, r *http.Request, p *identity.Principal) error {
	permitID := r.PathValue("permit_id")
	id, wait, err := writeParams(r)
	if err != nil {
		return err
	}
	var f struct {
		At     *string `json:"at"`
		Reason *string `json:"reason"`
	}
	if err := decodeJSON(w, r, &f); err != nil {
		return err
	}
	at, err := instant("at", f.At)
	if err != nil {
		return err
	}
	reason, err := required("reason", f.Reason)
	if err != nil {
		return err
	}
	pl := jobs.PermitEnd{RequestID: id, PermitID: permitID, At: at, Reason: reason, ReceivedAt: s.now()}
	return s.submit(w, r, p, submission{typ: jobs.TypePermitEnd, req: pl, status: http.StatusOK, wait: wait,
		build: func() (*asynq.Task, error) { return jobs.NewPermitEnd(pl) }})
}
