package intake_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// TestUnavailableIsAPrompt503 points the intake at a Postgres and a Redis that
// are not there: every endpoint that needs them answers 503 unavailable within
// a few seconds, never hangs, never 500.
func TestUnavailableIsAPrompt503(t *testing.T) {
	store, err := repo.Open("postgres://postgres@"+closedAddr(t)+"/parkd?sslmode=disable&connect_timeout=2", repo.PoolConfig{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rdb := redis.NewClient(&redis.Options{Addr: closedAddr(t)})
	defer rdb.Close()
	client := asynq.NewClientFromRedisClient(rdb)
	listener := repo.NewListener("postgres://postgres@"+closedAddr(t)+"/parkd?sslmode=disable", quietLog())
	lctx, stop := context.WithCancel(context.Background())
	defer stop()
	go listener.Run(lctx)

	secret := []byte("k")
	api := &intake.Server{Store: store, Client: client, Redis: rdb, Secret: secret, Log: quietLog(), Listener: listener, RateLimit: -1}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	e := &env{t: t, secret: secret, srv: srv, hc: &http.Client{Transport: &validating{t: t, next: http.DefaultTransport}}}
	res, el, enf := e.token(identity.RoleResident, "r", "1"), e.token(identity.RoleEloket, "el"), e.token(identity.RoleEnforcement, "scan")
	op := e.token(identity.RoleOperator, "op")

	calls := []struct {
		method, path, token string
		body                any
	}{
		{"POST", "/v1/permits/1/sessions", res, map[string]any{"plate": "AB12CD"}},
		{"POST", "/v1/permits/1/topups", res, map[string]any{"hours": 1, "payment_ref": "p"}},
		{"POST", "/v1/sessions/1/stop", res, nil},
		{"GET", "/v1/sessions/1", res, nil},
		{"GET", "/v1/permits/1/sessions", res, nil},
		{"GET", "/v1/permits/1", el, nil},
		{"GET", "/v1/permits/1/ledger", el, nil},
		{"GET", "/v1/permits/1/statements", el, nil},
		{"POST", "/v1/permits", el, map[string]any{"resident_id": "r", "address_id": "a"}},
		{"POST", "/v1/permits/1/end", el, map[string]any{"reason": "moved"}},
		{"GET", "/v1/rights?plate=AB12CD&zone=TEST&place=permit_holder", enf, nil},
		{"GET", "/v1/requests/abc", op, nil},
		{"PUT", "/v1/admin/zones/TEST", op, map[string]any{"name": "T", "tariff_cents_per_hour": 1}},
		{"POST", "/v1/admin/addresses", op, map[string]any{"address_id": "a", "zone": "TEST"}},
		{"POST", "/v1/admin/registrations", op, map[string]any{"resident_id": "r", "address_id": "a"}},
	}
	for _, c := range calls {
		t0 := time.Now()
		r := e.do(c.method, c.path, c.token, c.body)
		if d := time.Since(t0); d > 3*time.Second {
			t.Errorf("%s %s took %s", c.method, c.path, d)
		}
		wantError(t, r, http.StatusServiceUnavailable, intake.CodeUnavailable)
	}
	t0 := time.Now()
	ready := e.do("GET", "/readyz", "", nil)
	if ready.Status != http.StatusServiceUnavailable || !strings.Contains(string(ready.Body), `"ready":false`) || time.Since(t0) > 3*time.Second {
		t.Fatalf("readyz with nothing up: %s after %s", ready, time.Since(t0))
	}
	e.mustDo("GET", "/healthz", "", nil, http.StatusOK, nil)
	if listener.Connected() {
		t.Fatal("listener says connected to a closed port")
	}
}

// TestRedisDownLeavesNothingHalfWritten: Postgres is up, Redis is not. The
// request is refused with 503, and no trace of it remains: no pending request
// that nothing would ever finish, and a retry under the same key starts afresh.
func TestRedisDownLeavesNothingHalfWritten(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(2)

	dead := redis.NewClient(&redis.Options{Addr: closedAddr(t)})
	defer dead.Close()
	broken := &intake.Server{Store: e.store, Client: asynq.NewClientFromRedisClient(dead), Redis: dead,
		Secret: e.secret, Log: quietLog(), Listener: e.listener, RateLimit: -1}
	srv := httptest.NewServer(broken.Handler())
	defer srv.Close()
	b := &env{t: t, secret: e.secret, srv: srv, hc: e.hc}

	key := uid("redis-down")
	t0 := time.Now()
	wantError(t, b.do("POST", "/v1/permits/"+r.permit+"/sessions", r.token, map[string]any{"plate": "HALF1"}, "Idempotency-Key", key),
		http.StatusServiceUnavailable, intake.CodeUnavailable)
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("503 took %s", d)
	}
	if _, err := repo.GetRequest(e.ctx, e.store.DB, key); !errors.Is(err, repo.ErrNotFound) {
		t.Fatalf("request row after a failed enqueue: %v (want none)", err)
	}
	if ready := b.do("GET", "/readyz", "", nil); ready.Status != http.StatusServiceUnavailable {
		t.Fatalf("readyz with Redis down: %s", ready)
	}
	// The same key, once Redis is back (the healthy intake): applied once.
	e.startSession(r, "HALF1", nil) // a fresh key: proves the plate was not parked
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 {
		t.Fatalf("sessions = %d, want 1", len(list.Sessions))
	}
}

// TestRetryEnqueuesAStrandedPendingRequest: a request registered as pending
// whose task never reached Redis (the intake died, or could not clean up) is
// enqueued by the client's retry under the same key.
func TestRetryEnqueuesAStrandedPendingRequest(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(2)
	key := uid("stranded")
	body := map[string]any{"plate": "STRAND1"}
	// What the first attempt left: the pending row, and no task.
	if _, _, err := repo.RegisterRequest(e.ctx, e.store.DB, key, "session:start", fingerprintOf(t, r.permit, "STRAND1"), "resident:"+r.id, nil); err != nil {
		t.Fatal(err)
	}
	var s jobs.Session
	e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, body, http.StatusCreated, &s, "Idempotency-Key", key)
	if s.Plate != "STRAND1" {
		t.Fatalf("session = %+v", s)
	}
}

