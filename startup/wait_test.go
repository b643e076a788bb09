package startup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/repo/repotest"
)

func pingPostgres(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		c, err := pgconn.Connect(ctx, url)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}
}

func pingRedis(url string) func(context.Context) error {
	return func(ctx context.Context) error {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return err
		}
		c := redis.NewClient(opt)
		defer c.Close()
		return c.Ping(ctx).Err()
	}
}

// privateRedis starts a redis-server of the test's own, with a password and a
// user who may not PING, on a free port: the shared one has no password, and
// its configuration is not the test's to change.
func privateRedis(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("no redis-server on PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command("redis-server", "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--requirepass", "sekrit", "--user", "noping", "on", ">pw", "~*", "+@all", "-ping")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("private redis-server on %s did not start", addr)
		}
	}
}

// A service that answers with a refusal ends the wait at once, however long
// the wait may be, saying what to fix; each case is a real server's answer.
func TestWaitStopsAtARefusal(t *testing.T) {
	pg := strings.TrimSuffix(repotest.AdminURL(), "/postgres?sslmode=disable")
	if pg == repotest.AdminURL() {
		t.Skip("PARKD_TEST_DATABASE_URL is not of the form .../postgres?sslmode=disable")
	}
	redisAddr := repotest.RedisAddr()
	tlsSrv := httptest.NewTLSServer(nil) // a certificate nobody trusts
	t.Cleanup(tlsSrv.Close)
	tlsAddr := strings.TrimPrefix(tlsSrv.URL, "https://")

	for _, c := range []struct {
		name, setting string
		ping          func(*testing.T) func(context.Context) error
		want          []string
	}{
		{"postgres: no such role", "PARKD_DATABASE_URL",
			func(*testing.T) func(context.Context) error {
				return pingPostgres(strings.Replace(pg, "://postgres@", "://parkd_nobody@", 1) + "/postgres?sslmode=disable")
			},
			[]string{"SQLSTATE 28000", "the user in PARKD_DATABASE_URL may not log in"}},
		{"postgres: no such database", "PARKD_DATABASE_URL",
			func(*testing.T) func(context.Context) error {
				return pingPostgres(pg + "/parkd_no_such_database?sslmode=disable")
			},
			[]string{"SQLSTATE 3D000", "the database named in PARKD_DATABASE_URL does not exist"}},
		{"redis: no such user", "PARKD_REDIS_URL",
			func(*testing.T) func(context.Context) error {
				return pingRedis("redis://nobody:wrong@" + redisAddr + "/0")
			},
			[]string{"WRONGPASS", "the user or password in PARKD_REDIS_URL is wrong"}},
		{"redis: no such database", "PARKD_REDIS_URL",
			func(*testing.T) func(context.Context) error { return pingRedis("redis://" + redisAddr + "/100000") },
			[]string{"DB index is out of range", "the database number in PARKD_REDIS_URL"}},
		{"redis: a password required, none given", "PARKD_REDIS_URL",
			func(t *testing.T) func(context.Context) error { return pingRedis("redis://" + privateRedis(t) + "/0") },
			[]string{"NOAUTH", "Redis requires a password: put it in PARKD_REDIS_URL"}},
		{"redis: a wrong password", "PARKD_REDIS_URL",
			func(t *testing.T) func(context.Context) error {
				return pingRedis("redis://:wrong@" + privateRedis(t) + "/0")
			},
			[]string{"WRONGPASS", "the user or password in PARKD_REDIS_URL is wrong"}},
		{"redis: a user without the commands", "PARKD_REDIS_URL",
			func(t *testing.T) func(context.Context) error {
				return pingRedis("redis://noping:pw@" + privateRedis(t) + "/0")
			},
			[]string{"NOPERM", "may not run what parkd needs"}},
		{"redis: an untrusted certificate", "PARKD_REDIS_URL",
			func(*testing.T) func(context.Context) error { return pingRedis("rediss://" + tlsAddr + "/0") },
			[]string{"certificate", "TLS certificate is not valid for the host in PARKD_REDIS_URL"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			began := time.Now()
			err := Wait(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)),
				Service{Name: "svc", URL: "there", Setting: c.setting, Ping: c.ping(t)}, time.Minute)
			var re *RefusedError
			if !errors.As(err, &re) {
				t.Fatalf("Wait: %v, want a refusal", err)
			}
			for _, w := range append(c.want, "svc at there refused the connection (not retried)") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			if took := time.Since(began); took > 5*time.Second || logs.Len() > 0 {
				t.Errorf("waited %s before giving up, logging:\n%s", took, logs.String())
			}
		})
	}
}

