package main

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// setEnv makes the environment exactly vars as far as parkd's variables go:
// every PARKD_ variable the test process has is unset for the test.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PARKD_") {
			t.Setenv(k, "") // restored after the test
			os.Unsetenv(k)
		}
	}
	for k, v := range vars {
		t.Setenv(k, v)
	}
}

const goodSecret = "0123456789abcdef0123456789abcdef" // 32 bytes

// Every variable is read strictly: an invalid value is an error naming the
// variable and the form it accepts, never a default or a guess.
func TestConfigRefusesInvalidValues(t *testing.T) {
	for _, c := range []struct {
		name string
		env  map[string]string
		want []string // substrings of the error; none: valid
		ok   func(config) bool
	}{
		{"nothing set: development defaults", nil, nil,
			func(c config) bool {
				return c.Env == "development" && c.JWTSecret == devJWTSecret && c.HTTPAddr == ":8080"
			}},
		{"development", map[string]string{"PARKD_ENV": "development"}, nil,
			func(c config) bool { return c.Env == "development" }},
		{"production with a 32-byte secret", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": goodSecret}, nil,
			func(c config) bool { return c.Env == "production" && c.JWTSecret == goodSecret }},
		{"a short secret is fine in development", map[string]string{"PARKD_JWT_SECRET": "a"}, nil,
			func(c config) bool { return c.JWTSecret == "a" }},
		{"an identity provider", map[string]string{"PARKD_JWKS_URL": "https://login.example.nl/certs", "PARKD_JWT_ISSUER": "https://login.example.nl", "PARKD_JWT_AUDIENCE": "parkd"}, nil,
			func(c config) bool {
				return c.JWKSURL == "https://login.example.nl/certs" && c.JWTIssuer == "https://login.example.nl" && c.JWTAudience == "parkd"
			}},
		{"a JWKS URL that is no http URL", map[string]string{"PARKD_JWKS_URL": "login.example.nl/certs"}, []string{"PARKD_JWKS_URL", "want an http(s) URL"}, nil},
		{"a JWKS URL with port 99999", map[string]string{"PARKD_JWKS_URL": "https://login.example.nl:99999/certs"}, []string{"PARKD_JWKS_URL", `port "99999"`}, nil},
		{"a JWKS URL with port 0", map[string]string{"PARKD_JWKS_URL": "https://login.example.nl:0/certs"}, []string{"PARKD_JWKS_URL", `port "0"`}, nil},
		{"a JWKS URL with an empty port", map[string]string{"PARKD_JWKS_URL": "https://login.example.nl:/certs"}, []string{"PARKD_JWKS_URL", "empty port"}, nil},
		{"a JWKS URL with a port", map[string]string{"PARKD_JWKS_URL": "http://127.0.0.1:8443/certs"}, nil,
			func(c config) bool { return c.JWKSURL == "http://127.0.0.1:8443/certs" }},
		{"an audience without a JWKS URL", map[string]string{"PARKD_JWT_AUDIENCE": "parkd"}, []string{"set PARKD_JWKS_URL too"}, nil},

		{"PARKD_ENV=Production", map[string]string{"PARKD_ENV": "Production"}, []string{`PARKD_ENV="Production": want development or production`}, nil},
		{"PARKD_ENV=prod", map[string]string{"PARKD_ENV": "prod", "PARKD_JWT_SECRET": goodSecret}, []string{`PARKD_ENV="prod"`}, nil},
		{"PARKD_ENV=PRODUCTION", map[string]string{"PARKD_ENV": "PRODUCTION"}, []string{`PARKD_ENV="PRODUCTION"`}, nil},
		{"PARKD_ENV=dev", map[string]string{"PARKD_ENV": "dev"}, []string{`PARKD_ENV="dev"`}, nil},
		{"PARKD_ENV with a space", map[string]string{"PARKD_ENV": "production "}, []string{`PARKD_ENV="production "`}, nil},
		{"PARKD_ENV set but empty", map[string]string{"PARKD_ENV": ""}, []string{`PARKD_ENV="": want development or production`}, nil},

		{"production without a secret", map[string]string{"PARKD_ENV": "production"}, []string{"PARKD_JWT_SECRET is not set", "at least 32 bytes"}, nil},
		{"production with an empty secret", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": ""}, []string{"PARKD_JWT_SECRET is not set"}, nil},
		{"production with a 1-byte secret", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": "a"}, []string{"PARKD_JWT_SECRET is too short for production: 1 bytes, at least 32"}, nil},
		{"production with a 31-byte secret", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": goodSecret[1:]}, []string{"31 bytes, at least 32"}, nil},
		{"production with the development secret", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": devJWTSecret}, []string{"the development default"}, nil},

		{"a count of zero", map[string]string{"PARKD_DB_MAX_CONNS": "0"}, []string{`PARKD_DB_MAX_CONNS="0": want a positive whole number`}, nil},
		{"a count that is not a number", map[string]string{"PARKD_WORKER_CONCURRENCY": "ten"}, []string{`PARKD_WORKER_CONCURRENCY="ten"`}, nil},
		{"a fractional count", map[string]string{"PARKD_SETTLE_BATCH": "1.5"}, []string{`PARKD_SETTLE_BATCH="1.5"`}, nil},
		{"a negative count", map[string]string{"PARKD_SETTLE_COMMITTERS": "-4"}, []string{`PARKD_SETTLE_COMMITTERS="-4"`}, nil},
		{"a rate limit of zero", map[string]string{"PARKD_RATE_LIMIT": "0"}, []string{`PARKD_RATE_LIMIT="0"`}, nil},
		{"a burst that is not a number", map[string]string{"PARKD_RATE_BURST": "lots"}, []string{`PARKD_RATE_BURST="lots"`}, nil},
		{"rate limits set", map[string]string{"PARKD_RATE_LIMIT": "7", "PARKD_RATE_BURST": "9"}, nil,
			func(c config) bool { return c.RateLimit == 7 && c.RateBurst == 9 }},

		{"a duration without a unit", map[string]string{"PARKD_TASK_CHECK_INTERVAL": "10"}, []string{`PARKD_TASK_CHECK_INTERVAL="10": want a positive Go duration with its unit`}, nil},
		{"a negative duration", map[string]string{"PARKD_STARTUP_WAIT": "-1s"}, []string{`PARKD_STARTUP_WAIT="-1s"`}, nil},
		{"a duration in words", map[string]string{"PARKD_DB_CONN_MAX_LIFETIME": "forever"}, []string{`PARKD_DB_CONN_MAX_LIFETIME="forever"`}, nil},
		{"a zero duration", map[string]string{"PARKD_DELAYED_TASK_CHECK_INTERVAL": "0s"}, []string{`PARKD_DELAYED_TASK_CHECK_INTERVAL="0s"`}, nil},
		{"a plate retention under a minute", map[string]string{"PARKD_PLATE_RETENTION": "30s"}, []string{`PARKD_PLATE_RETENTION="30s": want a Go duration of at least 1m0s`}, nil},
		{"a plate retention without a unit", map[string]string{"PARKD_PLATE_RETENTION": "2184"}, []string{`PARKD_PLATE_RETENTION="2184"`}, nil},
		{"a plate retention by default", nil, nil, func(c config) bool { return c.PlateRetention == 2184*time.Hour }},
		{"a plate retention of a minute", map[string]string{"PARKD_PLATE_RETENTION": "1m"}, nil, func(c config) bool { return c.PlateRetention == time.Minute }},

		{"a boolean as 1", map[string]string{"PARKD_MONITOR_READONLY": "1"}, []string{`PARKD_MONITOR_READONLY="1": want false or true`}, nil},
		{"a boolean in capitals", map[string]string{"PARKD_MONITOR_READONLY": "TRUE"}, []string{`PARKD_MONITOR_READONLY="TRUE"`}, nil},
		{"a boolean as yes", map[string]string{"PARKD_MONITOR_READONLY": "yes"}, []string{`PARKD_MONITOR_READONLY="yes"`}, nil},
		{"a boolean", map[string]string{"PARKD_MONITOR_READONLY": "true"}, nil,
			func(c config) bool { return c.MonitorReadOnly }},

		{"an unknown log level", map[string]string{"PARKD_LOG_LEVEL": "verbose"}, []string{`PARKD_LOG_LEVEL="verbose": want debug or info or warn or error`}, nil},
		{"a log level with an offset", map[string]string{"PARKD_LOG_LEVEL": "info+2"}, []string{`PARKD_LOG_LEVEL="info+2"`}, nil},
		{"a log level in capitals", map[string]string{"PARKD_LOG_LEVEL": "DEBUG"}, []string{`PARKD_LOG_LEVEL="DEBUG"`}, nil},
		{"a log level", map[string]string{"PARKD_LOG_LEVEL": "warn"}, nil,
			func(c config) bool { return c.LogLevel == slog.LevelWarn }},

		{"an address without a port", map[string]string{"PARKD_HTTP_ADDR": "8080"}, []string{`PARKD_HTTP_ADDR="8080": want HOST:PORT or :PORT`}, nil},
		{"a port out of range", map[string]string{"PARKD_HTTP_ADDR": ":99999"}, []string{`PARKD_HTTP_ADDR=":99999"`}, nil},
		{"a port named, not numbered", map[string]string{"PARKD_METRICS_ADDR": ":http"}, []string{`PARKD_METRICS_ADDR=":http"`}, nil},
		{"port 0 (nobody could find it)", map[string]string{"PARKD_METRICS_ADDR": "127.0.0.1:0"}, []string{`PARKD_METRICS_ADDR="127.0.0.1:0"`}, nil},
		{"addresses", map[string]string{"PARKD_HTTP_ADDR": "localhost:8081", "PARKD_METRICS_ADDR": ":9090", "PARKD_PPROF_ADDR": "[::1]:6060"}, nil,
			func(c config) bool {
				return c.HTTPAddr == "localhost:8081" && c.MetricsAddr == ":9090" && c.PprofAddr == "[::1]:6060"
			}},
		{"pprof on every interface", map[string]string{"PARKD_PPROF_ADDR": ":6060"}, []string{`PARKD_PPROF_ADDR=":6060": want a loopback address`}, nil},
		{"pprof on a public address", map[string]string{"PARKD_PPROF_ADDR": "0.0.0.0:6060"}, []string{`PARKD_PPROF_ADDR="0.0.0.0:6060"`}, nil},

		{"a database URL with a bad port", map[string]string{"PARKD_DATABASE_URL": "postgres://u:hunter2@db:port/parkd"}, []string{"PARKD_DATABASE_URL: ", "invalid port"}, nil},
		{"a database URL of another kind", map[string]string{"PARKD_DATABASE_URL": "mysql://db/parkd"}, []string{"PARKD_DATABASE_URL: "}, nil},
		{"a database URL with a bad sslmode", map[string]string{"PARKD_DATABASE_URL": "postgres://db/parkd?sslmode=on"}, []string{"PARKD_DATABASE_URL: ", "sslmode"}, nil},
		{"a database URL with an empty port", map[string]string{"PARKD_DATABASE_URL": "postgres://u:hunter2@db:/parkd"}, []string{"PARKD_DATABASE_URL: ", "empty port"}, nil},
		{"a database URL with port 99999", map[string]string{"PARKD_DATABASE_URL": "postgres://u:hunter2@db:99999/parkd"}, []string{"PARKD_DATABASE_URL: ", "invalid port"}, nil},
		{"a database URL with an empty port among its hosts", map[string]string{"PARKD_DATABASE_URL": "postgresql://u@db1:5432,db2:/parkd"}, []string{"PARKD_DATABASE_URL: ", "empty port"}, nil},
		{"a database URL of two hosts", map[string]string{"PARKD_DATABASE_URL": "postgres://u@db1:5432,db2:5433/parkd?target_session_attrs=read-write"}, nil,
			func(c config) bool { return strings.Contains(c.DatabaseURL, "db2:5433") }},
		{"a Redis URL with port 99999", map[string]string{"PARKD_REDIS_URL": "redis://:hunter2@cache:99999/0"}, []string{"PARKD_REDIS_URL: ", `port "99999"`}, nil},
		{"a Redis URL with port 0", map[string]string{"PARKD_REDIS_URL": "redis://cache:0/0"}, []string{"PARKD_REDIS_URL: ", `port "0"`}, nil},
		{"a Redis URL with an empty port", map[string]string{"PARKD_REDIS_URL": "redis://cache:/0"}, []string{"PARKD_REDIS_URL: ", "empty port"}, nil},
		{"a Sentinel with port 0", map[string]string{"PARKD_REDIS_URL": "redis-sentinel://s1:26379,s2:0?master=m"}, []string{"PARKD_REDIS_URL: ", `port "0"`}, nil},
		{"a Redis URL of another scheme", map[string]string{"PARKD_REDIS_URL": "http://cache:6379"}, []string{`PARKD_REDIS_URL: scheme "http"`}, nil},
		{"a Redis URL without a host", map[string]string{"PARKD_REDIS_URL": "redis:///0"}, []string{"PARKD_REDIS_URL: redis:// needs a host:port"}, nil},

		{"registration off by default", nil, nil,
			func(c config) bool { return c.RegistrarURL == "" && c.RegistrarIssuer == "parkd" }},
		{"a registrar", map[string]string{"PARKD_REGISTRAR_URL": "https://npr.example/api/v1", "PARKD_REGISTRAR_TOKEN": "t0k", "PARKD_REGISTRAR_ISSUER": "ams-parkd_2"}, nil,
			func(c config) bool {
				return c.RegistrarURL == "https://npr.example/api/v1" && c.RegistrarToken == "t0k" && c.RegistrarIssuer == "ams-parkd_2"
			}},
		{"a registrar without a token is fine in development", map[string]string{"PARKD_REGISTRAR_URL": "http://127.0.0.1:8090"}, nil,
			func(c config) bool { return c.RegistrarURL == "http://127.0.0.1:8090" && c.RegistrarToken == "" }},
		{"a registrar in production", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": goodSecret, "PARKD_REGISTRAR_URL": "https://npr.example", "PARKD_REGISTRAR_TOKEN": "hunter2"}, nil,
			func(c config) bool { return c.RegistrarToken == "hunter2" }},
		{"a registrar without a token in production", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": goodSecret, "PARKD_REGISTRAR_URL": "https://npr.example"},
			[]string{"PARKD_REGISTRAR_TOKEN is not set"}, nil},
		{"a registrar URL without a scheme", map[string]string{"PARKD_REGISTRAR_URL": "npr.example/api"}, []string{"PARKD_REGISTRAR_URL: "}, nil},
		{"a registrar URL that does not parse", map[string]string{"PARKD_REGISTRAR_URL": "https://u:hunter2@npr.example/%zz"}, []string{"PARKD_REGISTRAR_URL: not a URL"}, nil},
		{"a registrar URL of another scheme", map[string]string{"PARKD_REGISTRAR_URL": "ftp://npr.example"}, []string{`PARKD_REGISTRAR_URL: scheme "ftp": want http or https`}, nil},
		{"a registrar URL without a host", map[string]string{"PARKD_REGISTRAR_URL": "https:///rights"}, []string{"PARKD_REGISTRAR_URL: ", "names no host"}, nil},
		{"a registrar URL with a password", map[string]string{"PARKD_REGISTRAR_URL": "https://u:hunter2@npr.example"}, []string{"PARKD_REGISTRAR_URL: ", "PARKD_REGISTRAR_TOKEN"}, nil},
		{"a registrar URL with port 99999", map[string]string{"PARKD_REGISTRAR_URL": "http://npr.example:99999"}, []string{"PARKD_REGISTRAR_URL: ", `port "99999"`}, nil},
		{"a registrar URL with port 0", map[string]string{"PARKD_REGISTRAR_URL": "http://npr.example:0/"}, []string{"PARKD_REGISTRAR_URL: ", `port "0"`}, nil},
		{"a registrar URL with an empty port", map[string]string{"PARKD_REGISTRAR_URL": "http://npr.example:/"}, []string{"PARKD_REGISTRAR_URL: ", "empty port"}, nil},
		{"a registrar token ending in a newline", map[string]string{"PARKD_REGISTRAR_URL": "https://npr.example", "PARKD_REGISTRAR_TOKEN": "hunter2\n"},
			[]string{"PARKD_REGISTRAR_TOKEN: character 8 ('\\n') cannot be sent in an Authorization header", "RFC 6750"}, nil},
		{"a registrar token with a space", map[string]string{"PARKD_REGISTRAR_URL": "https://npr.example", "PARKD_REGISTRAR_TOKEN": "hunter2 x"},
			[]string{"PARKD_REGISTRAR_TOKEN: character 8 (' ')"}, nil},
		{"a registrar token with a space, in production", map[string]string{"PARKD_ENV": "production", "PARKD_JWT_SECRET": goodSecret,
			"PARKD_REGISTRAR_URL": "https://npr.example", "PARKD_REGISTRAR_TOKEN": "a b"}, []string{"PARKD_REGISTRAR_TOKEN: character 2 (' ')"}, nil},
		{"a registrar token with a quote", map[string]string{"PARKD_REGISTRAR_TOKEN": `"hunter2"`}, []string{"PARKD_REGISTRAR_TOKEN: character 1"}, nil},
		{"a registrar token of base64 with padding", map[string]string{"PARKD_REGISTRAR_URL": "https://npr.example", "PARKD_REGISTRAR_TOKEN": "aHVudGVyMg+/_-.~=="}, nil,
			func(c config) bool { return c.RegistrarToken == "aHVudGVyMg+/_-.~==" }},
		{"an issuer with a space", map[string]string{"PARKD_REGISTRAR_ISSUER": "park d"}, []string{`PARKD_REGISTRAR_ISSUER="park d": want 1-32 of A-Z`}, nil},
		{"an issuer too long", map[string]string{"PARKD_REGISTRAR_ISSUER": strings.Repeat("p", 33)}, []string{"PARKD_REGISTRAR_ISSUER="}, nil},
		{"an issuer with a slash", map[string]string{"PARKD_REGISTRAR_ISSUER": "a/b"}, []string{`PARKD_REGISTRAR_ISSUER="a/b"`}, nil},

		{"every bad variable at once", map[string]string{"PARKD_ENV": "prod", "PARKD_DB_MAX_CONNS": "x", "PARKD_LOG_LEVEL": "loud"},
			[]string{"PARKD_ENV", "PARKD_DB_MAX_CONNS", "PARKD_LOG_LEVEL"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			setEnv(t, c.env)
			cfg, err := loadConfig()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !c.ok(cfg) {
					t.Fatalf("read as %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %+v", cfg)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%q does not say %q", err, w)
				}
			}
			// A secret or a password is never repeated in a message.
			for _, secret := range []string{"hunter2", goodSecret[1:]} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("%q repeats a secret", err)
				}
			}
		})
	}
}

// runParkd runs `parkd args...` (this test binary, see TestMain) to its end and
// returns its stdout, its stderr and its exit code.
func runParkd(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := selfCommand(args...)
	cmd.Env = append(cmd.Env, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return stdout.String(), stderr.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return stdout.String(), stderr.String(), 0
}

// dialCounter is a TCP port that counts who connects to it: a stand-in for
// Postgres and Redis that tells whether a command tried to reach them.
func dialCounter(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var n atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), &n
}

// Every command checks PARKD_ENV and, in production, the secret before anything
// else: it connects nowhere, signs nothing, reads no file, and exits 2 naming
// the variable.
func TestEveryCommandChecksTheConfigurationFirst(t *testing.T) {
	file := t.TempDir() + "/extract.csv"
	if err := os.WriteFile(file, []byte("resident_id,address_id\nR1,A1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	commands := [][]string{
		{"serve"}, {"intake"}, {"worker"}, {"scheduler"}, {"monitor"}, {"migrate"}, {"migrate", "up"}, {"migrate", "status"}, {"check"},
		{"seed", file}, {"import", "registrations", file}, {"token", "--role", "operator", "--sub", "x"},
	}
	for _, bad := range []struct{ env, want string }{
		{"PARKD_ENV=Production", `PARKD_ENV="Production"`},
		{"PARKD_ENV=prod", `PARKD_ENV="prod"`},
		{"PARKD_ENV=production PARKD_JWT_SECRET=a", "PARKD_JWT_SECRET is too short"},
		{"PARKD_ENV=production", "PARKD_JWT_SECRET is not set"},
	} {
		for _, args := range commands {
			t.Run(bad.env+" "+strings.ReplaceAll(strings.Join(args, " "), file, "FILE"), func(t *testing.T) {
				t.Parallel()
				addr, dials := dialCounter(t) // each its own: they run at once
				env := append(strings.Fields(bad.env), "PARKD_DATABASE_URL=postgres://postgres@"+addr+"/parkd?sslmode=disable",
					"PARKD_REDIS_URL=redis://"+addr+"/0", "PARKD_STARTUP_WAIT=1s", "PARKD_HTTP_ADDR=127.0.0.1:1")
				if !strings.Contains(bad.env, "PARKD_JWT_SECRET") {
					env = append(env, "PARKD_JWT_SECRET=")
				}
				stdout, stderr, code := runParkd(t, env, args...)
				if code != 2 || !strings.Contains(stderr, bad.want) || stdout != "" {
					t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 naming %s", code, stdout, tail(stderr, 10), bad.want)
				}
				if n := dials.Load(); n > 0 {
					t.Errorf("connected %d times before refusing", n)
				}
			})
		}
	}
}
