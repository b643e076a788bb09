package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/registrar"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// The registrar side of DOMAIN.md "Registration" and README "Pointing parkd
// at a register", through the product's HTTP client (package registrar)
// against a real HTTP server standing in for the register.

var testCodes = domain.ZoneRegistration{AreaManagerID: "363", AreaID: "OOST", UsageID: "BEZOEKP"}

const registerToken = "npr-test-token"

// registerCall is one PUT the register under test received.
type registerCall struct {
	Path  string
	Auth  string
	Right worker.Right
	At    time.Time
}

// register is a national register under test: answer says what to answer the
// n-th call (from 0) for a right ID, and how long to take.
type register struct {
	mu     sync.Mutex
	calls  []registerCall
	answer func(rightID string, n int) (status int, body string, delay time.Duration)
	token  string // when set, a call without it is answered 401, as a register does
}

// requireToken makes the register answer 401 to every call without the
// bearer token.
func (r *register) requireToken(token string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.token = token
}

func (r *register) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	var right worker.Right
	_ = json.Unmarshal(b, &right)
	r.mu.Lock()
	n := 0
	for _, c := range r.calls {
		if c.Right.RightID == right.RightID {
			n++
		}
	}
	r.calls = append(r.calls, registerCall{Path: req.URL.Path, Auth: req.Header.Get("Authorization"), Right: right, At: time.Now()})
	unauthorized := r.token != "" && req.Header.Get("Authorization") != "Bearer "+r.token
	r.mu.Unlock()
	if unauthorized {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"invalid token"}`)
		return
	}
	status, body, delay := r.answer(right.RightID, n)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		}
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// callsOf is what the register received for a right ID, in order.
func (r *register) callsOf(rightID string) []registerCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []registerCall
	for _, c := range r.calls {
		if c.Right.RightID == rightID {
			out = append(out, c)
		}
	}
	return out
}

func (r *register) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// withRegister points the handlers at a register answering as answer, with
// the product's client (its timeout shortened to timeout when set), and
// counts what the handlers tell their Observer.
func (e *harness) withRegister(timeout time.Duration, answer func(rightID string, n int) (int, string, time.Duration)) (*register, *countingObserver) {
	e.t.Helper()
	reg := &register{answer: answer}
	srv := httptest.NewServer(reg)
	e.t.Cleanup(srv.Close)
	c, err := registrar.New(registrar.Config{URL: srv.URL, Token: registerToken, Timeout: timeout})
	if err != nil {
		e.t.Fatal(err)
	}
	obs := &countingObserver{}
	e.h.Registrar, e.h.Observer = c, obs
	return reg, obs
}

func always(status int, body string) func(string, int) (int, string, time.Duration) {
	return func(string, int) (int, string, time.Duration) { return status, body, 0 }
}

// registeredSession starts a session on a new permit and marks its right
// changed a second ago, as a change of a session in a zone with register
// codes does; it returns the session and the right's version.
func (e *harness) registeredSession(plate string, startAt *time.Time) (jobs.Session, int) {
	e.t.Helper()
	task, _ := e.startTask(e.permit(10), plate, startAt, nil)
	var s jobs.Session
	if r := e.run(task, e.h.SessionStart, &s); r.Status != repo.RequestApplied {
		e.t.Fatalf("start: %s %s", r.Status, r.Error)
	}
	return s, e.rightChanged(s.ID)
}

// rightChanged marks a session's right changed a second ago (the version a
// change makes) and returns the new version.
func (e *harness) rightChanged(sessionID string) int {
	e.t.Helper()
	id, _ := repo.ParseID(sessionID)
	return repotest.MarkRightChanged(e.t, e.store, id, testCodes, time.Now().Add(-time.Second))
}

// registerNow runs the right:register task of a session's version directly.
func (e *harness) registerNow(sessionID string, version int) error {
	return e.h.RightRegister(e.ctx, jobs.NewRightRegister(sessionID, version))
}

// A right is sent as the session is when the task runs: active with its
// planned end while open, ended with its actual end once stopped, cancelled
// once cancelled; under the opaque right ID {issuer}-{session_id}, never the
// plate, with the register's token; and the acknowledgement is recorded on
// the session with the instant (registration.status registered).
func TestRightRegisteredAsTheSessionIsNow(t *testing.T) {
	e := setupParallel(t)
	reg, obs := e.withRegister(0, always(http.StatusCreated, `{}`))

	check := func(name string, s *repo.Session, version int, issuer, status string, end time.Time) {
		t.Helper()
		sid := repo.FormatID(s.ID)
		if err := e.registerNow(sid, version); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		calls := reg.callsOf(issuer + "-" + sid)
		if len(calls) == 0 {
			t.Fatalf("%s: nothing sent as %s-%s", name, issuer, sid)
		}
		c := calls[len(calls)-1]
		want := worker.Right{RightID: issuer + "-" + sid, Version: version, Issuer: issuer, AreaManagerID: "363", AreaID: "OOST",
			UsageID: "BEZOEKP", Plate: s.Plate, Country: s.Country, StartAt: s.StartAt.UTC(), EndAt: end.UTC(), Status: status}
		if c.Right != want {
			t.Errorf("%s: sent %+v\nwant %+v", name, c.Right, want)
		}
		if c.Path != "/rights/"+want.RightID || c.Auth != "Bearer "+registerToken {
			t.Errorf("%s: PUT %s with Authorization %q", name, c.Path, c.Auth)
		}
		if strings.Contains(c.Path, s.Plate) || strings.Contains(c.Right.RightID, s.Plate) {
			t.Errorf("%s: the right ID %q carries the plate %s", name, c.Right.RightID, s.Plate)
		}
		got := e.session(sid)
		r := got.View(time.Now()).Registration
		if r.Status != jobs.RegistrationRegistered || r.Version != version || r.RegisteredAt == nil ||
			time.Since(*r.RegisteredAt) > time.Minute || got.RightRegisteredVersion != version {
			t.Errorf("%s: registration %+v (registered version %d)", name, r, got.RightRegisteredVersion)
		}
	}

	open, v := e.registeredSession("RG-01-AB", nil)
	row := e.session(open.ID)
	check("open", row, v, "parkd", worker.RightActive, row.PlannedEndAt)

	stop, _ := e.stopTask(open.ID, nil)
	e.run(stop, e.h.SessionStop, nil)
	v = e.rightChanged(open.ID)
	row = e.session(open.ID)
	if row.State != domain.StateStopped || row.EndAt == nil {
		t.Fatalf("not stopped: %+v", row)
	}
	check("stopped", row, v, "parkd", worker.RightEnded, *row.EndAt)

	e.h.RegistrarIssuer = "ams_01"
	later := time.Now().Add(2 * time.Hour)
	planned, _ := e.registeredSession("RG-02-AB", &later)
	stop, _ = e.stopTask(planned.ID, nil)
	e.run(stop, e.h.SessionStop, nil)
	v = e.rightChanged(planned.ID)
	row = e.session(planned.ID)
	if row.State != domain.StateCancelled {
		t.Fatalf("not cancelled: %+v", row)
	}
	check("cancelled", row, v, "ams_01", worker.RightCancelled, row.StartAt)

	if got := obs.registrations(); got[worker.RegisterAcknowledged] != 3 || len(got) != 1 {
		t.Errorf("outcomes %v, want 3 acknowledged", got)
	}
	if len(obs.rightLag) != 3 || obs.rightLag[0] < time.Second {
		t.Errorf("lags %v: want 3, each from the change a second ago", obs.rightLag)
	}
}

// 409: the register holds a newer version; that is an acknowledgement.
func TestRegistrarConflictIsAcknowledged(t *testing.T) {
	e := setupParallel(t)
	_, obs := e.withRegister(0, always(http.StatusConflict, `{"error":"newer version held"}`))
	s, v := e.registeredSession("RG-03-AB", nil)
	if err := e.registerNow(s.ID, v); err != nil {
		t.Fatal(err)
	}
	if r := e.session(s.ID).RegistrationView(); r.Status != jobs.RegistrationRegistered || r.RegisteredAt == nil {
		t.Fatalf("registration %+v", r)
	}
	if got := obs.registrations(); got[worker.RegisterSuperseded] != 1 || len(got) != 1 {
		t.Fatalf("outcomes %v, want 1 superseded", got)
	}
}

// A 4xx that judges the right is a refusal: recorded on the session, which
// answers registration.status rejected, with the register's reason (plate
// masked) for `parkd check`, which says how to send it again; the task is
// archived, not retried. Run again (an operator, from the archive), the
// version is sent again, and a second refusal keeps the newer reason.
func TestRegistrarRefusalIsShownOnTheSession(t *testing.T) {
	e := setupParallel(t)
	reg, obs := e.withRegister(0, func(_ string, n int) (int, string, time.Duration) {
		return http.StatusUnprocessableEntity, fmt.Sprintf(`{"error":{"code":"unknown_area","message":"area OOST has no usage BEZOEKP for RG04AB (%d)"}}`, n), 0
	})
	s, v := e.registeredSession("RG-04-AB", nil)
	err := e.registerNow(s.ID, v)
	var refusal *worker.Refusal
	if !errors.As(err, &refusal) || !errors.Is(err, asynq.SkipRetry) || refusal.Status != 422 {
		t.Fatalf("want a refusal that is not retried, got %v", err)
	}
	row := e.session(s.ID)
	if r := row.View(time.Now()).Registration; r.Status != jobs.RegistrationRejected || r.Version != v || r.RegisteredAt != nil {
		t.Fatalf("registration %+v", r)
	}
	if row.RightRejection == nil || *row.RightRejection != "registrar answered 422: unknown_area: area OOST has no usage BEZOEKP for ****AB (0)" {
		t.Fatalf("rejection %v", row.RightRejection)
	}
	_, findings, err := repo.Audit(e.ctx, e.store.DB, time.Hour, 10)
	if err != nil {
		t.Fatal(err)
	}
	listed := false
	for _, f := range findings {
		listed = listed || strings.Contains(f.Detail, "session "+s.ID+": right version") && strings.Contains(f.Detail, "unknown_area") &&
			strings.Contains(f.Detail, "run the archived task "+jobs.RightTaskID(s.ID, v)+" in asynqmon's registrar queue")
	}
	if !listed {
		t.Fatalf("parkd check does not list the refused right with how to send it again: %+v", findings)
	}

	err = e.registerNow(s.ID, v)
	if !errors.As(err, &refusal) || !errors.Is(err, asynq.SkipRetry) || reg.count() != 2 {
		t.Fatalf("run again: %v, %d calls; want it sent again and refused again", err, reg.count())
	}
	if row := e.session(s.ID); row.RegistrationView().Status != jobs.RegistrationRejected || row.RightRejection == nil ||
		!strings.HasSuffix(*row.RightRejection, "(1)") {
		t.Fatalf("after the second refusal: %+v, rejection %q", row.RegistrationView(), *row.RightRejection)
	}
	if got := obs.registrations(); got[worker.RegisterRejected] != 2 || len(got) != 1 {
		t.Fatalf("outcomes %v", got)
	}
}

// A refused right is sent again when an operator runs its archived task
// (asynqmon: queue registrar, right:{session}:{version}) once the cause is
// fixed, and the session is then registered; the reconciler, which requeues
// pending rights, leaves a refused one alone. Through the registrar queue's
// own asynq server, the operator's run being asynq's Inspector.RunTask.
func TestRefusedRightIsSentAgainByRunningItsArchivedTask(t *testing.T) {
	e := setup(t)
	var fixed atomic.Bool
	reg, obs := e.withRegister(0, func(string, int) (int, string, time.Duration) {
		if fixed.Load() {
			return http.StatusCreated, "", 0
		}
		return http.StatusUnprocessableEntity, `{"error":{"code":"unknown_area","message":"area OOST unknown"}}`, 0
	})
	e.startRegistrar()
	s, v := e.registeredSession("RG-11-AB", nil)
	id, _ := repo.ParseID(s.ID)
	repotest.MarkRightChanged(t, e.store, id, testCodes, time.Now().Add(-time.Hour)) // long enough for the reconciler
	v++
	e.enqueue(jobs.NewRightRegister(s.ID, v))
	taskID := jobs.RightTaskID(s.ID, v)
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := e.inspector.GetTaskInfo(jobs.QueueRegistrar, taskID)
		if err == nil && info.State == asynq.TaskStateArchived {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not archived after a refusal: %v %v", taskID, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := e.session(s.ID).RegistrationView(); r.Status != jobs.RegistrationRejected || reg.count() != 1 {
		t.Fatalf("registration %+v after %d calls", r, reg.count())
	}
	if rep, err := e.h.Reconcile(e.ctx); err != nil || rep.RightsRequeued != 0 {
		t.Fatalf("reconcile: %+v %v; want a refused right left alone", rep, err)
	}

	fixed.Store(true) // the register's area table, or the zone's codes, corrected
	if err := e.inspector.RunTask(jobs.QueueRegistrar, taskID); err != nil {
		t.Fatal(err)
	}
	e.awaitRegistered(s.ID, 30*time.Second)
	if calls := reg.callsOf("parkd-" + s.ID); len(calls) != 2 || calls[1].Right.Version != v {
		t.Fatalf("sent %+v, want version %d twice", calls, v)
	}
	row := e.session(s.ID)
	if r := row.RegistrationView(); r.Status != jobs.RegistrationRegistered || r.Version != v || r.RegisteredAt == nil {
		t.Fatalf("registration %+v", r)
	}
	if _, findings, err := repo.Audit(e.ctx, e.store.DB, time.Hour, 10); err != nil || len(findings) != 0 {
		t.Fatalf("parkd check after the right was registered: %+v %v", findings, err)
	}
	if got := obs.registrations(); got[worker.RegisterRejected] != 1 || got[worker.RegisterAcknowledged] != 1 {
		t.Fatalf("outcomes %v", got)
	}
}

// swapRegistrar is the Registrar of a worker whose configuration an operator
// corrects: what a restart with a new PARKD_REGISTRAR_TOKEN does, without
// stopping the test's server.
type swapRegistrar struct {
	atomic.Pointer[registrar.Client]
}

func (s *swapRegistrar) Register(ctx context.Context, r worker.Right) error {
	return s.Load().Register(ctx, r)
}

// A wrong PARKD_REGISTRAR_TOKEN (the register answers 401) is a refusal, as
// the contract has every 4xx but 409 and 429 (README "Pointing parkd at a
// register"): the session shows registration rejected and the refusal says to
// check the token. Once the token is corrected, the operator's run of the
// archived task sends the right again, with the new token, and the session is
// registered.
func TestWrongRegistrarTokenIsRefusedAndSentAgainOnceCorrected(t *testing.T) {
	e := setup(t)
	reg, obs := e.withRegister(0, always(http.StatusCreated, ""))
	reg.requireToken(registerToken)
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	client := func(token string) *registrar.Client {
		c, err := registrar.New(registrar.Config{URL: srv.URL, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	swap := &swapRegistrar{}
	swap.Store(client("a-wrong-token"))
	e.h.Registrar = swap
	e.startRegistrar()

	s, v := e.registeredSession("RG-12-AB", nil)
	taskID := jobs.RightTaskID(s.ID, v)
	e.enqueue(jobs.NewRightRegister(s.ID, v))
	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := e.inspector.GetTaskInfo(jobs.QueueRegistrar, taskID)
		if err == nil && info.State == asynq.TaskStateArchived {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s not archived after a 401: %v %v", taskID, info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	row := e.session(s.ID)
	if r := row.RegistrationView(); r.Status != jobs.RegistrationRejected || row.RightRejection == nil ||
		!strings.Contains(*row.RightRejection, "check PARKD_REGISTRAR_TOKEN") {
		t.Fatalf("registration %+v (%v) after a 401, want rejected saying to check the token", r, row.RightRejection)
	}

	swap.Store(client(registerToken))                                        // the operator corrects the token…
	if err := e.inspector.RunTask(jobs.QueueRegistrar, taskID); err != nil { // …and runs the archived task
		t.Fatal(err)
	}
	e.awaitRegistered(s.ID, 30*time.Second)
	calls := reg.callsOf("parkd-" + s.ID)
	if last := calls[len(calls)-1]; last.Auth != "Bearer "+registerToken || last.Right.Version != v {
		t.Fatalf("last call %+v", last)
	}
	if got := obs.registrations(); got[worker.RegisterRejected] != 1 || got[worker.RegisterAcknowledged] != 1 {
		t.Fatalf("outcomes %v", got)
	}
}

// 503, 429, 408 and a register that does not answer within the timeout are
// each retried, the first retry within two seconds
// (worker.RegisterRetryDelay), until the register acknowledges; through a
// real asynq server on the registrar queue.
func TestRegistrarFailuresAreRetriedUntilAcknowledged(t *testing.T) {
	e := setup(t)
	first := map[string]int{} // right ID → the failure its first call gets
	var mu sync.Mutex
	reg, obs := e.withRegister(300*time.Millisecond, func(rightID string, n int) (int, string, time.Duration) {
		mu.Lock()
		failure := first[rightID]
		mu.Unlock()
		switch {
		case n > 0:
			return http.StatusCreated, "", 0
		case failure == http.StatusGatewayTimeout: // no answer within the client's 300 ms
			return http.StatusCreated, "", 5 * time.Second
		default:
			return failure, `{"error":"try later"}`, 0
		}
	})
	e.startRegistrar()
	sessions := map[int]jobs.Session{}
	failures := []int{http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusGatewayTimeout,
		http.StatusRequestTimeout}
	for i, failure := range failures {
		s, v := e.registeredSession(fmt.Sprintf("RT-%02d-AB", i), nil)
		mu.Lock()
		first["parkd-"+s.ID] = failure
		mu.Unlock()
		sessions[failure] = s
		e.enqueue(jobs.NewRightRegister(s.ID, v))
	}
	for failure, s := range sessions {
		e.awaitRegistered(s.ID, 30*time.Second)
		calls := reg.callsOf("parkd-" + s.ID)
		if len(calls) != 2 {
			t.Errorf("%d: %d calls, want 2", failure, len(calls))
			continue
		}
		// 1-2 s of backoff, the forwarder's 200 ms, a loaded machine's slack.
		if gap := calls[1].At.Sub(calls[0].At); gap > 5*time.Second {
			t.Errorf("%d: retried after %s, want within about 2 s", failure, gap)
		}
	}
	if got := obs.registrations(); got[worker.RegisterRetried] != len(failures) || got[worker.RegisterAcknowledged] != len(failures) {
		t.Errorf("outcomes %v, want %d retried and as many acknowledged", got, len(failures))
	}
}

// Only the newest version needs to arrive: a task of an older version finds a
// newer one queued and sends nothing; the newest is sent once.
func TestOlderRightVersionIsSkipped(t *testing.T) {
	e := setupParallel(t)
	reg, obs := e.withRegister(0, always(http.StatusOK, ""))
	s, v1 := e.registeredSession("RG-05-AB", nil)
	v2 := e.rightChanged(s.ID)
	if err := e.registerNow(s.ID, v1); err != nil || reg.count() != 0 {
		t.Fatalf("version %d of %d: %v, %d calls; want none", v1, v2, err, reg.count())
	}
	if err := e.registerNow(s.ID, v2); err != nil {
		t.Fatal(err)
	}
	if calls := reg.callsOf("parkd-" + s.ID); len(calls) != 1 || calls[0].Right.Version != v2 {
		t.Fatalf("sent %+v, want version %d once", calls, v2)
	}
	for _, v := range []int{v2, v1} {
		if err := e.registerNow(s.ID, v); err != nil || reg.count() != 1 {
			t.Fatalf("version %d again: %v, %d calls; want nothing more sent", v, err, reg.count())
		}
	}
	if got := obs.registrations(); got[worker.RegisterSkipped] != 3 || got[worker.RegisterAcknowledged] != 1 {
		t.Fatalf("outcomes %v", got)
	}
}

// Registration off in this process (no PARKD_REGISTRAR_URL): the task is
// retried, saying why, and the right stays pending.
func TestRightWaitsWithoutARegistrar(t *testing.T) {
	e := setupParallel(t)
	s, v := e.registeredSession("RG-06-AB", nil)
	err := e.registerNow(s.ID, v)
	if err == nil || errors.Is(err, asynq.SkipRetry) || !strings.Contains(err.Error(), "PARKD_REGISTRAR_URL") {
		t.Fatalf("want a retried error naming PARKD_REGISTRAR_URL, got %v", err)
	}
	if r := e.session(s.ID).RegistrationView(); r.Status != jobs.RegistrationPending {
		t.Fatalf("registration %+v", r)
	}
}

// A right still pending when the plate retention erased the plate is not
// sent without its plate: it is recorded as rejected, saying so.
func TestRightOfAnErasedPlateIsRejectedNotSent(t *testing.T) {
	e := setupParallel(t)
	reg, obs := e.withRegister(0, always(http.StatusOK, ""))
	s, _ := e.registeredSession("RG-07-AB", nil)
	stop, _ := e.stopTask(s.ID, nil)
	e.run(stop, e.h.SessionStop, nil)
	v := e.rightChanged(s.ID)
	if _, err := repo.ErasePlates(e.ctx, e.store.DB, time.Now().Add(time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if err := e.registerNow(s.ID, v); err != nil {
		t.Fatal(err)
	}
	row := e.session(s.ID)
	if reg.count() != 0 || row.RegistrationView().Status != jobs.RegistrationRejected ||
		row.RightRejection == nil || !strings.Contains(*row.RightRejection, "plate was erased") {
		t.Fatalf("%d calls; registration %+v, rejection %v", reg.count(), row.RegistrationView(), row.RightRejection)
	}
	if got := obs.registrations(); got[worker.RegisterRejected] != 1 {
		t.Fatalf("outcomes %v", got)
	}
}

// Redis lost its data (flushed) with a right:register task in it: the
// reconciler queues the pending right's newest version again once it has
// waited worker.RightRequeueAfter, and the registrar worker then registers
// it. A right changed a moment ago, or already acknowledged, is left alone,
// and a task still in Redis is not duplicated.
func TestReconcilerRequeuesPendingRightsAfterRedisFlushed(t *testing.T) {
	e := setup(t)
	reg, _ := e.withRegister(0, always(http.StatusCreated, ""))
	lost, _ := e.registeredSession("RG-08-AB", nil)
	lostID, _ := repo.ParseID(lost.ID)
	v := repotest.MarkRightChanged(t, e.store, lostID, testCodes, time.Now().Add(-time.Minute))
	e.enqueue(jobs.NewRightRegister(lost.ID, v))
	fresh, vf := e.registeredSession("RG-09-AB", nil) // changed a second ago
	done, vd := e.registeredSession("RG-10-AB", nil)
	doneID, _ := repo.ParseID(done.ID)
	repotest.MarkRightChanged(t, e.store, doneID, testCodes, time.Now().Add(-time.Hour))
	if err := e.registerNow(done.ID, vd+1); err != nil {
		t.Fatal(err)
	}
	repotest.FlushRedis(t, e.rdb)

	rep, err := e.h.Reconcile(e.ctx)
	if err != nil || rep.RightsRequeued != 1 {
		t.Fatalf("reconcile: %+v %v; want 1 right queued again", rep, err)
	}
	// Looked up by its key: the client that queued it before the flush still
	// thinks the queue is listed in Redis, so the inspector knows no queue.
	if !e.taskInRedis(jobs.QueueRegistrar, jobs.RightTaskID(lost.ID, v)) {
		t.Fatal("the lost right's task is not in Redis")
	}
	if e.taskInRedis(jobs.QueueRegistrar, jobs.RightTaskID(fresh.ID, vf)) {
		t.Fatal("a right changed a second ago was queued again")
	}
	if rep, err := e.h.Reconcile(e.ctx); err != nil || rep.RightsRequeued != 0 {
		t.Fatalf("reconcile again: %+v %v; want the queued task left alone", rep, err)
	}

	e.startRegistrar()
	e.awaitRegistered(lost.ID, 30*time.Second)
	if calls := reg.callsOf("parkd-" + lost.ID); len(calls) != 1 || calls[0].Right.Version != v {
		t.Fatalf("sent %+v, want version %d once", calls, v)
	}
}

// The registrar queue's backoff: the first retry after 1-2 s, then doubling,
// never more than a minute, always jittered within half of its step.
func TestRegisterRetryDelay(t *testing.T) {
	for n := 0; n < 30; n++ {
		step := min(2*time.Second<<min(n, 6), time.Minute)
		for range 200 {
			d := worker.RegisterRetryDelay(n, errors.New("503"), nil)
			if d < step/2 || d > step {
				t.Fatalf("retry %d waits %s, want %s-%s", n, d, step/2, step)
			}
		}
	}
	if d := worker.RegisterRetryDelay(0, nil, nil); d < time.Second || d > 2*time.Second {
		t.Fatalf("first retry after %s", d)
	}
}

// startRegistrar runs the registrar queue's own asynq server, as parkd's
// worker does when PARKD_REGISTRAR_URL is set.
func (e *harness) startRegistrar() {
	e.t.Helper()
	if e.shared {
		e.t.Fatal("a worker server on a shared Redis index would take other tests' tasks: use setup, not setupParallel")
	}
	srv := worker.NewOutboundServer(e.redisOpt, jobs.QueueRegistrar, worker.OutboundConfig{
		Concurrency: 4, RetryDelay: worker.RegisterRetryDelay, TaskCheckInterval: 10 * time.Millisecond,
		DelayedTaskCheckInterval: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	}, quietLog())
	if err := srv.Start(e.h.Mux()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(srv.Shutdown)
}

// awaitRegistered waits until the registrar acknowledged the session's newest
// right version.
func (e *harness) awaitRegistered(sessionID string, limit time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r := e.session(sessionID).RegistrationView()
		if r.Status == jobs.RegistrationRegistered {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("session %s: registration %+v after %s", sessionID, r, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// taskInRedis reports whether the task with this ID is in Redis, in any state.
func (e *harness) taskInRedis(queue, id string) bool {
	e.t.Helper()
	n, err := e.rdb.Exists(e.ctx, "asynq:{"+queue+"}:t:"+id).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return n == 1
}
