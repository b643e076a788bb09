package worker

import (
	"context"
	"errors"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// lockPermit locks the permit a request names; an ID that names no permit is not_found.
func lockPermit(ctx context.Context, tx repo.Tx, id string) (*repo.Permit, error) {
	p, _, err := lockNamedPermit(ctx, tx, id, func(ctx context.Context, tx repo.Tx, pid int64) (*repo.Permit, int64, error) {
		p, err := repo.LockPermit(ctx, tx, pid)
		return p, 0, err
	})
	return p, err
}

// lockPermitForStart is lockPermit for a session's start: it also draws the
// new session's ID (repo.LockPermitForStart).
func lockPermitForStart(ctx context.Context, tx repo.Tx, id string) (*repo.Permit, int64, error) {
	return lockNamedPermit(ctx, tx, id, repo.LockPermitForStart)
}

// lockNamedPermit locks the permit named id with lock; an ID that names no
// permit is not_found.
func lockNamedPermit(ctx context.Context, tx repo.Tx, id string,
	lock func(context.Context, repo.Tx, int64) (*repo.Permit, int64, error)) (*repo.Permit, int64, error) {
	pid, ok := repo.ParseID(id)
	if !ok {
		return nil, 0, domain.Reject(domain.CodeNotFound, "permit %q not found", id)
	}
	p, sessionID, err := lock(ctx, tx, pid)
	return p, sessionID, notFoundRule(err, "permit", id)
}

// PermitIssue handles permit:issue.
func (h *Handlers) PermitIssue(ctx context.Context, t *asynq.Task) error {
	var p jobs.PermitIssue
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypePermitIssue, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		facts, err := repo.GatherIssueFacts(ctx, tx, p.ResidentID, p.AddressID)
		if err != nil {
			return decision{}, err
		}
		if err := domain.CheckIssue(facts); err != nil {
			return decision{}, err
		}
		zone, err := h.Store.Zone(ctx, tx, facts.AddressZone)
		if err != nil {
			return decision{}, err
		}
		permit, err := repo.InsertPermit(ctx, tx, zone, p.ResidentID, p.AddressID, p.RequestID, receivedAt(p.ReceivedAt, now))
		if errors.Is(err, repo.ErrPermitExists) {
			return decision{}, domain.Reject(domain.CodePermitExistsForAddress, "the address already has an active visitor permit")
		}
		if err != nil {
			return decision{}, err
		}
		rid := p.RequestID
		return decision{result: permit.View(), events: []*repo.Event{repo.PermitEvent(jobs.EventPermitIssued, permit, now, &rid)}}, nil
	})
}

// PermitTopup handles permit:topup.
func (h *Handlers) PermitTopup(ctx context.Context, t *asynq.Task) error {
	var p jobs.PermitTopup
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypePermitTopup, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		permit, err := lockPermit(ctx, tx, p.PermitID)
		if err != nil {
			return decision{}, err
		}
		// A payment reference is used once in the whole system. Its lock comes
		// before anything is written: in a shared transaction a busy one
		// defers the unit, which must then have written nothing.
		if err := repo.LockPaymentRef(ctx, tx, p.PaymentRef); err != nil {
			return decision{}, err
		}
		if err := h.currentYear(ctx, tx, permit, h.now()); err != nil {
			return decision{}, err
		}
		prior, err := repo.PriorTopup(ctx, tx, permit.ID, p.PaymentRef)
		if err != nil {
			return decision{}, err
		}
		// The same payment sent again (under another request ID) is the same
		// top-up: nothing is added, and it is answered as the first was.
		if repeat, err := domain.CheckPaymentRef(prior, p.Hours); err != nil || repeat {
			return decision{result: permit.View()}, err
		}
		zone, err := h.Store.ZoneOf(ctx, tx, permit)
		if err != nil {
			return decision{}, err
		}
		top, err := domain.PlanTopup(zone, permit.State(), p.Hours, p.PaymentRef)
		if err != nil {
			return decision{}, err
		}
		now := h.now()
		if err := repo.ApplyTopup(ctx, tx, permit, top, p.PaymentRef, p.RequestID, now); err != nil {
			return decision{}, err
		}
		rid := p.RequestID
		return decision{result: permit.View(), events: []*repo.Event{repo.PermitEvent(jobs.EventPermitToppedUp, permit, now, &rid)}}, nil
	})
}