// A service that does not answer, or answers that it is not ready yet, is
// waited for until the limit, and then named.
func TestWaitWaitsForWhatMayYetCome(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, c := range []struct {
		name string
		ping func(context.Context) error
		want string
	}{
		{"postgres: connection refused", pingPostgres("postgres://postgres:pw@" + closed + "/parkd?sslmode=disable"), "connect: connection refused"},
		{"redis: connection refused", pingRedis("redis://" + closed + "/0"), "connect: connection refused"},
		{"postgres: starting up", func(context.Context) error {
			return &pgconn.PgError{Severity: "FATAL", Code: "57P03", Message: "the database system is starting up"}
		}, "57P03"},
		{"postgres: too many connections", func(context.Context) error {
			return &pgconn.PgError{Severity: "FATAL", Code: "53300", Message: "sorry, too many clients already"}
		}, "53300"},
		{"redis: loading", func(context.Context) error { return reply("LOADING Redis is loading the dataset in memory") }, "LOADING"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var logs bytes.Buffer
			began := time.Now()
			err := Wait(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)),
				Service{Name: "svc", URL: "there", Setting: "PARKD_X_URL", Ping: c.ping}, 2*time.Second)
			var re *RefusedError
			if err == nil || errors.As(err, &re) {
				t.Fatalf("Wait: %v, want it to wait", err)
			}
			if want := "svc at there did not answer within 2s"; !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%q does not say %q and %q", err, want, c.want)
			}
			if took := time.Since(began); took < 2*time.Second {
				t.Errorf("gave up after %s", took)
			}
			if !strings.Contains(logs.String(), "waiting for svc") {
				t.Errorf("nothing logged while waiting:\n%s", logs.String())
			}
		})
	}
}

// A service that comes up while parkd waits is used: the wait ends at its
// first answer.
func TestWaitEndsWhenTheServiceAnswers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	tries := 0
	ping := func(ctx context.Context) error {
		if tries++; tries == 3 { // the service has started
			if ln, err = net.Listen("tcp", addr); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
	var logs bytes.Buffer
	err = Wait(context.Background(), slog.New(slog.NewTextHandler(&logs, nil)), Service{Name: "svc", URL: "there", Ping: ping}, time.Minute)
	if err != nil || tries != 3 || strings.Count(logs.String(), "waiting for svc") != 2 {
		t.Errorf("Wait: %v after %d tries, logging:\n%s", err, tries, logs.String())
	}
}

// The answers that only older servers or other setups give, which the tests
// above cannot get from this machine's servers.
func TestRefusalOfOtherAnswers(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string // "" for not a refusal
	}{
		{fmt.Errorf("ping: %w", &pgconn.PgError{Code: "28P01", Message: `password authentication failed for user "parkd"`}), "the password in S is wrong"},
		{&pgconn.PgError{Code: "42501", Message: `permission denied for database "parkd"`}, "GRANT CONNECT"},
		{&pgconn.PgError{Code: "57P01", Message: "terminating connection due to administrator command"}, ""},
		{reply("ERR invalid password"), "the user or password in S is wrong"}, // Redis 5
		{reply("MASTERDOWN Link with MASTER is down"), ""},
		{context.DeadlineExceeded, ""},
	} {
		fix, ok := Refusal(c.err, "S")
		if ok != (c.want != "") || !strings.Contains(fix, c.want) {
			t.Errorf("Refusal(%v) = %q, %v; want %q", c.err, fix, ok, c.want)
		}
	}
}

// reply is a Redis error reply as go-redis returns it.
type reply string

func (r reply) Error() string { return string(r) }
func (reply) RedisError()     {}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"redis://:pw@redis:6379/0":                       "redis://…@redis:6379/0",
		"redis-cluster://n1:6379,n2:6379?password=pw":    "redis-cluster://n1:6379,n2:6379?password=…",
		"postgres://u@db/parkd?sslmode=x&password=p&a=b": "postgres://…@db/parkd?sslmode=x&password=…&a=b",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%s) = %s, want %s", in, got, want)
		}
	}
}
