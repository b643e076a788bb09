package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"

	"github.com/parkd/parkd/hostport"
	"github.com/parkd/parkd/identity"
	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/redisurl"
	"github.com/parkd/parkd/registrar"
	"github.com/parkd/parkd/worker"
)

// config is parkd's configuration, read from the environment; every setting has
// a default that works on a developer's machine.
type config struct {
	Env         string
	DatabaseURL string
	RedisURL    string
	// Redis is RedisURL parsed, once, at start.
	Redis     asynq.RedisConnOpt
	HTTPAddr  string
	JWTSecret string
	// JWKSURL is an identity provider's key set (RS256/ES256 tokens, beside
	// HS256); JWTIssuer and JWTAudience, when set, must be every token's iss
	// and among its aud.
	JWKSURL     string
	JWTIssuer   string
	JWTAudience string
	// RateLimit and RateBurst are the intake's token bucket per subject.
	RateLimit   int
	RateBurst   int
	DBMaxConns  int
	Concurrency int
	// SettleBatch caps how many requests share one transaction (1: each its
	// own); SettleCommitters is how many such transactions run at once.
	SettleBatch      int
	SettleCommitters int
	TaskCheck        time.Duration
	DelayedCheck     time.Duration
	StartupWait      time.Duration
	// DBConnMaxLifetime closes pooled connections older than this (0: never), so
	// that a Postgres failover or a PgBouncer restart is followed promptly.
	DBConnMaxLifetime time.Duration
	// PlateRetention is how long a session's plate is kept after the session
	// ended (DOMAIN.md "Privacy"); at least a minute.
	PlateRetention time.Duration
	// MonitorReadOnly is asynqmon's view-only mode.
	MonitorReadOnly bool
	// MetricsAddr is where /metrics, /healthz and /readyz are served, and
	// then not on HTTPAddr; "" for HTTPAddr (the intake, the monitor) or
	// nowhere (a worker or a scheduler alone).
	MetricsAddr string
	// PprofAddr is where to serve net/http/pprof ("" for nowhere): a
	// loopback address, as profiles show internals.
	PprofAddr string
	LogLevel  slog.Level
	// RegistrarURL is the national parking register's base URL ("":
	// registration off); RegistrarToken its bearer token; RegistrarIssuer the
	// first part of every right ID (README "Pointing parkd at a register").
	RegistrarURL    string
	RegistrarToken  string
	RegistrarIssuer string
}

// issuerRE is the form of PARKD_REGISTRAR_ISSUER: it starts every right ID
// ({issuer}-{session_id}), which goes into a URL path.
var issuerRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

const devJWTSecret = "parkd-DEVELOPMENT-ONLY-secret-do-not-use-in-production"

// minProductionSecret is the shortest HS256 key production accepts: RFC 7518
// (3.2) wants a key at least as long as the hash, 256 bits.
const minProductionSecret = 32

