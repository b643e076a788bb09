package intake

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jonboulle/clockwork"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Defaults of a Server.
const (
	// DefaultWait is how long a write waits for its outcome when ?wait= is absent.
	DefaultWait = 2 * time.Second
	// MaxWait is the longest ?wait= accepted.
	MaxWait = 10 * time.Second
	// DependencyTimeout bounds every single Postgres or Redis call, so that a dead
	// dependency costs a client a prompt 503, never a hang.
	DependencyTimeout = 2 * time.Second
	// DefaultRate and DefaultBurst are each subject's token bucket: generous for a
	// person or an app, a brake on a runaway client.
	DefaultRate  = 50
	DefaultBurst = 100
)

// Server is the HTTP intake. Build it with its fields set, then serve Handler().
type Server struct {
	Store  *repo.Store
	Client *asynq.Client         // enqueues requests
	Redis  redis.UniversalClient // checked by /readyz
	// Identity verifies bearer tokens (package identity); when nil, an
	// HS256-only verifier with Secret.
	Identity *identity.Verifier
	Secret   []byte
	Log      *slog.Logger
	// Clock stamps receipts and refills rate-limit buckets; nil is the real clock.
	Clock clockwork.Clock
	// Listener wakes waiting writes when their outcome is committed. Without one
	// (or while it is disconnected) waiting writes poll every 200 ms.
	Listener *repo.Listener
	// RateLimit and RateBurst size each subject's token bucket (DefaultRate and
	// DefaultBurst when zero; a negative RateLimit turns limiting off).
	RateLimit float64 // requests per second
	RateBurst int
	// Observer is told how each HTTP request went (package metrics); nil observes nothing.
	Observer Observer
	// Metrics serves GET /metrics (package metrics); Prometheus' default registry when nil.
	Metrics http.Handler
	// Console, when set, is served on every port under its Root (package
	// console: asynqmon behind operator login).
	Console Console
	// OpsApart keeps /healthz, /readyz and /metrics off Handler and
	// OpsHandler, for MetricsHandler to serve on an address of their own
	// (PARKD_METRICS_ADDR): a public port then has no /metrics to hide.
	OpsApart bool

	ids           *identity.Verifier
	apiPatterns   []string                // what Handler registered, for tests
	apiQuery      map[string][]queryParam // the query parameters of each, for tests
	healthOnce    sync.Once
	health        http.Handler
	limiter       *limiter
	inspectorOnce sync.Once
	insp          *asynq.Inspector
	holders       *holders // who holds a permit, a session's permit (reach)
}

// Console is the operators' console: a handler for everything under Root()+"/".
type Console interface {
	http.Handler
	Root() string
}

// now is the intake's clock at Postgres's precision (microseconds), so that an
// instant stamped here and read back compares equal.
func (s *Server) now() time.Time {
	return repo.Instant(s.clock().Now())
}

func (s *Server) clock() clockwork.Clock {
	if s.Clock == nil {
		return clockwork.NewRealClock()
	}
	return s.Clock
}

type (
	logKey       struct{}
	requestIDKey struct{}
)

func (s *Server) logger(r *http.Request) *slog.Logger {
	if l, ok := r.Context().Value(logKey{}).(*requestLog); ok {
		return l.logger()
	}
	return s.baseLog()
}

func (s *Server) baseLog() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// requestLog is a request's logger, made when the request first logs: under
// load most requests log nothing at the level configured (info), and slog's
// With formats its attributes at once, whether or not a line follows (2.3 %
// of parkd's CPU in the max phase's profile, docs/BENCHMARKS.md, issue 16,
// fifth session).
type requestLog struct {
	base  *slog.Logger
	attrs []any
	once  sync.Once
	l     *slog.Logger
}

// with is a requestLog with more attributes, made when first used as well.
func (rl *requestLog) with(attrs ...any) *requestLog {
	return &requestLog{base: rl.base, attrs: append(slices.Clip(rl.attrs), attrs...)}
}