// TestWaitWithoutListenerPolls: with the listener unable to connect, waiting
// writes still get their outcome (by polling), not a 202.
func TestWaitWithoutListenerPolls(t *testing.T) {
	e := setup(t, options{listenerDSN: "postgres://postgres@" + closedAddr(t) + "/x?sslmode=disable"})
	r := e.resident(2)
	t0 := time.Now()
	s := e.startSession(r, "POLL1", nil)
	if s.Plate != "POLL1" || time.Since(t0) > 3*time.Second {
		t.Fatalf("start without notifications: %+v after %s", s, time.Since(t0))
	}
	if e.listener.Connected() {
		t.Fatal("listener connected to a closed port")
	}
}

// FuzzDecodeStart: whatever the body, decoding never panics, and every error is
// a 400 bad_request that names a field; what it accepts is valid text.
func FuzzDecodeStart(f *testing.F) {
	for _, s := range []string{
		`{"plate":"AB-12-CD"}`, `{"plate":"AB12CD","start_at":"2026-03-01T14:00:00+01:00","end_at":"2026-03-01T15:00:00Z"}`,
		`{"plate":12}`, `{"plate":"x","colour":1}`, `{"plate":"\udc00"}`, "{\"plate\":\"\xff\"}", `[]`, `null`, ``,
		`{"plate":"A","start_at":"2026-02-30T00:00:00Z"}`, `{"plate":"A"} {}`, `{"plate":null}`, `{"start_at":{}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		plate, startAt, endAt, err := intake.DecodeStart(body)
		if err != nil {
			if !intake.IsAPIError(err) {
				t.Fatalf("error is not an answer: %v", err)
			}
			status, code, field := intake.ErrorOf(err)
			if status != http.StatusBadRequest || code != intake.CodeBadRequest || field == "" {
				t.Fatalf("error %v maps to %d %s field %q", err, status, code, field)
			}
			if !strings.Contains(err.Error(), field) {
				t.Fatalf("message %q does not name field %q", err, field)
			}
			return
		}
		if !utf8.ValidString(plate) || strings.ContainsRune(plate, utf8.RuneError) {
			t.Fatalf("accepted plate %q is not clean text", plate)
		}
		for _, ts := range []*time.Time{startAt, endAt} {
			if ts != nil && (ts.Location() != time.UTC || ts.Nanosecond()%1000 != 0) {
				t.Fatalf("accepted instant %v is not UTC microseconds", ts)
			}
		}
	})
}

// quietRedis keeps go-redis's own dial-failure lines out of the test output of
// the tests that point it at a closed port on purpose.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedis{}) }

// TestAnAnswerWithinTheWaitLeavesNoIntakeRecord: a write answered inside its
// wait is recorded by the worker's transaction alone (the intake writes
// nothing), and the record still knows who asked: GET /v1/requests/{id}
// answers the requester and refuses another resident.
func TestAnAnswerWithinTheWaitLeavesNoIntakeRecord(t *testing.T) {
	e := setup(t, options{})
	r, other := e.resident(2), e.resident(2)
	key := uid("inwait")
	var s jobs.Session
	e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "WAIT01"},
		http.StatusCreated, &s, "Idempotency-Key", key)
	rec, err := repo.GetRequest(e.ctx, e.store.DB, key)
	if err != nil || rec.Status != repo.RequestApplied || rec.TaskPayload != nil {
		t.Fatalf("record = %+v %v, want applied, without a task payload", rec, err)
	}
	if rec.Subject == nil || *rec.Subject != "resident:"+r.id {
		t.Fatalf("the worker's record lost who asked: %v", rec.Subject)
	}
	var out jobs.Outcome
	e.mustDo("GET", "/v1/requests/"+key, r.token, nil, http.StatusOK, &out)
	if out.Status != repo.RequestApplied {
		t.Fatalf("outcome = %+v", out)
	}
	wantError(t, e.do("GET", "/v1/requests/"+key, other.token, nil), http.StatusForbidden, "forbidden")
	// Another resident's request under the same key, while the first is
	// answered: a conflict, and nothing of theirs is applied.
	wantError(t, e.do("POST", "/v1/permits/"+other.permit+"/sessions?wait=2s", other.token, map[string]any{"plate": "WAIT02"},
		"Idempotency-Key", key), http.StatusConflict, intake.CodeIdempotencyConflict)
}

// TestA202IsKeptWhateverRedisLoses: a write answered 202 is recorded with its
// task before the answer; when Redis then loses the task, the reconciler
// enqueues it again from the record, and it is applied once.
func TestA202IsKeptWhateverRedisLoses(t *testing.T) {
	e := setup(t, options{noWorker: true})
	e.start()
	r := e.resident(2)
	e.worker.Shutdown() // no worker from here: the wait runs out
	key := uid("lost202")
	res := e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=200ms", r.token, map[string]any{"plate": "LOST202"},
		"Idempotency-Key", key)
	if res.Status != http.StatusAccepted {
		t.Fatalf("no worker: got %s, want 202", res)
	}
	rec, err := repo.GetRequest(e.ctx, e.store.DB, key)
	if err != nil || rec.Status != repo.RequestPending || len(rec.TaskPayload) == 0 {
		t.Fatalf("record of a 202 = %+v %v, want pending with its task", rec, err)
	}
	repotest.FlushRedis(t, e.rdb)
	// Not yet: a task may still be on its way for RequestRequeueAfter.
	if rep, err := e.handlers.Reconcile(e.ctx); err != nil || rep.RequestsRequeued != 0 {
		t.Fatalf("reconcile at once: %+v %v, want nothing requeued", rep, err)
	}
	if _, err := e.store.DB.ExecContext(e.ctx, "UPDATE requests SET created_at = created_at - interval '1 minute' WHERE request_id = ?", key); err != nil {
		t.Fatal(err)
	}
	rep, err := e.handlers.Reconcile(e.ctx)
	if err != nil || rep.RequestsRequeued != 1 {
		t.Fatalf("reconcile: %+v %v, want the request requeued", rep, err)
	}
	// Requeued again while still queued: refused by its task ID, harmless.
	if rep, err := e.handlers.Reconcile(e.ctx); err != nil || rep.RequestsRequeued != 0 {
		t.Fatalf("second reconcile: %+v %v", rep, err)
	}
	e.start()
	var s jobs.Session
	e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, map[string]any{"plate": "LOST202"},
		http.StatusCreated, &s, "Idempotency-Key", key)
	var list struct{ Sessions []jobs.Session }
	e.mustDo("GET", "/v1/permits/"+r.permit+"/sessions", r.token, nil, http.StatusOK, &list)
	if len(list.Sessions) != 1 || list.Sessions[0].ID != s.ID {
		t.Fatalf("sessions = %+v, want the one", list.Sessions)
	}
	if rec, err := repo.GetRequest(e.ctx, e.store.DB, key); err != nil || rec.TaskPayload != nil || rec.Status != repo.RequestApplied {
		t.Fatalf("finished record = %+v %v, want applied and its task payload gone", rec, err)
	}
}

// TestRepeatOfAFinishedRequestIsAnsweredWhileWorkersAreBusy: the intake reads
// nothing before it enqueues, so a repeat of a finished request, or another
// request under its ID, is answered by the worker's claim; when no worker
// gets to that task (here: its queue paused), the intake's own look at the
// table answers it long before the wait runs out.
func TestRepeatOfAFinishedRequestIsAnsweredWhileWorkersAreBusy(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(2)
	key := uid("busy")
	body := map[string]any{"plate": "BUSY01"}
	var first jobs.Session
	e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, body, http.StatusCreated, &first, "Idempotency-Key", key)
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	if err := insp.PauseQueue(jobs.QueueCritical); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = insp.UnpauseQueue(jobs.QueueCritical) }()
	const wait = 6 * time.Second
	t0 := time.Now()
	var again jobs.Session
	e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=6s", r.token, body, http.StatusCreated, &again, "Idempotency-Key", key)
	if took := time.Since(t0); took >= wait/2 || again.ID != first.ID {
		t.Fatalf("repeat answered %+v after %s, want session %s well inside the %s wait", again, took, first.ID, wait)
	}
	t0 = time.Now()
	wantError(t, e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=6s", r.token, map[string]any{"plate": "BUSY02"},
		"Idempotency-Key", key), http.StatusConflict, intake.CodeIdempotencyConflict)
	if took := time.Since(t0); took >= wait/2 {
		t.Fatalf("conflict answered after %s, want well inside the %s wait", took, wait)
	}
}

// TestARepeatOfA202IsDecidedAsAccepted: a request answered 202 whose task
// Redis then lost, repeated later under its key, is decided as it was
// accepted: at its first receipt, not the repeat's (the worker decides the
// task the intake recorded, not the repeat's own).
func TestARepeatOfA202IsDecidedAsAccepted(t *testing.T) {
	e := setup(t, options{noWorker: true})
	e.start()
	r := e.resident(2)
	e.worker.Shutdown()
	key := uid("asaccepted")
	body := map[string]any{"plate": "ACCEPT1"}
	accepted := time.Now()
	if res := e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait=100ms", r.token, body, "Idempotency-Key", key); res.Status != http.StatusAccepted {
		t.Fatalf("no worker: %s, want 202", res)
	}
	repotest.FlushRedis(t, e.rdb) // the task is lost
	time.Sleep(1500 * time.Millisecond)
	e.start()
	repeated := time.Now()
	var s jobs.Session
	e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, body, http.StatusCreated, &s, "Idempotency-Key", key)
	if s.StartAt.Before(accepted.Add(-time.Second)) || !s.StartAt.Before(repeated.Add(-time.Second)) {
		t.Fatalf("session starts %s; accepted at %s, repeated at %s: want the first receipt", s.StartAt, accepted, repeated)
	}
}

// A repeat that meets its request's earlier task still queued under the ID
// (the intake that enqueued it died before it recorded anything) records,
// for its 202, the earlier task, the request as first accepted: the worker
// decides that one, with its receipt, not the repeat's. With a wait and
// without (?wait=0 records first, then corrects the record).
func TestARepeatBehindItsQueuedTaskRecordsTheFirstReceipt(t *testing.T) {
	for _, wait := range []string{"100ms", "0"} {
		t.Run("wait="+wait, func(t *testing.T) {
			e := setup(t, options{noWorker: true})
			e.start()
			r := e.resident(2)
			e.worker.Shutdown()
			key := uid("firstreceipt")
			body := map[string]any{"plate": "FIRST1"}
			accepted := time.Now()
			if res := e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait="+wait, r.token, body, "Idempotency-Key", key); res.Status != http.StatusAccepted {
				t.Fatalf("no worker: %s, want 202", res)
			}
			// As if that intake had died before recording it: its task is
			// queued, the table knows nothing.
			if _, err := e.store.DB.NewDelete().Model((*repo.Request)(nil)).Where("request_id = ?", key).Exec(e.ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1500 * time.Millisecond)
			repeated := time.Now()
			if res := e.do("POST", "/v1/permits/"+r.permit+"/sessions?wait="+wait, r.token, body, "Idempotency-Key", key); res.Status != http.StatusAccepted {
				t.Fatalf("repeat, no worker: %s, want 202", res)
			}
			e.start()
			var s jobs.Session
			e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, body, http.StatusCreated, &s, "Idempotency-Key", key)
			if s.StartAt.Before(accepted.Add(-time.Second)) || !s.StartAt.Before(repeated.Add(-time.Second)) {
				t.Fatalf("session starts %s; accepted at %s, repeated at %s: want the first receipt", s.StartAt, accepted, repeated)
			}
		})
	}
}
