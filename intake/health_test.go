package intake_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
)

// /readyz (openapi.yaml) is 503 until every dependency has answered once and
// 200 from then on, whatever they do later; its checks show them as they are.
func TestReadyOnceReachedStaysReady(t *testing.T) {
	var pgUp, redisUp atomic.Bool
	ping := func(up *atomic.Bool) intake.Pinger {
		return intake.PingFunc(func(context.Context) error {
			if up.Load() {
				return nil
			}
			return errors.New("connection refused")
		})
	}
	srv := httptest.NewServer(intake.Health(map[string]intake.Pinger{"postgres": ping(&pgUp), "redis": ping(&redisUp)}))
	defer srv.Close()
	e := &env{t: t, srv: srv, hc: &http.Client{Transport: &validating{t: t, next: http.DefaultTransport}}}
	for _, step := range []struct {
		name       string
		pg, redis  bool
		want       int
		wantChecks map[string]string
	}{
		{"nothing reached yet", false, false, http.StatusServiceUnavailable, map[string]string{"postgres": "unavailable", "redis": "unavailable"}},
		{"only Postgres reached", true, false, http.StatusServiceUnavailable, map[string]string{"postgres": "ok", "redis": "unavailable"}},
		{"both reached", true, true, http.StatusOK, map[string]string{"postgres": "ok", "redis": "ok"}},
		{"Redis gone later", true, false, http.StatusOK, map[string]string{"postgres": "ok", "redis": "unavailable"}},
		{"both gone later", false, false, http.StatusOK, map[string]string{"postgres": "unavailable", "redis": "unavailable"}},
	} {
		pgUp.Store(step.pg)
		redisUp.Store(step.redis)
		var ready struct {
			Ready  bool
			Checks map[string]string
		}
		e.mustDo("GET", "/readyz", "", nil, step.want, &ready)
		if ready.Ready != (step.want == http.StatusOK) {
			t.Errorf("%s: ready = %v with status %d", step.name, ready.Ready, step.want)
		}
		for dep, want := range step.wantChecks {
			if got := ready.Checks[dep]; !strings.HasPrefix(got, want) {
				t.Errorf("%s: check %s = %q, want %s", step.name, dep, got, want)
			}
		}
		e.mustDo("GET", "/healthz", "", nil, http.StatusOK, nil)
	}
}

// An outage after the intake became ready is answered by the API itself: 503
// unavailable with a Retry-After, on reads and writes alike, while /readyz
// stays 200 so that the intake keeps its place behind the load balancer. The
// intake reaches Postgres and Redis through a private proxy, which the test
// stops; nothing shared is touched.
func TestOutageAfterReadyIsTheAPIs503(t *testing.T) {
	_, dsn := repotest.NewDB(t)
	_, idx := repotest.NewRedis(t)
	pgURL, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pgProxy, redisProxy := newProxy(t, pgURL.Host), newProxy(t, repotest.RedisAddr())
	pgURL.Host = pgProxy.addr()
	q := pgURL.Query()
	q.Set("connect_timeout", "2")
	pgURL.RawQuery = q.Encode()
	store, err := repo.Open(pgURL.String(), repo.PoolConfig{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rdb := redis.NewClient(&redis.Options{Addr: redisProxy.addr(), DB: idx, MaxRetries: -1})
	defer rdb.Close()
	secret := []byte("outage-" + uid("k"))
	api := &intake.Server{Store: store, Client: asynq.NewClientFromRedisClient(rdb), Redis: rdb, Secret: secret,
		Log: quietLog(), RateLimit: -1}
	srv := httptest.NewServer(api.Handler())
	defer srv.Close()
	e := &env{t: t, secret: secret, srv: srv, hc: &http.Client{Transport: &validating{t: t, next: http.DefaultTransport}}}
	el := e.token(identity.RoleEloket, "el")

	e.mustDo("GET", "/readyz", "", nil, http.StatusOK, nil)
	wantError(t, e.do("GET", "/v1/permits/1", el, nil), http.StatusNotFound, intake.CodeNotFound)

	pgProxy.stop()
	redisProxy.stop()
	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/v1/permits/1", nil},
		{"POST", "/v1/permits", map[string]any{"resident_id": "r", "address_id": "a"}},
	} {
		t0 := time.Now()
		res := e.do(c.method, c.path, el, c.body)
		wantError(t, res, http.StatusServiceUnavailable, intake.CodeUnavailable)
		if d := time.Since(t0); d > 3*time.Second {
			t.Errorf("%s %s: 503 after %s", c.method, c.path, d)
		}
		if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 {
			t.Errorf("%s %s: 503 with Retry-After %q, want seconds", c.method, c.path, res.Header.Get("Retry-After"))
		}
	}
	var ready struct {
		Ready  bool
		Checks map[string]string
	}
	e.mustDo("GET", "/readyz", "", nil, http.StatusOK, &ready)
	if !ready.Ready || ready.Checks["postgres"] == "ok" || ready.Checks["redis"] == "ok" {
		t.Fatalf("readyz during the outage = %+v: want ready, with both checks failing", ready)
	}
	e.mustDo("GET", "/healthz", "", nil, http.StatusOK, nil)
}

// proxy forwards TCP connections to a target until stopped; then it cuts the
// connections it carries and refuses new ones, as a dependency that went away.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	down   bool
	wg     sync.WaitGroup
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() { p.stop(); p.wg.Wait() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		if !p.track(c, up) {
			c.Close()
			up.Close()
			return
		}
		for _, pair := range [][2]net.Conn{{c, up}, {up, c}} {
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				_, _ = io.Copy(pair[0], pair[1])
				pair[0].Close()
				pair[1].Close()
			}()
		}
	}
}

func (p *proxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// stop closes the listener (new connections are refused) and every
// connection it carries.
func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return
	}
	p.down = true
	p.ln.Close()
	for c := range p.conns {
		c.Close()
	}
}

// With OpsApart (PARKD_METRICS_ADDR set) the API's port answers /healthz,
// /readyz and /metrics 404, as openapi.yaml says; MetricsHandler serves them,
// and nothing else.
func TestOpsApartLeavesThePublicPortWithoutProbes(t *testing.T) {
	store, _ := repotest.NewDB(t)
	rdb, _ := repotest.NewRedis(t)
	api := &intake.Server{Store: store, Redis: rdb, Secret: []byte("k"), Log: quietLog(), RateLimit: -1, OpsApart: true}
	public, ops := httptest.NewServer(api.Handler()), httptest.NewServer(api.MetricsHandler())
	defer public.Close()
	defer ops.Close()
	hc := &http.Client{Transport: &validating{t: t, next: http.DefaultTransport}}
	pub, op := &env{t: t, srv: public, hc: hc}, &env{t: t, srv: ops, hc: hc}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		wantError(t, pub.do("GET", path, "", nil), http.StatusNotFound, intake.CodeNotFound)
		op.mustDo("GET", path, "", nil, http.StatusOK, nil)
	}
	pub.mustDo("GET", "/v1/openapi.yaml", "", nil, http.StatusOK, nil)
	// The document describes the API's port: the metrics port's 404 is not its.
	op.hc = http.DefaultClient
	wantError(t, op.do("GET", "/v1/openapi.yaml", "", nil), http.StatusNotFound, intake.CodeNotFound)
}
