package console_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/console"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/identity/identitytest"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/repo/repotest"
)

// monitorEnv is `parkd monitor`: the console behind the intake's OpsHandler, on
// the test process's Redis index (flushed for each test, so these tests do not
// run in parallel).
type monitorEnv struct {
	t      *testing.T
	srv    *httptest.Server
	secret []byte
	redis  asynq.RedisClientOpt
	logs   *syncBuffer // the console's log, as JSON lines
}

func newMonitor(t *testing.T, readOnly bool, jwksURL ...string) *monitorEnv {
	t.Helper()
	rdb, idx := repotest.NewRedis(t)
	m := &monitorEnv{t: t, secret: []byte("monitor-secret"), redis: asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx},
		logs: &syncBuffer{}}
	cfg := identity.Config{Secret: m.secret, Log: quietLog()}
	if len(jwksURL) > 0 {
		cfg.JWKSURL = jwksURL[0]
	}
	ids, err := identity.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ids.Close)
	mon := console.New(console.Config{Redis: m.redis, Identity: ids, ReadOnly: readOnly,
		Log: slog.New(slog.NewJSONHandler(m.logs, nil))})
	t.Cleanup(func() { mon.Close() })
	s := &intake.Server{Redis: rdb, Identity: ids, Log: quietLog(), Console: mon}
	m.srv = httptest.NewServer(s.OpsHandler())
	t.Cleanup(m.srv.Close)
	// A queue with a task in it, for the API to show.
	c := asynq.NewClient(m.redis)
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask("session:start", []byte(`{"request_id":"m1","permit_id":"1","plate":"ab-12-cd"}`)),
		asynq.Queue("critical"), asynq.TaskID("m1"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *monitorEnv) token(role string, ttl time.Duration) string {
	m.t.Helper()
	tok, err := identity.Mint(m.secret, identity.Grant{Role: role, Sub: "someone", TTL: ttl}, time.Now())
	if err != nil {
		m.t.Fatal(err)
	}
	return tok
}