func (rl *requestLog) logger() *slog.Logger {
	rl.once.Do(func() { rl.l = rl.base.With(rl.attrs...) })
	return rl.l
}

// Handler serves every endpoint of openapi.yaml, /healthz, /readyz and
// /metrics (unless OpsApart), the OpenAPI document at /v1/openapi.yaml and,
// when set, the Console. It panics when no token could be verified: neither
// Identity nor Secret is set.
func (s *Server) Handler() http.Handler {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	s.ids = s.Identity
	if s.ids == nil {
		ids, err := identity.NewVerifier(identity.Config{Secret: s.Secret, Now: s.now})
		if err != nil {
			panic("intake: " + err.Error())
		}
		s.ids = ids
	}
	rl, burst := rate.Limit(s.RateLimit), s.RateBurst
	if rl == 0 {
		rl = DefaultRate
	}
	if burst <= 0 {
		burst = DefaultBurst
	}
	if rl > 0 {
		s.limiter = newLimiter(rl, burst, s.clock())
	}
	if s.holders == nil {
		s.holders = storeHolders(s)
	}

	mux := newPatternMux()
	s.ops(mux)
	mux.HandleFunc("GET /v1/openapi.yaml", serveOpenAPI)

	// Each endpoint names the query parameters it reads (a write: ?wait=);
	// api refuses any other, and a repeat (checkQuery).
	resident, eloket := []string{identity.RoleResident}, []string{identity.RoleResident, identity.RoleEloket}
	mux.Handle("POST /v1/permits/{permit_id}/sessions", s.api(resident, s.startSession, waitParam))
	mux.Handle("POST /v1/sessions/{session_id}/stop", s.api(resident, s.stopSession, waitParam))
	mux.Handle("GET /v1/sessions/{session_id}", s.api(resident, s.getSession))
	mux.Handle("PATCH /v1/sessions/{session_id}", s.api(resident, s.changeSession, waitParam))
	mux.Handle("POST /v1/permits/{permit_id}/quotes", s.api(resident, s.quote))
	mux.Handle("GET /v1/permits/{permit_id}/sessions", s.api(resident, s.listSessions, one("status")))
	mux.Handle("GET /v1/permits/{permit_id}", s.api(eloket, s.getPermit))
	mux.Handle("POST /v1/permits/{permit_id}/topups", s.api(resident, s.topup, waitParam))
	mux.Handle("GET /v1/permits/{permit_id}/ledger", s.api(eloket, s.ledger, one("limit"), one("before")))
	mux.Handle("GET /v1/permits/{permit_id}/statements", s.api(eloket, s.statements))
	// Favourites: written directly, not queued (favourites.go).
	mux.Handle("GET /v1/permits/{permit_id}/favourites", s.api(resident, s.listFavourites))
	mux.Handle("PUT /v1/permits/{permit_id}/favourites/{plate}", s.api(resident, s.putFavourite))
	mux.Handle("DELETE /v1/permits/{permit_id}/favourites/{plate}", s.api(resident, s.deleteFavourite))
	mux.Handle("POST /v1/permits", s.api([]string{identity.RoleEloket}, s.issuePermit, waitParam))
	mux.Handle("POST /v1/permits/{permit_id}/end", s.api([]string{identity.RoleEloket}, s.endPermit, waitParam))
	mux.Handle("GET /v1/rights", s.api([]string{identity.RoleEnforcement}, s.rights,
		one("plate"), one("zone"), one("place"), one("at")))
	// Every role may read its own requests' outcomes; the handler checks whose.
	mux.Handle("GET /v1/requests/{request_id}", s.api(identity.Roles, s.getRequest))
	mux.Handle("PUT /v1/admin/zones/{code}", s.api([]string{identity.RoleOperator}, s.putZone))
	mux.Handle("POST /v1/admin/addresses", s.api([]string{identity.RoleOperator}, s.putAddress))
	mux.Handle("POST /v1/admin/registrations", s.api([]string{identity.RoleOperator}, s.putRegistration))
	// Events and webhooks (events.go): the feed and the subscriptions.
	mux.Handle("GET /v1/events", s.api([]string{identity.RoleOperator}, s.listEvents,
		one("after"), one("limit"), many("type")))
	mux.Handle("GET /v1/admin/webhooks", s.api([]string{identity.RoleOperator}, s.listWebhooks))
	mux.Handle("PUT /v1/admin/webhooks/{name}", s.api([]string{identity.RoleOperator}, s.putWebhook))
	mux.Handle("DELETE /v1/admin/webhooks/{name}", s.api([]string{identity.RoleOperator}, s.deleteWebhook))
	// A resident's data (privacy.go).
	mux.Handle("GET /v1/residents/{resident_id}/export", s.api([]string{identity.RoleOperator, identity.RoleResident}, s.exportResident))
	mux.Handle("POST /v1/residents/{resident_id}/erase", s.api([]string{identity.RoleOperator}, s.eraseResident))

	s.apiPatterns, s.apiQuery = mux.patterns, mux.query
	return s.wrap(mux.ServeMux)
}