// loadConfig reads and checks every variable before the command does anything
// else, so that no command connects anywhere, or runs on the public development
// secret, with a configuration it would misread. Every invalid variable is
// named at once, each with the form it accepts. A variable set to "" counts as
// unset (its default), except PARKD_ENV: an empty one is most likely a
// production value that did not render, and must not become development.
func loadConfig() (config, error) {
	e := &envReader{}
	c := config{
		Env:               e.oneOf("PARKD_ENV", "development", "development", "production"),
		JWTSecret:         e.str("PARKD_JWT_SECRET", devJWTSecret),
		JWKSURL:           e.str("PARKD_JWKS_URL", ""),
		JWTIssuer:         e.str("PARKD_JWT_ISSUER", ""),
		JWTAudience:       e.str("PARKD_JWT_AUDIENCE", ""),
		DatabaseURL:       e.str("PARKD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/parkd?sslmode=disable"),
		RedisURL:          e.str("PARKD_REDIS_URL", "redis://127.0.0.1:6379/0"),
		HTTPAddr:          e.addr("PARKD_HTTP_ADDR", ":8080"),
		MetricsAddr:       e.addr("PARKD_METRICS_ADDR", ""),
		PprofAddr:         e.addr("PARKD_PPROF_ADDR", ""),
		RateLimit:         e.positiveInt("PARKD_RATE_LIMIT", intake.DefaultRate),
		RateBurst:         e.positiveInt("PARKD_RATE_BURST", intake.DefaultBurst),
		DBMaxConns:        e.positiveInt("PARKD_DB_MAX_CONNS", 25),
		Concurrency:       e.positiveInt("PARKD_WORKER_CONCURRENCY", 64),
		SettleBatch:       e.positiveInt("PARKD_SETTLE_BATCH", 64),
		SettleCommitters:  e.positiveInt("PARKD_SETTLE_COMMITTERS", 2),
		TaskCheck:         e.duration("PARKD_TASK_CHECK_INTERVAL", worker.DefaultTaskCheckInterval),
		DelayedCheck:      e.duration("PARKD_DELAYED_TASK_CHECK_INTERVAL", 500*time.Millisecond),
		StartupWait:       e.duration("PARKD_STARTUP_WAIT", 60*time.Second),
		DBConnMaxLifetime: e.duration("PARKD_DB_CONN_MAX_LIFETIME", 0),
		PlateRetention:    e.atLeast("PARKD_PLATE_RETENTION", worker.DefaultPlateRetention, time.Minute),
		MonitorReadOnly:   e.oneOf("PARKD_MONITOR_READONLY", "false", "false", "true") == "true",
		RegistrarURL:      e.str("PARKD_REGISTRAR_URL", ""),
		RegistrarToken:    e.str("PARKD_REGISTRAR_TOKEN", ""),
		RegistrarIssuer:   e.str("PARKD_REGISTRAR_ISSUER", worker.DefaultRegistrarIssuer),
	}
	if c.Env == "production" {
		switch {
		case e.str("PARKD_JWT_SECRET", "") == "":
			e.fail("PARKD_JWT_SECRET is not set: production needs a secret of at least %d bytes (e.g. openssl rand -hex 32)", minProductionSecret)
		case c.JWTSecret == devJWTSecret:
			e.fail("PARKD_JWT_SECRET is the development default, which is public: production needs a secret of its own")
		case len(c.JWTSecret) < minProductionSecret:
			// Never the value: it is a secret, however bad.
			e.fail("PARKD_JWT_SECRET is too short for production: %d bytes, at least %d needed (e.g. openssl rand -hex 32)", len(c.JWTSecret), minProductionSecret)
		}
	}
	if c.JWKSURL != "" {
		if err := identity.CheckJWKSURL(c.JWKSURL); err != nil {
			e.fail("PARKD_JWKS_URL: %v", err)
		}
	} else if c.JWTIssuer != "" || c.JWTAudience != "" {
		e.fail("PARKD_JWT_ISSUER and PARKD_JWT_AUDIENCE are checked on the identity provider's tokens: set PARKD_JWKS_URL too")
	}
	if _, err := pgx.ParseConfig(c.DatabaseURL); err != nil {
		e.fail("PARKD_DATABASE_URL: %v: want postgres://USER[:PASSWORD]@HOST:PORT/DATABASE[?sslmode=...]", err)
	} else if err := databasePorts(c.DatabaseURL); err != nil {
		e.fail("PARKD_DATABASE_URL: %v: want postgres://USER[:PASSWORD]@HOST:PORT/DATABASE[?sslmode=...]", err)
	}
	var err error
	if c.Redis, err = redisurl.Parse(c.RedisURL); err != nil {
		e.fail("PARKD_REDIS_URL: %v", err)
	}
	if c.RegistrarURL != "" {
		if err := registrar.CheckURL(c.RegistrarURL); err != nil {
			e.fail("PARKD_REGISTRAR_URL: %v", err)
		}
		if c.Env == "production" && c.RegistrarToken == "" {
			e.fail("PARKD_REGISTRAR_TOKEN is not set: production sends rights to PARKD_REGISTRAR_URL only with the register's token")
		}
	}
	if c.RegistrarToken != "" {
		// Never the value: it is a secret.
		if err := registrar.CheckToken(c.RegistrarToken); err != nil {
			e.fail("PARKD_REGISTRAR_TOKEN: %v", err)
		}
	}
	if !issuerRE.MatchString(c.RegistrarIssuer) {
		e.fail("PARKD_REGISTRAR_ISSUER=%q: want 1-32 of A-Z, a-z, 0-9, _ and -, such as %s", c.RegistrarIssuer, worker.DefaultRegistrarIssuer)
	}
	if c.PprofAddr != "" && !loopback(c.PprofAddr) {
		e.fail("PARKD_PPROF_ADDR=%q: want a loopback address such as 127.0.0.1:6060 (profiles show internals)", c.PprofAddr)
	}
	switch v := e.oneOf("PARKD_LOG_LEVEL", "info", "debug", "info", "warn", "error"); v {
	case "debug":
		c.LogLevel = slog.LevelDebug
	case "warn":
		c.LogLevel = slog.LevelWarn
	case "error":
		c.LogLevel = slog.LevelError
	default:
		c.LogLevel = slog.LevelInfo
	}
	return c, errors.Join(e.errs...)
}

