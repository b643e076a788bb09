// Package startup waits for the services a parkd process needs (Postgres,
// Redis) while they come up, and stops waiting at once when one of them answers
// with a refusal that no amount of waiting cures: a wrong password, a user or
// database that does not exist, a certificate that is not trusted. A process
// that reports such a refusal only after PARKD_STARTUP_WAIT, as "did not
// answer", sends the operator looking at the network instead of the setting.
package startup

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"time"
)

// Service is one thing a process waits for.
type Service struct {
	Name string // "postgres", "redis"
	// URL is where the service is; messages show it without its credentials.
	URL string
	// Setting is the configuration that names the service
	// (PARKD_DATABASE_URL): what a refusal's fix says to correct.
	Setting string
	Ping    func(context.Context) error
}

// RefusedError is a service that answered, and refused parkd for a reason that
// waiting does not change.
type RefusedError struct {
	Service, Where string
	Err            error
	// Fix says what to correct, naming the setting.
	Fix string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%s at %s refused the connection (not retried): %v: %s", e.Service, e.Where, e.Err, e.Fix)
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Wait pings s until it answers, for at most limit, logging what it waits for,
// so that a process started with its dependencies (compose, a Kubernetes rollout)
// does not crash in a loop while they start. A refusal (see Refusal) ends the
// wait at once with a *RefusedError; anything else (a refused connection, a
// timeout, a name not yet in DNS, a server still starting) is tried again, with
// a backoff of 250 ms doubling to 5 s, and a last try at the deadline.
func Wait(ctx context.Context, log *slog.Logger, s Service, limit time.Duration) error {
	where := Redact(s.URL)
	deadline := time.Now().Add(limit)
	for wait := 250 * time.Millisecond; ; wait = min(wait*2, 5*time.Second) {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := s.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		if fix, ok := Refusal(err, s.Setting); ok {
			return &RefusedError{Service: s.Name, Where: where, Err: err, Fix: fix}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s at %s did not answer within %s: %w", s.Name, where, limit, err)
		}
		log.Warn("waiting for "+s.Name, "at", where, "err", err.Error())
		select {
		case <-ctx.Done():
		case <-time.After(min(wait, max(time.Until(deadline), time.Millisecond))):
		}
	}
}

// Redact hides the credentials of a connection URL: the user information and a
// password= parameter (libpq's, and redis-cluster's).
func Redact(u string) string {
	if i := strings.IndexByte(u, '@'); i > 0 {
		if j := strings.Index(u, "://"); j > 0 && j < i {
			u = u[:j+3] + "…@" + u[i+1:]
		}
	}
	return passwordParam.ReplaceAllString(u, "${1}password=…")
}

var passwordParam = regexp.MustCompile(`([?&])password=[^&#]*`)
