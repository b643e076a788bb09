package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Registering sessions' rights with the national parking register
// (DOMAIN.md "Registration", README "Pointing parkd at a register"). Every
// change of a registered session bumps its right_version and queues a
// right:register task for that version; the handler sends the session's state
// as it is when the task runs, so only the newest version ever needs to
// arrive.

// DefaultRegistrarIssuer is the issuer of parkd's rights when
// PARKD_REGISTRAR_ISSUER is unset: the first part of every right ID.
const DefaultRegistrarIssuer = "parkd"

// RightID is a session's right ID at the registrar, {issuer}-{session_id}:
// opaque and stable per session, never the plate (README "Pointing parkd at a
// register").
func RightID(issuer, sessionID string) string { return issuer + "-" + sessionID }

// What became of one right:register task, as an Observer is told.
const (
	RegisterAcknowledged = "acknowledged" // 200, 201 or 204
	RegisterSuperseded   = "superseded"   // 409: the registrar holds a newer version (acknowledged too)
	RegisterRejected     = "rejected"     // refused (a 4xx that judges the right), or not sendable (plate erased)
	RegisterRetried      = "retried"      // 5xx, 408, 429, a timeout, unreachable, or no registrar in this process
	RegisterSkipped      = "skipped"      // nothing to send: a newer version is queued, or this one was answered
)

// Retry policy of the registrar queue. A passing 5xx must still let a start be
// registered within the p99 goal of 5 s (DOMAIN.md "Registration"), so the
// first retries come after one or two seconds, not asynq's default 15-45 s;
// an outage is then tried about once a minute until the registrar acknowledges
// (jobs.RegisterMaxRetry), and the reconciler requeues what Redis lost.
const (
	RegisterFirstRetry = 2 * time.Second // the first retry comes after 1-2 s
	RegisterMaxDelay   = time.Minute
)

// RegisterRetryDelay is the registrar queue's backoff: retry n (0 for the
// first) waits between half and all of min(2 s × 2^n, 60 s): 1-2 s, 2-4 s,
// 4-8 s … 30-60 s. The jitter spreads the tasks one outage failed together.
func RegisterRetryDelay(n int, _ error, _ *asynq.Task) time.Duration {
	d := min(RegisterFirstRetry<<min(max(n, 0), 6), RegisterMaxDelay)
	return d/2 + rand.N(d/2+1)
}