// envReader reads variables and keeps every problem, so that one start names
// every bad variable, not only the first.
type envReader struct{ errs []error }

func (e *envReader) fail(format string, args ...any) {
	e.errs = append(e.errs, fmt.Errorf(format, args...))
}

// str is the variable, or def when it is unset or empty.
func (e *envReader) str(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

// oneOf is the variable, which must be exactly one of the allowed words: no
// case variants or abbreviations, which would each be a second spelling to
// document and a typo accepted. PARKD_ENV is refused even when empty.
func (e *envReader) oneOf(name, def string, allowed ...string) string {
	v, ok := os.LookupEnv(name)
	if !ok || (v == "" && name != "PARKD_ENV") {
		return def
	}
	if !slices.Contains(allowed, v) {
		e.fail("%s=%q: want %s", name, v, strings.Join(allowed, " or "))
		return def
	}
	return v
}

func (e *envReader) positiveInt(name string, def int) int {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		e.fail("%s=%q: want a positive whole number such as %d", name, v, def)
		return def
	}
	return n
}

func (e *envReader) duration(name string, def time.Duration) time.Duration {
	v := e.str(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		e.fail("%s=%q: want a positive Go duration with its unit, such as 500ms, 30s or 1h", name, v)
		return def
	}
	return d
}

// atLeast is a duration of at least least: a shorter one is a mistake of
// unit (PARKD_PLATE_RETENTION=2184 read as nanoseconds would erase plates as
// soon as sessions end).
func (e *envReader) atLeast(name string, def, least time.Duration) time.Duration {
	v := e.str(name, "")
	d := e.duration(name, def)
	if v != "" && d < least && d > 0 {
		e.fail("%s=%q: want a Go duration of at least %s, such as 2184h (13 weeks)", name, v, least)
		return def
	}
	return d
}

// addr is a listen address: HOST:PORT or :PORT, with a port number, which is
// otherwise found wrong only when the server starts listening, long after
// the other roles started, or, for pprof, never (it only logs).
func (e *envReader) addr(name, def string) string {
	v := e.str(name, def)
	if v == "" {
		return v
	}
	_, port, err := net.SplitHostPort(v)
	if err != nil || hostport.CheckPort(port) != nil {
		e.fail("%s=%q: want HOST:PORT or :PORT with a port from 1 to 65535, such as :8080", name, v)
		return def
	}
	return v
}

// databasePorts checks the ports of a postgres:// URL's hosts (one, or a
// comma list): pgx refuses one out of range but takes an empty one after the
// colon (postgres://u@db:/parkd) as 5432. A connection string of key=value
// words is pgx's alone to check.
func databasePorts(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil
	}
	for _, h := range strings.Split(u.Host, ",") {
		if err := hostport.CheckHost(h); err != nil {
			return err
		}
	}
	return nil
}

func loopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// outboundTaskCheck is how long the webhook and registrar servers sleep when
// idle: PARKD_TASK_CHECK_INTERVAL, but never under outboundTaskCheckFloor.
// A request waits for the main server's look at its queue (a start's
// latency at half load was a 10 ms look away: issue 16), a delivery or a
// registration for seconds anyway; each server that looks every few
// milliseconds costs an idle process a few per cent of a core.
func (c *config) outboundTaskCheck() time.Duration {
	return max(c.TaskCheck, outboundTaskCheckFloor)
}

const outboundTaskCheckFloor = 10 * time.Millisecond
