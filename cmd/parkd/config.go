package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// config is parkd's configuration, read from the environment; every setting has
// a default that works on a developer's machine.
type config struct {
	Env         string
	DatabaseURL string
	RedisURL    string
	HTTPAddr    string
	JWTSecret   string
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
	// MonitorReadOnly is asynqmon's view-only mode.
	MonitorReadOnly bool
	// MetricsAddr is where a role without an HTTP port (worker, scheduler)
	// serves /metrics, /healthz and /readyz; "" for nowhere.
	MetricsAddr string
	// PprofAddr is where to serve net/http/pprof ("" for nowhere): a
	// loopback address, as profiles show internals.
	PprofAddr string
	LogLevel  slog.Level
}

const devJWTSecret = "parkd-DEVELOPMENT-ONLY-secret-do-not-use-in-production"

func loadConfig() (config, error) {
	c := config{
		Env:         env("PARKD_ENV", "development"),
		DatabaseURL: env("PARKD_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/parkd?sslmode=disable"),
		RedisURL:    env("PARKD_REDIS_URL", "redis://127.0.0.1:6379/0"),
		HTTPAddr:    env("PARKD_HTTP_ADDR", ":8080"),
		JWTSecret:   env("PARKD_JWT_SECRET", devJWTSecret),
		MetricsAddr: env("PARKD_METRICS_ADDR", ""),
		PprofAddr:   env("PARKD_PPROF_ADDR", ""),
	}
	var err error
	if c.DBMaxConns, err = envInt("PARKD_DB_MAX_CONNS", 25); err != nil {
		return c, err
	}
	if c.Concurrency, err = envInt("PARKD_WORKER_CONCURRENCY", 64); err != nil {
		return c, err
	}
	if c.SettleBatch, err = envInt("PARKD_SETTLE_BATCH", 64); err != nil {
		return c, err
	}
	if c.SettleCommitters, err = envInt("PARKD_SETTLE_COMMITTERS", 4); err != nil {
		return c, err
	}
	if c.TaskCheck, err = envDuration("PARKD_TASK_CHECK_INTERVAL", 10*time.Millisecond); err != nil {
		return c, err
	}
	if c.DelayedCheck, err = envDuration("PARKD_DELAYED_TASK_CHECK_INTERVAL", 500*time.Millisecond); err != nil {
		return c, err
	}
	if c.StartupWait, err = envDuration("PARKD_STARTUP_WAIT", 60*time.Second); err != nil {
		return c, err
	}
	if c.DBConnMaxLifetime, err = envDuration("PARKD_DB_CONN_MAX_LIFETIME", 0); err != nil {
		return c, err
	}
	if v := env("PARKD_MONITOR_READONLY", "false"); v != "" {
		if c.MonitorReadOnly, err = strconv.ParseBool(v); err != nil {
			return c, fmt.Errorf("PARKD_MONITOR_READONLY=%q: want true or false", v)
		}
	}
	if err := c.LogLevel.UnmarshalText([]byte(env("PARKD_LOG_LEVEL", "info"))); err != nil {
		return c, fmt.Errorf("PARKD_LOG_LEVEL: want debug, info, warn or error: %w", err)
	}
	if c.Env == "production" && c.JWTSecret == devJWTSecret {
		return c, fmt.Errorf("PARKD_JWT_SECRET is the development default, refused with PARKD_ENV=production")
	}
	return c, nil
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) (int, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
	}
	return n, nil
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 500ms", name, v)
	}
	return d, nil
}