// OpsHandler serves a role that has no API: /healthz, /readyz and /metrics
// (unless OpsApart) and, when set, the Console (the root redirects to it).
func (s *Server) OpsHandler() http.Handler {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	mux := newPatternMux()
	s.ops(mux)
	if s.Console != nil {
		mux.Handle("GET /{$}", http.RedirectHandler(s.Console.Root()+"/", http.StatusFound))
	}
	return s.wrap(mux.ServeMux)
}

// MetricsHandler serves /healthz, /readyz and /metrics alone: what
// PARKD_METRICS_ADDR serves. It shares the readiness of the Server's other
// handlers.
func (s *Server) MetricsHandler() http.Handler {
	if s.Log == nil {
		s.Log = slog.Default()
	}
	mux := newPatternMux()
	s.probes(mux)
	return s.wrap(mux.ServeMux)
}

// ops registers what every parkd HTTP port serves: the probes and metrics
// unless they are apart, and the Console when set.
func (s *Server) ops(mux *patternMux) {
	if !s.OpsApart {
		s.probes(mux)
	}
	if s.Console != nil {
		mux.Handle(s.Console.Root()+"/", s.Console)
	}
}

// probes registers /healthz, /readyz and /metrics. The readiness is one per
// Server, whichever handlers serve it: ready once is ready for good.
func (s *Server) probes(mux *patternMux) {
	s.healthOnce.Do(func() {
		s.health = Health(map[string]Pinger{
			"postgres": PingFunc(func(ctx context.Context) error { return s.Store.Ping(ctx) }),
			"redis":    PingFunc(func(ctx context.Context) error { return s.Redis.Ping(ctx).Err() }),
		})
	})
	mux.Handle("GET /healthz", s.health)
	mux.Handle("GET /readyz", s.health)
	metrics := s.Metrics
	if metrics == nil {
		metrics = promhttp.Handler()
	}
	mux.Handle("GET /metrics", metrics)
}

// patternMux is a ServeMux that keeps the patterns registered on it and the
// query parameters each endpoint reads, so that a test can hold the API's
// routes and their parameters against openapi.yaml both ways.
type patternMux struct {
	*http.ServeMux
	patterns []string
	query    map[string][]queryParam
}

func newPatternMux() *patternMux {
	return &patternMux{ServeMux: http.NewServeMux(), query: map[string][]queryParam{}}
}

func (m *patternMux) Handle(pattern string, h http.Handler) {
	m.ServeMux.Handle(pattern, h)
	m.patterns = append(m.patterns, pattern)
	if ep, ok := h.(*endpoint); ok {
		m.query[pattern] = ep.query
	}
}

