package registrar_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parkd/parkd/registrar"
	"github.com/parkd/parkd/worker"
)

func right() worker.Right {
	start := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	return worker.Right{RightID: "parkd-17", Version: 3, Issuer: "parkd", AreaManagerID: "363", AreaID: "OOST",
		UsageID: "BEZOEKP", Plate: "AB12CD", Country: "NL", StartAt: start, EndAt: start.Add(time.Hour), Status: worker.RightActive}
}

// received is what a registrar under test was sent.
type received struct {
	mu     sync.Mutex
	method string
	path   string
	auth   string
	ctype  string
	body   []byte
}

func registrarAnswering(t *testing.T, status int, body string) (*httptest.Server, *received) {
	t.Helper()
	got := &received{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.mu.Lock()
		got.method, got.path, got.auth, got.ctype, got.body = r.Method, r.URL.EscapedPath(), r.Header.Get("Authorization"), r.Header.Get("Content-Type"), b
		got.mu.Unlock()
		if body != "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func client(t *testing.T, url, token string, timeout time.Duration) *registrar.Client {
	t.Helper()
	c, err := registrar.New(registrar.Config{URL: url, Token: token, Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The protocol's answers (README "Pointing parkd at a register"): 200, 201,
// 204 acknowledge; 409 is superseded, acknowledged too; a 4xx that judges the
// right is a refusal, and so are 401, 403 and 404 (the contract: any other
// 4xx), saying what to check; 5xx, 408 and 429 are retried.
func TestRegistrarAnswers(t *testing.T) {
	for _, c := range []struct {
		status  int
		body    string
		want    string // ack, superseded, refusal, retry
		message string // of a refusal; of a retried error, a part of it
	}{
		{200, "", "ack", ""},
		{201, `{"right_id":"parkd-17"}`, "ack", ""},
		{204, "", "ack", ""},
		{409, `{"error":"newer version held"}`, "superseded", ""},
		{400, `{"error":{"code":"bad_area","message":"area OOST unknown for AB12CD"}}`, "refusal", "bad_area: area OOST unknown for ****CD"},
		{401, "", "refusal", "check PARKD_REGISTRAR_TOKEN: Unauthorized"},
		{403, `{"message":"issuer parkd may not register in area 363"}`, "refusal",
			"check PARKD_REGISTRAR_TOKEN and PARKD_REGISTRAR_ISSUER: the register does not let this token register: issuer parkd may not register in area 363"},
		{404, "no such\n\tendpoint", "refusal", "check the path of PARKD_REGISTRAR_URL: no such endpoint"},
		{408, "", "retry", "Request Timeout"},
		{410, `{"error":"area OOST withdrawn"}`, "refusal", "area OOST withdrawn"},
		{413, "", "refusal", "Request Entity Too Large"},
		{422, `{"title":"Unprocessable","detail":"plate AB-12-CD is not a Dutch plate"}`, "refusal", "plate ******CD is not a Dutch plate"},
		{429, `{"error":"slow down"}`, "retry", "slow down"},
		{500, "", "retry", ""},
		{502, "<html>bad gateway</html>", "retry", ""},
		{503, "", "retry", ""},
		{302, "", "retry", ""},
	} {
		t.Run(http.StatusText(c.status), func(t *testing.T) {
			srv, _ := registrarAnswering(t, c.status, c.body)
			err := client(t, srv.URL, "", 0).Register(context.Background(), right())
			var refusal *worker.Refusal
			isRefusal := errors.As(err, &refusal)
			switch c.want {
			case "ack":
				if err != nil {
					t.Fatalf("want acknowledged, got %v", err)
				}
			case "superseded":
				if !errors.Is(err, worker.ErrSuperseded) {
					t.Fatalf("want ErrSuperseded, got %v", err)
				}
			case "refusal":
				if !isRefusal {
					t.Fatalf("want a refusal, got %v", err)
				}
				if refusal.Status != c.status || refusal.Message != c.message {
					t.Fatalf("refusal %d %q, want %d %q", refusal.Status, refusal.Message, c.status, c.message)
				}
			case "retry":
				if err == nil || isRefusal || errors.Is(err, worker.ErrSuperseded) {
					t.Fatalf("want an error to retry, got %v", err)
				}
				if strings.Contains(err.Error(), "AB12CD") {
					t.Fatalf("the error names the plate: %v", err)
				}
				if !strings.Contains(err.Error(), c.message) {
					t.Fatalf("the error %q does not say %q", err, c.message)
				}
			}
		})
	}
}

// The request is the contract's: PUT to /rights/{right_id} under the base
// URL's path, the bearer token, the right as JSON, and no plate in the URL.
func TestRegistrarRequest(t *testing.T) {
	srv, got := registrarAnswering(t, 201, "")
	if err := client(t, srv.URL+"/npr/v1/", "s3cret", 0).Register(context.Background(), right()); err != nil {
		t.Fatal(err)
	}
	if got.method != http.MethodPut || got.path != "/npr/v1/rights/parkd-17" {
		t.Errorf("sent %s %s", got.method, got.path)
	}
	if got.auth != "Bearer s3cret" || got.ctype != "application/json" {
		t.Errorf("Authorization %q, Content-Type %q", got.auth, got.ctype)
	}
	var sent map[string]any
	if err := json.Unmarshal(got.body, &sent); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"right_id": "parkd-17", "version": 3.0, "issuer": "parkd", "area_manager_id": "363",
		"area_id": "OOST", "usage_id": "BEZOEKP", "plate": "AB12CD", "country": "NL",
		"start_at": "2026-11-30T09:00:00Z", "end_at": "2026-11-30T10:00:00Z", "status": "active"}
	if len(sent) != len(want) {
		t.Errorf("sent %v, want %v", sent, want)
	}
	for k, v := range want {
		if sent[k] != v {
			t.Errorf("%s = %v, want %v", k, sent[k], v)
		}
	}

	// Without a token, no Authorization header at all.
	if err := client(t, srv.URL, "", 0).Register(context.Background(), right()); err != nil {
		t.Fatal(err)
	}
	if got.auth != "" {
		t.Errorf("Authorization %q sent without a token", got.auth)
	}
}

// A refusal's message is one line of at most 200 characters, plate masked.
func TestRefusalMessageIsShortAndMasked(t *testing.T) {
	long := strings.Repeat("AB12CD, ab-12-cd is refused ", 40)
	srv, _ := registrarAnswering(t, 400, `{"error":{"message":"`+long+`"}}`)
	err := client(t, srv.URL, "", 0).Register(context.Background(), right())
	var refusal *worker.Refusal
	if !errors.As(err, &refusal) {
		t.Fatalf("want a refusal, got %v", err)
	}
	if n := len([]rune(refusal.Message)); n > registrar.MaxMessage {
		t.Errorf("message of %d characters", n)
	}
	if strings.Contains(refusal.Message, "AB12CD") || strings.Contains(refusal.Message, "ab-12") || !strings.Contains(refusal.Message, "****CD, ******cd") {
		t.Errorf("message %q", refusal.Message)
	}
}

// A registrar that does not answer within the timeout, or cannot be reached,
// is retried, never refused.
func TestUnansweredIsRetried(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); slow.Close() })
	began := time.Now()
	err := client(t, slow.URL, "", 200*time.Millisecond).Register(context.Background(), right())
	var refusal *worker.Refusal
	if err == nil || errors.As(err, &refusal) {
		t.Fatalf("timeout: want an error to retry, got %v", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("timeout of 200ms took %s", took)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	err = client(t, "http://"+addr, "", 0).Register(context.Background(), right())
	if err == nil || errors.As(err, &refusal) {
		t.Fatalf("connection refused: want an error to retry, got %v", err)
	}
}

func TestCheckURL(t *testing.T) {
	for _, c := range []struct {
		url string
		ok  bool
	}{
		{"https://npr.example", true},
		{"http://127.0.0.1:8090", true},
		{"https://npr.example/api/v1/", true},
		{"npr.example", false},
		{"ftp://npr.example", false},
		{"https://", false},
		{"https://:443", false},
		{"https://npr.example?x=1", false},
		{"https://npr.example/#top", false},
		{"https://user:pw@npr.example", false},
		{"", false},
		{"http://npr.example:65535/api", true},
		{"http://[::1]:8090", true},
		{"http://npr.example:99999", false},
		{"http://npr.example:0/", false},
		{"http://npr.example:/", false},
		{"http://[::1]:/", false},
	} {
		if err := registrar.CheckURL(c.url); (err == nil) != c.ok {
			t.Errorf("CheckURL(%q) = %v", c.url, err)
		}
		if _, err := registrar.New(registrar.Config{URL: c.url}); (err == nil) != c.ok {
			t.Errorf("New(%q) = %v", c.url, err)
		}
	}
}

// A bearer token is RFC 6750's b64token, or it cannot be sent: net/http
// refuses a header value with a newline, and every right would be retried
// for ever. The refusal names the character, never the token.
func TestCheckToken(t *testing.T) {
	for _, c := range []struct {
		token string
		ok    bool
		says  string
	}{
		{"npr-secret", true, ""},
		{"eyJhbGciOi.JIUzI1NiJ9_~+/x==", true, ""},
		{"Zm9vYmFy=", true, ""},
		{"tkn\n", false, `character 4 ('\n')`},
		{"a b", false, `character 2 (' ')`},
		{" tkn", false, "character 1"},
		{"tkn\r", false, `'\r'`},
		{"tk\x00n", false, `'\x00'`},
		{"tkn\t", false, `'\t'`},
		{"a=b", false, "character 2 ('=')"},
		{"=abc", false, "character 1"},
		{"tökén", false, "character 2 ('ö')"},
		{"a,b", false, "character 2"},
		{"", false, "empty"},
	} {
		err := registrar.CheckToken(c.token)
		if (err == nil) != c.ok {
			t.Errorf("CheckToken(%q) = %v", c.token, err)
			continue
		}
		if err != nil && !strings.Contains(err.Error(), c.says) {
			t.Errorf("CheckToken(%q) = %q, want it to say %q", c.token, err, c.says)
		}
		if len(c.token) > 2 && err != nil && strings.Contains(err.Error(), c.token) {
			t.Errorf("CheckToken(%q) repeats the token: %v", c.token, err)
		}
		if _, err := registrar.New(registrar.Config{URL: "http://npr.example", Token: c.token}); (err == nil) != (c.ok || c.token == "") {
			t.Errorf("New with token %q = %v", c.token, err)
		}
	}
}

// Registrations reuse their connections: however many, the registrar sees at
// most as many connections as calls were in flight at once (Config.Conns),
// as webhook deliveries do (worker TestWebhookDeliveriesReuseTheirConnections).
func TestRegistrationsReuseTheirConnections(t *testing.T) {
	const inFlight = 8
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(10 * time.Millisecond) // calls overlap, as under load
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c, err := registrar.New(registrar.Config{URL: srv.URL, Token: "t", Conns: inFlight})
	if err != nil {
		t.Fatal(err)
	}
	// Waves of calls at once, each wave's connections all idle before the
	// next: what a pool too small for them closes, the next wave dials again.
	for range 5 {
		var wg sync.WaitGroup
		for range inFlight {
			wg.Go(func() {
				if err := c.Register(context.Background(), right()); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if n := conns.Load(); n > inFlight {
		t.Fatalf("%d registrations opened %d connections, want at most %d", 5*inFlight, n, inFlight)
	}
}