// get sends a request without following redirects; headers are name, value pairs.
func (m *monitorEnv) send(method, path string, body io.Reader, headers ...string) (*http.Response, string) {
	m.t.Helper()
	req, err := http.NewRequest(method, m.srv.URL+path, body)
	if err != nil {
		m.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := hc.Do(req)
	if err != nil {
		m.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func (m *monitorEnv) login(tok string, headers ...string) (*http.Response, string) {
	return m.send("POST", "/monitor/login", strings.NewReader(url.Values{"token": {tok}}.Encode()),
		append([]string{"Content-Type", "application/x-www-form-urlencoded", "Accept", "text/html"}, headers...)...)
}

const browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

func TestMonitorWithoutOperatorToken(t *testing.T) {
	m := newMonitor(t, false)

	res, body := m.send("GET", "/monitor/", nil, "Accept", browser)
	if res.StatusCode != 401 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(body, `<form method="post" action="/monitor/login">`) || strings.Contains(body, "static/js") {
		t.Fatalf("browser without a token: %d %s\n%s", res.StatusCode, res.Header, body)
	}
	res, body = m.send("GET", "/monitor/api/queues", nil, "Accept", "application/json")
	if res.StatusCode != 401 || !strings.Contains(body, `"code":"unauthenticated"`) || res.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("API call without a token: %d %s", res.StatusCode, body)
	}
	// Every role but the operator's: 403, HTML or JSON.
	for _, role := range []string{identity.RoleResident, identity.RoleEloket, identity.RoleEnforcement} {
		tok := m.token(role, time.Hour)
		if res, body := m.send("GET", "/monitor/api/queues", nil, "Authorization", "Bearer "+tok); res.StatusCode != 403 ||
			!strings.Contains(body, `"code":"forbidden"`) {
			t.Errorf("%s's bearer token: %d %s", role, res.StatusCode, body)
		}
		if res, body := m.send("GET", "/monitor/", nil, "Authorization", "Bearer "+tok, "Accept", browser); res.StatusCode != 403 ||
			!strings.Contains(body, "this token&#39;s role is "+role) {
			t.Errorf("%s's bearer token, browser: %d %s", role, res.StatusCode, body)
		}
		if res, body := m.login(tok); res.StatusCode != 403 || len(res.Cookies()) != 0 || !strings.Contains(body, "for operators") {
			t.Errorf("%s signing in: %d cookies %v", role, res.StatusCode, res.Cookies())
		}
	}
	// Tokens that are not valid.
	op := identity.Grant{Role: identity.RoleOperator, Sub: "ops", TTL: time.Hour}
	expired, _ := identity.Mint(m.secret, op, time.Now().Add(-2*time.Hour))
	forged, _ := identity.Mint([]byte("another secret"), op, time.Now())
	for name, tok := range map[string]string{"expired": expired, "forged": forged, "garbage": "not-a-token", "empty": ""} {
		if res, _ := m.login(tok); res.StatusCode != 401 || len(res.Cookies()) != 0 {
			t.Errorf("signing in with a %s token: %d, cookies %v", name, res.StatusCode, res.Cookies())
		}
		if tok == "" {
			continue
		}
		if res, _ := m.send("GET", "/monitor/api/queues", nil, "Authorization", "Bearer "+tok); res.StatusCode != 401 {
			t.Errorf("%s bearer token: %d", name, res.StatusCode)
		}
		res, _ := m.send("GET", "/monitor/api/queues", nil, "Cookie", console.Cookie+"="+tok)
		if res.StatusCode != 401 {
			t.Errorf("%s token in the cookie: %d", name, res.StatusCode)
		}
		if c := res.Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
			t.Errorf("%s token in the cookie: not cleared (%v)", name, c)
		}
	}
}

func TestMonitorOperatorByBearerToken(t *testing.T) {
	m := newMonitor(t, false)
	auth := []string{"Authorization", "Bearer " + m.token(identity.RoleOperator, time.Hour)}

	res, body := m.send("GET", "/monitor/", nil, append(auth, "Accept", browser)...)
	if res.StatusCode != 200 || res.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("asynqmon's page: %d %s", res.StatusCode, res.Header)
	}
	// Its assets are under /monitor/ (RootPath), and served.
	scripts := regexp.MustCompile(`src="(/monitor/static/js/[^"]+\.js)"`).FindAllStringSubmatch(body, -1)
	if len(scripts) == 0 || !strings.Contains(body, `window.FLAG_ROOT_PATH="\/monitor"`) {
		t.Fatalf("asynqmon's page is not rooted at /monitor:\n%s", body)
	}
	for _, s := range scripts {
		if res, js := m.send("GET", s[1], nil, auth...); res.StatusCode != 200 ||
			!strings.HasPrefix(res.Header.Get("Content-Type"), "application/javascript") || len(js) < 1000 {
			t.Errorf("%s: %d %s, %d bytes", s[1], res.StatusCode, res.Header.Get("Content-Type"), len(js))
		}
	}
	res, body = m.send("GET", "/monitor/api/queues", nil, auth...)
	if res.StatusCode != 200 || !strings.Contains(body, `"queue":"critical"`) {
		t.Fatalf("queues: %d %s", res.StatusCode, body)
	}
	// Payloads readable, plates masked.
	res, body = m.send("GET", "/monitor/api/queues/critical/scheduled_tasks", nil, auth...)
	if res.StatusCode != 200 || !strings.Contains(body, `\"plate\": \"****CD\"`) || strings.Contains(body, "ab-12-cd") {
		t.Fatalf("scheduled tasks: %d %s", res.StatusCode, body)
	}
	// parkd monitor's root leads to it; the port's own endpoints stay open.
	if res, _ := m.send("GET", "/", nil); res.StatusCode != http.StatusFound || res.Header.Get("Location") != "/monitor/" {
		t.Errorf("/: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	for _, p := range []string{"/healthz", "/metrics"} {
		if res, _ := m.send("GET", p, nil); res.StatusCode != 200 {
			t.Errorf("%s: %d", p, res.StatusCode)
		}
	}
}

func TestMonitorSessionCookie(t *testing.T) {
	m := newMonitor(t, false)
	tok := m.token(identity.RoleOperator, time.Hour)

	res, _ := m.login("Bearer " + tok) // pasted with its scheme: fine
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/monitor/" {
		t.Fatalf("sign-in: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
	cs := res.Cookies()
	if len(cs) != 1 {
		t.Fatalf("sign-in set %d cookies", len(cs))
	}
	c := cs[0]
	if c.Name != console.Cookie || c.Value != tok || c.Path != "/monitor" || !c.HttpOnly ||
		c.SameSite != http.SameSiteStrictMode || c.Secure {
		t.Errorf("cookie over plain HTTP: %+v", c)
	}
	if d := time.Until(c.Expires); d < 59*time.Minute || d > 61*time.Minute || c.MaxAge < 3500 || c.MaxAge > 3600 {
		t.Errorf("cookie expires in %s (max-age %d), want with the token, in an hour", d, c.MaxAge)
	}
	// Behind a proxy that terminated TLS: Secure.
	if res, _ := m.login(tok, "X-Forwarded-Proto", "https"); len(res.Cookies()) != 1 || !res.Cookies()[0].Secure {
		t.Errorf("cookie over HTTPS is not Secure: %v", res.Cookies())
	}

	cookie := []string{"Cookie", c.Name + "=" + c.Value}
	if res, body := m.send("GET", "/monitor/", nil, append(cookie, "Accept", browser)...); res.StatusCode != 200 || !strings.Contains(body, "/monitor/static/js/") {
		t.Fatalf("page with the cookie: %d", res.StatusCode)
	}
	if res, _ := m.send("GET", "/monitor/login", nil, append(cookie, "Accept", browser)...); res.StatusCode != http.StatusSeeOther {
		t.Errorf("login page when signed in: %d, want a redirect to the monitor", res.StatusCode)
	}
	// A change from another site is refused even with the cookie; from the
	// monitor's own page it goes through.
	if res, body := m.send("POST", "/monitor/api/queues/critical:pause", nil, append(cookie, "Origin", "https://evil.example")...); res.StatusCode != 403 {
		t.Errorf("cross-site pause: %d %s", res.StatusCode, body)
	}
	if res, body := m.send("POST", "/monitor/api/queues/critical:pause", nil, append(cookie, "Origin", m.srv.URL)...); res.StatusCode/100 != 2 {
		t.Errorf("same-site pause: %d %s", res.StatusCode, body)
	}
	if _, body := m.send("GET", "/monitor/api/queues", nil, cookie...); !strings.Contains(body, `"paused":true`) {
		t.Errorf("the queue was not paused: %s", body)
	}

	res, _ = m.send("POST", "/monitor/logout", nil, cookie...)
	if res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 || res.Cookies()[0].MaxAge >= 0 {
		t.Errorf("logout: %d %v", res.StatusCode, res.Cookies())
	}
}

func TestMonitorReadOnly(t *testing.T) {
	m := newMonitor(t, true)
	auth := []string{"Authorization", "Bearer " + m.token(identity.RoleOperator, time.Hour)}
	if _, body := m.send("GET", "/monitor/", nil, auth...); !strings.Contains(body, `window.FLAG_READ_ONLY="true"`) {
		t.Errorf("the UI is not told it is read-only")
	}
	if res, _ := m.send("GET", "/monitor/api/queues", nil, auth...); res.StatusCode != 200 {
		t.Errorf("reading in read-only mode: %d", res.StatusCode)
	}
	for _, p := range []string{"/monitor/api/queues/critical:pause", "/monitor/api/queues/critical/scheduled_tasks/m1:run"} {
		if res, _ := m.send("POST", p, nil, auth...); res.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s in read-only mode: %d", p, res.StatusCode)
		}
	}
	if res, _ := m.send("DELETE", "/monitor/api/queues/critical/scheduled_tasks/m1", nil, auth...); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE in read-only mode: %d", res.StatusCode)
	}
}