// PermitEnd handles permit:end: every open session of the permit is settled as of
// the end instant (stopped and charged up to it, or cancelled when it starts at or
// after it), the balance left is written off with one expire entry, and the permit
// is ended; all in one transaction with the permit locked, so no session can start
// or top-up land in between. Ending an ended permit answers it as it is.
func (h *Handlers) PermitEnd(ctx context.Context, t *asynq.Task) error {
	var p jobs.PermitEnd
	if ok, err := h.decodeRequest(ctx, t, &p); !ok {
		return err
	}
	return h.apply(ctx, t, jobs.TypePermitEnd, p, func(ctx context.Context, tx repo.Tx) (decision, error) {
		now := h.now()
		permit, err := lockPermit(ctx, tx, p.PermitID)
		if err != nil {
			return decision{}, err
		}
		plan, err := domain.PlanEnd(permit.State(), permit.IssuedAt, domain.EndRequest{
			At: instantPtr(p.At), Reason: p.Reason, ReceivedAt: receivedAt(p.ReceivedAt, now),
		})
		if err != nil {
			return decision{}, err
		}
		if plan.AlreadyEnded {
			return decision{result: permit.View()}, nil
		}
		// A year that ended before the permit does still gets its statement: the
		// nightly rollover only looks at active permits.
		if err := h.currentYear(ctx, tx, permit, earlier(plan.At, now)); err != nil {
			return decision{}, err
		}
		sessions, err := repo.LockOpenSessions(ctx, tx, permit.ID)
		if err != nil {
			return decision{}, err
		}
		rid := p.RequestID
		var d decision
		for _, s := range sessions {
			// Their auto-stops and ending notices stay queued and find the
			// session settled: a no-op.
			if err := repo.ApplyStop(ctx, tx, permit, s, domain.StopAtPermitEnd(s.DomainState(), plan.At), &rid, now); err != nil {
				return decision{}, err
			}
			d.events = append(d.events, repo.SessionStopEvent(s, now, &rid, jobs.StopReasonPermitEnded))
			d.outbox = append(d.outbox, tasks(rightOutbox(s, now))...)
		}
		if err := repo.EndPermit(ctx, tx, permit, plan, rid, now); err != nil {
			return decision{}, err
		}
		d.events = append(d.events, repo.PermitEvent(jobs.EventPermitEnded, permit, now, &rid))
		h.logger(ctx).Info("permit ended", "permit_id", permit.ID, "at", plan.At, "reason", plan.Reason,
			"sessions_settled", len(sessions))
		d.settled = make([]string, len(sessions))
		for i := range d.settled {
			d.settled[i] = SettledPermitEnd
		}
		d.result = permit.View()
		return d, nil
	})
}

// currentYear closes the permit's years that ended at or before at, before a
// request applies a year's limits or counters to it: a top-up or session start
// just after the anniversary counts in the new year, however late the nightly
// rollover runs. The statement written is the nightly rollover's own, so
// whichever comes first writes it and the other finds nothing to do.
func (h *Handlers) currentYear(ctx context.Context, tx repo.Tx, p *repo.Permit, at time.Time) error {
	if p.Status != domain.PermitActive || p.YearEndsAt.After(at) {
		return nil
	}
	z, err := h.Store.ZoneOf(ctx, tx, p)
	if err != nil {
		return err
	}
	n, err := repo.RollPermitYears(ctx, tx, z, p, at)
	if n > 0 {
		h.logger(ctx).Info("permit year rolled over on use", "permit_id", p.ID, "years", n)
	}
	return err
}

// chargeInstant is the instant whose permit year a stop's charge counts in: the
// session's end, so that a session ending just before midnight on the
// anniversary is charged in the year it was used in, however late its auto-stop
// runs (as long as the nightly rollover, five minutes later, has not closed the
// year already). Never later than now.
func chargeInstant(plan domain.StopPlan, now time.Time) time.Time {
	if plan.EndAt.IsZero() {
		return now
	}
	return earlier(plan.EndAt, now)
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
