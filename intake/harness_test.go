package intake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

// env is one end-to-end test's world: its own Postgres database and Redis index,
// a real asynq server running parkd's worker handlers, and the intake's handler
// on an httptest server, reached through a client that checks every answer
// against the OpenAPI document.
type env struct {
	t         testing.TB
	ctx       context.Context
	store     *repo.Store
	dsn       string
	rdb       *redis.Client
	redisOpt  asynq.RedisClientOpt
	client    *asynq.Client
	handlers  *worker.Handlers
	worker    *worker.Server
	listener  *repo.Listener
	api       *intake.Server
	srv       *httptest.Server
	hc        *http.Client
	secret    []byte
	zone      string
	taskCheck time.Duration
	log       *slog.Logger
}

type options struct {
	noWorker    bool   // start the worker later (e.start) or never
	listenerDSN string // "" for the test database; "-" for no listener
	rate        float64
	burst       int
	taskCheck   time.Duration // the worker's TaskCheckInterval; 10 ms (parkd's default) when zero
	log         *slog.Logger  // the intake's and the worker's log; discarded when nil
	// scheduleHorizon is the worker's (worker.Handlers.ScheduleHorizon);
	// zero is parkd's own.
	scheduleHorizon time.Duration
	// identity, with a JWKS URL, verifies that provider's tokens beside the
	// env's HS256 ones (its Secret is the env's).
	identity identity.Config
}

var seq atomic.Int64

// uid makes IDs unique within and across test runs.
func uid(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, seq.Add(1))
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func setup(t testing.TB, o options) *env {
	t.Helper()
	store, dsn := repotest.NewDB(t)
	rdb, idx := repotest.NewRedis(t)
	opt := asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx}
	e := &env{t: t, ctx: context.Background(), store: store, dsn: dsn, rdb: rdb, redisOpt: opt,
		client: asynq.NewClient(opt), secret: []byte("test-secret-" + uid("k")), zone: "TEST"}
	t.Cleanup(func() { e.client.Close() })
	e.log = o.log
	if e.log == nil {
		e.log = quietLog()
	}
	e.handlers = &worker.Handlers{Store: store, Client: e.client, Redis: rdb, Log: e.log, ScheduleHorizon: o.scheduleHorizon}

	if o.listenerDSN != "-" {
		ldsn := o.listenerDSN
		if ldsn == "" {
			ldsn = dsn
		}
		e.listener = repo.NewListener(ldsn, quietLog())
		lctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); e.listener.Run(lctx) }()
		t.Cleanup(func() { stop(); <-done })
		if o.listenerDSN == "" {
			select {
			case <-e.listener.Up():
			case <-time.After(10 * time.Second):
				t.Fatal("listener did not connect")
			}
		}
	}
	rate := o.rate
	if rate == 0 {
		rate = -1 // tests fire fast; the limiter has a test of its own
	}
	e.api = &intake.Server{Store: store, Client: e.client, Redis: rdb, Secret: e.secret, Log: e.log,
		Listener: e.listener, RateLimit: rate, RateBurst: o.burst}
	if o.identity.JWKSURL != "" {
		c := o.identity
		c.Secret, c.Log = e.secret, quietLog()
		ids, err := identity.NewVerifier(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ids.Close)
		e.api.Identity = ids
	}
	e.srv = httptest.NewServer(e.api.Handler())
	t.Cleanup(e.srv.Close)
	e.hc = &http.Client{Transport: &validating{t: t, next: &http.Transport{MaxIdleConnsPerHost: 256}}}
	e.taskCheck = o.taskCheck
	if e.taskCheck == 0 {
		e.taskCheck = worker.DefaultTaskCheckInterval
	}
	if !o.noWorker {
		e.start()
	}
	// A zone valid every day, so that tests pass on any day of the week.
	e.mustDo("PUT", "/v1/admin/zones/"+e.zone, e.token(identity.RoleOperator, "op"), map[string]any{
		"name": "Test", "tariff_cents_per_hour": 210, "invalid_weekdays": []string{},
	}, http.StatusOK, nil)
	return e
}

// start runs a real asynq server with parkd's handlers.
func (e *env) start() {
	e.t.Helper()
	e.worker = worker.NewServer(e.redisOpt, worker.Config{
		Concurrency: 10, TaskCheckInterval: e.taskCheck,
		DelayedTaskCheckInterval: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
	}, e.log)
	if err := e.worker.Start(e.handlers.Mux()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.worker.Shutdown)
}

