package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// SessionStart handles session:start.
func (h *Handlers) SessionStart(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionStart
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypeSessionStart, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		permit, sessionID, err := lockPermitForStart(ctx, tx, p.PermitID)
		if err != nil {
			return decision{}, err
		}
		if err := h.currentYear(ctx, tx, permit, now); err != nil {
			return decision{}, err
		}
		zone, err := h.Store.ZoneOf(ctx, tx, permit)
		if err != nil {
			return decision{}, err
		}
		req := domain.StartRequest{
			Plate: p.Plate, Country: p.Country, StartAt: instantPtr(p.StartAt), EndAt: instantPtr(p.EndAt), ReceivedAt: receivedAt(p.ReceivedAt, now),
		}
		if req.PermitSessions, err = repo.PermitIntervals(ctx, tx, zone, permit.ID, req.Window(zone), 0); err != nil {
			return decision{}, err
		}
		plan, err := domain.PlanSession(zone, permit.State(), req)
		if err != nil {
			return decision{}, err
		}
		// The session and its reservation are written with the outcome (one
		// statement), where the plate's exclusion constraint may yet refuse
		// the session: then the plate is parked.
		s, booking := repo.StartSession(permit, sessionID, plan, h.registration(zone), p.RequestID, now)
		rid := p.RequestID
		return decision{
			refused: func(err error) error {
				if errors.Is(err, repo.ErrPlateParked) {
					return domain.PlateAlreadyParked(plan.Plate, permit.Zone)
				}
				return nil
			},
			result:  s.View(now),
			booking: &booking,
			events:  []*repo.Event{repo.SessionEvent(jobs.EventSessionStarted, s, now, &rid, "")},
			outbox:  tasks(h.soon(now, autoStopOutbox(s)), h.soon(now, endingOutbox(zone, s, req.ReceivedAt)), rightOutbox(s, now)),
		}, nil
	})
}

// registration is what a session started in zone z is registered under: the
// zone's register codes, when it has them and a registrar is configured; nil
// (not registered) otherwise.
func (h *Handlers) registration(z *domain.Zone) *domain.ZoneRegistration {
	if h.Registrar == nil {
		return nil
	}
	return z.Registration
}

// SessionStop handles session:stop.
func (h *Handlers) SessionStop(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionStop
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypeSessionStop, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		s, permit, err := lockSession(ctx, tx, p.SessionID)
		if err != nil {
			return decision{}, err
		}
		received := receivedAt(p.ReceivedAt, now)
		plan, err := domain.PlanStop(s.DomainState(), domain.StopRequest{At: instantPtr(p.At), ReceivedAt: received}, now)
		if err != nil {
			return decision{}, err
		}
		if err := h.currentYear(ctx, tx, permit, chargeInstant(plan, now)); err != nil {
			return decision{}, err
		}
		if plan.Kind == domain.StopNothing {
			// Already settled, or running on to its planned end, where its
			// auto-stop settles it: nothing changes, and its tasks stay.
			return decision{result: s.View(now)}, nil
		}
		rid := p.RequestID
		// The auto-stop and ending notice scheduled for the planned end so far
		// are obsolete after any stop: settled, cancelled, or shortened (which
		// schedules its own).
		obsolete := h.obsoleteTasks(s, now)
		var booking *repo.Booking
		if plan.Kind == domain.StopSettle || plan.Kind == domain.StopCancel {
			// Written with the outcome (one statement).
			b := repo.Settle(permit, s, plan, &rid, now)
			booking = &b
		} else if err := repo.ApplyStop(ctx, tx, permit, s, plan, &rid, now); err != nil {
			return decision{}, err
		}
		d := decision{result: s.View(now), obsolete: obsolete, outbox: tasks(rightOutbox(s, now)), booking: booking}
		switch plan.Kind {
		case domain.StopShorten:
			zone, err := h.Store.ZoneOf(ctx, tx, permit)
			if err != nil {
				return decision{}, err
			}
			d.events = []*repo.Event{repo.SessionEvent(jobs.EventSessionChanged, s, now, &rid, "")}
			d.outbox = append(d.outbox, tasks(h.soon(now, autoStopOutbox(s)), h.soon(now, endingOutbox(zone, s, received)))...)
		case domain.StopSettle:
			d.settled = []string{SettledStop}
			d.events = []*repo.Event{repo.SessionStopEvent(s, now, &rid, jobs.StopReasonManual)}
		case domain.StopCancel:
			d.settled = []string{SettledCancel}
			d.events = []*repo.Event{repo.SessionStopEvent(s, now, &rid, "")}
		}
		return d, nil
	})
}