func TestMaskedJSON(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"request_id":"r1","permit_id":"7","plate":"ab-12-cd"}`:  "{\n  \"permit_id\": \"7\",\n  \"plate\": \"****CD\",\n  \"request_id\": \"r1\"\n}",
		`{"session":{"plate":"XY987Z","n":12345678901234567890}}`: "{\n  \"session\": {\n    \"n\": 12345678901234567890,\n    \"plate\": \"****7Z\"\n  }\n}",
		`[{"Plate":"Q!"}]`:    "[\n  {\n    \"Plate\": \"**\"\n  }\n]",
		`{"note":"<b>&</b>"}`: "{\n  \"note\": \"<b>&</b>\"\n}",
		``:                    "",
		`plate AB12CD`:        "(12 bytes, not JSON: not shown)",
		`{"a":1} {"b":2}`:     "(15 bytes, not JSON: not shown)",
	} {
		if got := console.MaskedJSON("session:start", []byte(in)); got != want {
			t.Errorf("MaskedJSON(%s) =\n%s\nwant\n%s", in, got, want)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// syncBuffer is a log destination that handlers may write while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Split(strings.TrimSpace(s.b.String()), "\n")
}

// topKeys lists the keys of a JSON object in order, repeats included (which
// decoding into a map would hide).
func topKeys(t *testing.T, line string) []string {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

// The record of an operator's action names who did what, each key once: the
// line used to carry method and path twice (the request's logger had them).
func TestMonitorActionIsLoggedOnce(t *testing.T) {
	m := newMonitor(t, false)
	auth := []string{"Authorization", "Bearer " + m.token(identity.RoleOperator, time.Hour)}
	if res, body := m.send("POST", "/monitor/api/queues/critical:pause", nil, auth...); res.StatusCode/100 != 2 {
		t.Fatalf("pause: %d %s", res.StatusCode, body)
	}
	var found bool
	for _, line := range m.logs.lines() {
		if !strings.Contains(line, `"monitor action"`) {
			continue
		}
		found = true
		seen := map[string]int{}
		for _, k := range topKeys(t, line) {
			seen[k]++
		}
		for _, k := range []string{"method", "path", "subject"} {
			if seen[k] != 1 {
				t.Errorf("key %s appears %d times in %s", k, seen[k], line)
			}
		}
		if !strings.Contains(line, `"path":"/monitor/api/queues/critical:pause"`) || !strings.Contains(line, `"subject":"operator:someone"`) {
			t.Errorf("action line: %s", line)
		}
	}
	if !found {
		t.Fatalf("no action logged: %v", m.logs.lines())
	}
}

// An operator signed in by the municipality's identity provider (an ES256
// token, key from its JWKS) uses the console like one with a parkd token.
func TestMonitorOperatorFromIdentityProvider(t *testing.T) {
	key := identitytest.ECKey(t, "idp-1")
	m := newMonitor(t, false, identitytest.NewProvider(t, key).URL)
	signed := key.Sign(t, jwt.MapClaims{"sub": "alice", "role": "operator", "exp": time.Now().Add(time.Hour).Unix()})
	if res, body := m.send("GET", "/monitor/api/queues", nil, "Authorization", "Bearer "+signed); res.StatusCode != 200 {
		t.Fatalf("the provider's operator token: %d %s", res.StatusCode, body)
	}
	if res, _ := m.login(signed); res.StatusCode != http.StatusSeeOther || len(res.Cookies()) != 1 {
		t.Fatalf("signing in with the provider's token: %d", res.StatusCode)
	}
}