// RightRegister handles right:register: when the task's version is still the
// session's newest and the registrar has not acknowledged it, it sends the
// session's right as it is now and records the answer. A refusal is recorded
// on the session (registration.status rejected) and the task archived, not
// retried; anything else that failed is retried (RegisterRetryDelay).
//
// A version already refused is sent again: only an operator's run of the
// archived task (asynqmon, queue registrar, right:{session}:{version}) gets
// here with one, after fixing what the registrar refused (the zone's codes,
// the register's own data), since the reconciler requeues pending rights
// only. Acknowledged, the session shows registration registered; refused
// again, rejected with the new reason.
func (h *Handlers) RightRegister(ctx context.Context, t *asynq.Task) error {
	var p jobs.RightRegister
	if err := decode(t, &p); err != nil {
		return err
	}
	sid, ok := repo.ParseID(p.SessionID)
	if !ok || p.Version < 1 {
		return fmt.Errorf("right:register: session_id %q, version %d: %w", p.SessionID, p.Version, asynq.SkipRetry)
	}
	s, err := h.session(ctx, sid)
	if errors.Is(err, repo.ErrNotFound) {
		return fmt.Errorf("right:register: %w: %w", err, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("right:register: read session %d: %w", sid, err)
	}
	log := h.logger(ctx).With("session_id", p.SessionID, "version", p.Version)
	if why := registerNeedless(s, p.Version); why != "" {
		h.observer().RightRegistered(RegisterSkipped, 0)
		log.Debug("right not sent", "why", why)
		return nil
	}
	if h.Registrar == nil {
		h.observer().RightRegistered(RegisterRetried, 0)
		return errors.New("registration is off in this process (PARKD_REGISTRAR_URL is not set): retried until a worker with a registrar takes it")
	}
	// The version sent is the row's, which is the task's (a smaller task
	// version was skipped above): the state read is that version's.
	version := s.RightVersion
	if s.Plate == "" {
		// The plate retention erased the plate before the registrar took the
		// right (it was down for 13 weeks): a right without its plate means
		// nothing to enforcement, and the plate is gone for good.
		return h.rejectRight(ctx, log, s, version,
			"not sent: the plate was erased by the plate retention before the registrar acknowledged the right")
	}
	err = h.Registrar.Register(ctx, h.rightOf(s))
	var refusal *Refusal
	switch {
	case err == nil || errors.Is(err, ErrSuperseded):
		ack, uerr := h.acknowledgeRight(ctx, sid, version, h.now())
		if uerr != nil {
			// Sent again on the retry: the registrar keeps the highest version,
			// so a repeat changes nothing there.
			return fmt.Errorf("right:register: record acknowledgement of session %d version %d: %w", sid, version, uerr)
		}
		outcome := RegisterAcknowledged
		if err != nil {
			outcome = RegisterSuperseded
		}
		var lag time.Duration
		if ack.Advanced && ack.ChangedAt != nil {
			lag = max(h.now().Sub(*ack.ChangedAt), 0)
		}
		h.observer().RightRegistered(outcome, lag)
		return nil
	case errors.As(err, &refusal):
		if rerr := h.rejectRight(ctx, log, s, version, fmt.Sprintf("registrar answered %d: %s", refusal.Status, refusal.Message)); rerr != nil {
			return rerr
		}
		// Archived where operators look (asynqmon), beside the session's
		// registration.status rejected: another try would be refused alike.
		return fmt.Errorf("right:register: %w: %w", err, asynq.SkipRetry)
	default:
		h.observer().RightRegistered(RegisterRetried, 0)
		return fmt.Errorf("right:register: session %d version %d: %w", sid, version, err)
	}
}

// registerNeedless says why a right:register task of version has nothing to
// send, or "" when it has. A refused version has: see RightRegister.
func registerNeedless(s *repo.Session, version int) string {
	switch {
	case s.Registration == nil || s.RightVersion == 0:
		return "the session is not registered"
	case version < s.RightVersion:
		return "a newer version is queued"
	case s.RightRegisteredVersion >= s.RightVersion:
		return "already acknowledged"
	}
	return ""
}

// rejectRight records that version of the session's right was refused for
// good, with the reason shown to operators (`parkd check`).
func (h *Handlers) rejectRight(ctx context.Context, log *slog.Logger, s *repo.Session, version int, reason string) error {
	if _, err := repo.RejectRight(ctx, h.Store.DB, s.ID, version, reason); err != nil {
		return fmt.Errorf("right:register: record refusal of session %d version %d: %w", s.ID, version, err)
	}
	h.observer().RightRegistered(RegisterRejected, 0)
	log.Warn("right refused: the session shows registration rejected", "reason", reason)
	return nil
}

// rightOf is the session's right as the registrar gets it, from the session's
// current row: active with its planned end while open, ended with its actual
// end once stopped, cancelled (ending at its start) once cancelled.
func (h *Handlers) rightOf(s *repo.Session) Right {
	status, end := RightActive, s.PlannedEndAt
	switch s.State {
	case domain.StateStopped:
		status = RightEnded
	case domain.StateCancelled:
		status = RightCancelled
	}
	if s.State != domain.StateOpen && s.EndAt != nil {
		end = *s.EndAt
	}
	issuer := h.RegistrarIssuer
	if issuer == "" {
		issuer = DefaultRegistrarIssuer
	}
	return Right{
		RightID: RightID(issuer, repo.FormatID(s.ID)), Version: s.RightVersion, Issuer: issuer,
		AreaManagerID: s.Registration.AreaManagerID, AreaID: s.Registration.AreaID, UsageID: s.Registration.UsageID,
		Plate: s.Plate, Country: s.Country, StartAt: s.StartAt.UTC(), EndAt: end.UTC(), Status: status,
	}
}