// SessionChange handles session:change: a new end, a corrected plate, or both
// (domain.PlanChange). A moved end moves the reservation (a reserve or release
// entry for the difference) and the auto-stop: the new end's is handed to the
// outbox, the old end's is deleted from Redis, and should it run anyway it
// finds another planned end and does nothing (SessionAutoStop).
func (h *Handlers) SessionChange(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionChange
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypeSessionChange, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		s, permit, err := lockSession(ctx, tx, p.SessionID)
		if err != nil {
			return decision{}, err
		}
		if err := h.currentYear(ctx, tx, permit, now); err != nil {
			return decision{}, err
		}
		zone, err := h.Store.ZoneOf(ctx, tx, permit)
		if err != nil {
			return decision{}, err
		}
		granted := domain.GrantedSession{SessionState: s.DomainState(), Plate: s.Plate, Country: s.Country}
		req := domain.ChangeRequest{EndAt: instantPtr(p.EndAt), Plate: p.Plate, ReceivedAt: receivedAt(p.ReceivedAt, now)}
		if req.PermitSessions, err = repo.PermitIntervals(ctx, tx, zone, permit.ID, granted.Window(zone), s.ID); err != nil {
			return decision{}, err
		}
		plan, err := domain.PlanChange(zone, permit.State(), granted, req)
		if err != nil {
			return decision{}, err
		}
		obsolete := h.obsoleteTasks(s, now)
		err = repo.ApplyChange(ctx, tx, permit, s, plan, p.RequestID, now)
		if errors.Is(err, repo.ErrPlateParked) {
			return decision{}, domain.PlateAlreadyParked(plan.Plate, permit.Zone)
		}
		if err != nil {
			return decision{}, err
		}
		d := decision{result: s.View(now)}
		if !plan.EndChanged && !plan.PlateChanged {
			return d, nil // nothing changed: no event, no new version
		}
		rid := p.RequestID
		d.events = []*repo.Event{repo.SessionEvent(jobs.EventSessionChanged, s, now, &rid, "")}
		d.outbox = tasks(rightOutbox(s, now))
		if plan.EndChanged {
			d.outbox = append(d.outbox, tasks(h.soon(now, autoStopOutbox(s)), h.soon(now, endingOutbox(zone, s, req.ReceivedAt)))...)
			d.obsolete = obsolete
		}
		return d, nil
	})
}

// lockSession locks the session a request names and its permit (the permit
// first, as every writer does); an ID that names no session is not_found.
func lockSession(ctx context.Context, tx repo.Tx, id string) (*repo.Session, *repo.Permit, error) {
	sid, ok := repo.ParseID(id)
	if !ok {
		return nil, nil, domain.Reject(domain.CodeNotFound, "session %q not found", id)
	}
	s, p, err := repo.LockSessionAndPermit(ctx, tx, sid)
	if err != nil {
		return nil, nil, notFoundRule(err, "session", id)
	}
	return s, p, nil
}

// SessionAutoStop handles session:autostop: the session is settled at its planned
// end, however late the task runs.
func (h *Handlers) SessionAutoStop(ctx context.Context, t *asynq.Task) error {
	var p jobs.SessionAutoStop
	if err := decode(t, &p); err != nil {
		return err
	}
	sid, ok := repo.ParseID(p.SessionID)
	if !ok {
		return fmt.Errorf("session:autostop: session_id %q: %w", p.SessionID, asynq.SkipRetry)
	}
	_, err := h.autoStop(ctx, sid, p.PlannedEndAt, SettledAutoStop)
	if errors.Is(err, repo.ErrNotFound) {
		return fmt.Errorf("session:autostop: %w: %w", err, asynq.SkipRetry)
	}
	return err
}

var errNotDue = errors.New("auto-stop came before the planned end")

// autoStop settles one session at its planned end if it is due, and reports
// whether it did; how says who settled it (the auto-stop task or the
// reconciler). scheduledFor is the planned end an auto-stop task was scheduled
// for (nil: whatever the end is now, as the reconciler asks): a session whose
// end a change has moved since is left alone, its new end has its own task.
func (h *Handlers) autoStop(ctx context.Context, sessionID int64, scheduledFor *time.Time, how string) (bool, error) {
	var plan domain.StopPlan
	var lateness time.Duration
	var outbox []*repo.OutboxTask
	err := h.inTx(ctx, func(ctx context.Context, tx repo.Tx) error {
		plan, lateness, outbox = domain.StopPlan{}, 0, nil
		now := h.now()
		s, permit, err := repo.LockSessionAndPermit(ctx, tx, sessionID)
		if err != nil {
			return err
		}
		// To the second, as the task IDs tell auto-stops apart: an end moved by
		// less keeps its task, which is then the one that is due.
		if scheduledFor != nil && s.State == domain.StateOpen && scheduledFor.Unix() != s.PlannedEndAt.Unix() {
			h.logger(ctx).Info("auto-stop of a moved end: nothing to do", "session_id", s.ID,
				"scheduled_for", scheduledFor.UTC(), "planned_end_at", s.PlannedEndAt)
			return nil
		}
		plan = domain.PlanAutoStop(s.DomainState(), now)
		switch plan.Kind {
		case domain.StopNotDue:
			// Early (clocks disagree): fail, and asynq retries it within a second or so.
			return fmt.Errorf("%w: planned end %s", errNotDue, s.PlannedEndAt.Format(time.RFC3339Nano))
		case domain.StopSettle:
			if err := h.currentYear(ctx, tx, permit, chargeInstant(plan, now)); err != nil {
				return err
			}
			lateness = now.Sub(s.PlannedEndAt)
			h.logger(ctx).Info("auto-stopped", "session_id", s.ID, "planned_end_at", s.PlannedEndAt,
				"lateness", lateness.String(), "charged_minutes", plan.Charge, "by", how)
			if err := repo.ApplyStop(ctx, tx, permit, s, plan, nil, now); err != nil {
				return err
			}
			// Its event and its right's new version ride in this
			// transaction, so that a settlement rolled back (and run
			// again alone, or retried) leaves neither behind.
			if err := repo.AddEvents(ctx, tx, repo.SessionStopEvent(s, now, nil, jobs.StopReasonAuto)); err != nil {
				return err
			}
			outbox = tasks(rightOutbox(s, now))
			return repo.AddOutbox(ctx, tx, outbox...)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("auto-stop session %d: %w", sessionID, err)
	}
	if plan.Kind == domain.StopSettle {
		h.eventsWritten()
		h.handOver(ctx, outbox)
		h.observer().SessionSettled(how, lateness)
	}
	return plan.Kind == domain.StopSettle, nil
}