func (m *patternMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}

// wrap gives every request its route label and metrics, its logger and a
// recoverer, and answers unrouted requests in the contract's error shape.
func (s *Server) wrap(mux *http.ServeMux) http.Handler {
	return s.instrument(mux, s.recoverer(s.withLog(s.route(mux))))
}

// route answers what the mux has no route for in the contract's error shape (the
// mux itself answers in plain text) and keeps its 405 with the Allow header.
func (s *Server) route(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			mux.ServeHTTP(w, r) // ServeHTTP, not h: it sets the path values
			return
		}
		rec := &headerRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		switch rec.status {
		case http.StatusMethodNotAllowed:
			w.Header().Set("Allow", rec.header.Get("Allow"))
			s.writeError(w, r, &apiError{Status: http.StatusMethodNotAllowed, Code: CodeMethodNotAllowed,
				Message: r.Method + " is not allowed here; allowed: " + rec.header.Get("Allow")})
		case http.StatusNotFound:
			s.writeError(w, r, errNotFound("no such endpoint: %s %s", r.Method, r.URL.Path))
		default: // a redirect to the canonical path
			mux.ServeHTTP(w, r)
		}
	})
}

// headerRecorder captures what the mux would answer for an unrouted request.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }

// withLog gives each request its request ID (the Idempotency-Key when there is
// a valid one, else a fresh one, which a write then uses) and a logger carrying
// it and the route.
func (s *Server) withLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("Idempotency-Key")
		if !jobs.ValidRequestID(id) {
			id = newRequestID()
		}
		route, _ := r.Context().Value(routeKey{}).(string)
		l := &requestLog{base: s.baseLog(), attrs: []any{"request_id", id, "method", r.Method, "route", route, "path", r.URL.Path}}
		ctx := context.WithValue(context.WithValue(r.Context(), logKey{}, l), requestIDKey{}, id)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// recoverer turns a panic into a 500 with a generic message and a log line with
// the stack: the client never sees a stack trace.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.logger(r).Error("panic serving request", "panic", v, "stack", string(debug.Stack()))
				writeJSON(w, http.StatusInternalServerError, errorBody{Error: errorDetail{
					Code: CodeInternal, Message: "internal error; it has been logged"}})
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// handlerFunc is an endpoint: it answers success itself and returns any error
// for writeError.
type handlerFunc func(w http.ResponseWriter, r *http.Request, p *identity.Principal) error

// api authenticates, checks the role, applies the subject's rate limit, refuses
// a query parameter the endpoint does not read (query: those it does) or one
// given twice, and runs h.
func (s *Server) api(roles []string, h handlerFunc, query ...queryParam) http.Handler {
	return &endpoint{s: s, roles: roles, h: h, query: query}
}

// endpoint is an API route's handler (api).
type endpoint struct {
	s     *Server
	roles []string
	h     handlerFunc
	query []queryParam
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := e.s
	p, err := s.authenticate(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rl, ok := r.Context().Value(logKey{}).(*requestLog)
	if !ok {
		rl = &requestLog{base: s.baseLog()}
	}
	r = r.WithContext(context.WithValue(r.Context(), logKey{}, rl.with("subject", p.Subject())))
	if !slices.Contains(e.roles, p.Role) {
		s.writeError(w, r, errForbidden("role "+p.Role+" may not use this endpoint"))
		return
	}
	if s.limiter != nil && !s.limiter.allow(p.Subject()) {
		s.writeError(w, r, &apiError{Status: http.StatusTooManyRequests, Code: CodeRateLimited,
			Message: "too many requests; slow down"})
		return
	}
	if err := checkQuery(r, e.query); err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := e.h(w, r, p); err != nil {
		s.writeError(w, r, err)
	}
}

// dbCtx bounds one Postgres or Redis call.
func dbCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, DependencyTimeout)
}