func (e *env) token(role, sub string, permits ...string) string {
	e.t.Helper()
	tok, err := identity.Mint(e.secret, identity.Grant{Role: role, Sub: sub, Permits: permits, TTL: time.Hour}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// in is e for subtest t: its failures are t's.
func (e *env) in(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// resp is an answer, read whole.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *resp) String() string { return fmt.Sprintf("%d %s", r.Status, r.Body) }

// errCode is the error code of an error answer.
func (r *resp) errCode() (code, field string) {
	var b struct {
		Error struct{ Code, Field string } `json:"error"`
	}
	_ = json.Unmarshal(r.Body, &b)
	return b.Error.Code, b.Error.Field
}

// do sends a request. body is JSON-encoded unless it is []byte or a string;
// headers are name, value pairs.
func (e *env) do(method, path, token string, body any, headers ...string) *resp {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := e.hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return &resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// mustDo is do, failing the test unless the answer has the wanted status; into
// receives the decoded body.
func (e *env) mustDo(method, path, token string, body any, want int, into any, headers ...string) *resp {
	e.t.Helper()
	r := e.do(method, path, token, body, headers...)
	if r.Status != want {
		e.t.Fatalf("%s %s: got %s, want %d", method, path, r, want)
	}
	if into != nil {
		if err := json.Unmarshal(r.Body, into); err != nil {
			e.t.Fatalf("%s %s: decode %s: %v", method, path, r.Body, err)
		}
	}
	return r
}

// wantError asserts an error answer's status and code (and field, if given).
func wantError(t testing.TB, r *resp, status int, code string, field ...string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
	c, f := r.errCode()
	if c != code {
		t.Fatalf("got code %q (%s), want %q", c, r.Body, code)
	}
	if len(field) > 0 && f != field[0] {
		t.Fatalf("got field %q (%s), want %q", f, r.Body, field[0])
	}
	if len(field) > 0 && !strings.Contains(string(r.Body), field[0]) {
		t.Fatalf("message does not name %q: %s", field[0], r.Body)
	}
}

// resident is a resident with one permit in the test zone and hours bought on
// it, set up through the API as a municipality would: address and registration
// by an operator, the permit by the E-loket, the top-up by the resident.
type resident struct {
	id, permit, token string
}

func (e *env) resident(hours int) resident {
	e.t.Helper()
	return e.residentAs(uid("R"), hours)
}

// residentAs is resident with the resident ID rid.
func (e *env) residentAs(rid string, hours int) resident {
	e.t.Helper()
	op, el := e.token(identity.RoleOperator, "op"), e.token(identity.RoleEloket, "eloket")
	addr := uid("A")
	e.mustDo("POST", "/v1/admin/addresses", op, map[string]any{"address_id": addr, "zone": e.zone}, http.StatusCreated, nil)
	e.mustDo("POST", "/v1/admin/registrations", op, map[string]any{"resident_id": rid, "address_id": addr}, http.StatusCreated, nil)
	var pv jobs.Permit
	e.mustDo("POST", "/v1/permits?wait=10s", el, map[string]any{"resident_id": rid, "address_id": addr}, http.StatusCreated, &pv)
	r := resident{id: rid, permit: pv.ID, token: e.token(identity.RoleResident, rid)}
	if hours > 0 {
		e.mustDo("POST", "/v1/permits/"+pv.ID+"/topups?wait=10s", r.token,
			map[string]any{"hours": hours, "payment_ref": uid("pay")}, http.StatusCreated, nil)
	}
	return r
}

// startSession starts a session through the API and returns it.
func (e *env) startSession(r resident, plate string, extra map[string]any) jobs.Session {
	e.t.Helper()
	body := map[string]any{"plate": plate}
	for k, v := range extra {
		body[k] = v
	}
	var s jobs.Session
	e.mustDo("POST", "/v1/permits/"+r.permit+"/sessions?wait=10s", r.token, body, http.StatusCreated, &s)
	return s
}

// validating checks every answer against the OpenAPI document: its status is
// documented for the operation, and its body has the documented shape.
type validating struct {
	t    testing.TB
	next http.RoundTripper
}

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
	checked    atomic.Int64
)

func openAPIRouter() (routers.Router, error) {
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromData(intake.OpenAPI)
		if err != nil {
			specErr = err
			return
		}
		if err := doc.Validate(context.Background()); err != nil {
			specErr = fmt.Errorf("openapi.yaml is not valid: %w", err)
			return
		}
		specRouter, specErr = gorillamux.NewRouter(doc)
	})
	return specRouter, specErr
}

func (v *validating) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := v.next.RoundTrip(req)
	if err != nil {
		return res, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	router, err := openAPIRouter()
	if err != nil {
		v.t.Errorf("openapi: %v", err)
		return res, nil
	}
	route, params, err := router.FindRoute(req)
	if err != nil {
		// Unknown paths and methods are answered (404/405) but have no operation
		// to check against.
		return res, nil
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}},
		Status: res.StatusCode, Header: res.Header, Body: io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		v.t.Errorf("%s %s: answer %d does not match openapi.yaml: %v\nbody: %s", req.Method, req.URL.Path, res.StatusCode, err, body)
	}
	checked.Add(1)
	return res, nil
}

// closedAddr is a TCP address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.Listener.Addr().String()
	srv.Close()
	return addr
}
