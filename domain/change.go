package domain

import "time"

// PlateCorrectionWindow is how long after a session's start its plate may still
// be corrected (DOMAIN.md, Change a session): long enough for a typo noticed at
// once, too short to hand one session on from visitor to visitor.
const PlateCorrectionWindow = 2 * time.Minute

// GrantedSession is a stored session as the change rules see it: as it was
// granted, with its plate (normalised) and country.
type GrantedSession struct {
	SessionState
	Plate   string
	Country string
}

// ChangeRequest is a change of a session as the worker receives it: a new end,
// a new plate, or both (nil: unchanged). ReceivedAt is the instant the request
// was received upstream.
type ChangeRequest struct {
	EndAt      *time.Time
	Plate      *string
	ReceivedAt time.Time
	// PermitSessions are the permit's other sessions, for max_concurrent_sessions
	// (see CheckConcurrentSessions): never the session being changed itself.
	// Needed only when the zone has that cap and the end moves later.
	PermitSessions []Interval
}

// ChangePlan is an accepted change: the session as it is to be stored.
// DeltaMinutes is ReservedMinutes minus the reservation so far: positive
// minutes are reserved from the balance now (and count as usage), negative ones
// released to it now. EndChanged and PlateChanged say what moved; both false
// means the request named what the session already was, and nothing is to be
// written.
type ChangePlan struct {
	Plate           string
	Country         string
	StartAt         time.Time
	PlannedEndAt    time.Time
	ReservedMinutes int
	DeltaMinutes    int
	EndChanged      bool
	PlateChanged    bool
	Notices         []Notice
}

// PlanChange applies the change rules of DOMAIN.md ("What residents can do
// besides start and stop", Change a session) to a session s of a permit p in
// zone z, and returns the session to store or the RuleError of the first rule
// broken, in this order:
//
//   - session_not_open, before anything else, for a stopped or cancelled
//     session, and for an open one whose planned end is not after the receipt:
//     its right has run out and its auto-stop is due; moving its end now would
//     grant, after the fact, time enforcement was told was not covered;
//   - permit_not_active; bad_request when the request names neither an end
//     nor a plate;
//   - the plate: invalid_plate, normalised as a start's; a different plate
//     received more than PlateCorrectionWindow after the start is
//     plate_change_window_closed (the same plate again is no change, and
//     passes at any time, so a retried request is answered alike);
//   - the end: invalid_end unless after the receipt, after the start, and at
//     most the maximum duration after the start (or within the interval
//     already granted, should a zone change have shortened the maximum since);
//     then cut by fitInterval exactly as a start's end, with the session's own
//     reservation available to it;
//   - too_many_sessions, when the end moves later.
//
// plate_already_parked needs every zone's sessions of the new plate and is the
// repo's to check, as for a start (the same exclusion in Postgres); the repo
// must also apply DeltaMinutes to the balance and the year's reserved minutes,
// and the auto-stop must follow PlannedEndAt.
func PlanChange(z *Zone, p PermitState, s GrantedSession, req ChangeRequest) (ChangePlan, error) {
	if s.State != StateOpen {
		return ChangePlan{}, Reject(CodeSessionNotOpen, "the session is %s", s.State)
	}
	if !s.PlannedEndAt.After(req.ReceivedAt) {
		return ChangePlan{}, Reject(CodeSessionNotOpen, "the session ended at %s, before the change was received (%s)",
			rfc(s.PlannedEndAt), rfc(req.ReceivedAt))
	}
	if !p.Active {
		return ChangePlan{}, Reject(CodePermitNotActive, "the permit has ended")
	}
	if req.EndAt == nil && req.Plate == nil {
		return ChangePlan{}, Reject(CodeBadRequest, "a change names end_at, plate or both")
	}
	plan := ChangePlan{Plate: s.Plate, Country: s.Country, StartAt: s.StartAt,
		PlannedEndAt: s.PlannedEndAt, ReservedMinutes: s.ReservedMinutes}
	if req.Plate != nil {
		plate, err := NormalizePlate(*req.Plate)
		if err != nil {
			return ChangePlan{}, err
		}
		if plate != s.Plate {
			if closes := s.StartAt.Add(PlateCorrectionWindow); req.ReceivedAt.After(closes) {
				return ChangePlan{}, Reject(CodePlateChangeWindowClosed,
					"the plate may be corrected up to %d minutes after the start (%s); the change was received at %s",
					int(PlateCorrectionWindow/time.Minute), rfc(closes), rfc(req.ReceivedAt))
			}
			plan.Plate, plan.PlateChanged = plate, true
		}
	}
	if req.EndAt == nil {
		return plan, nil
	}
	end := *req.EndAt
	switch maxEnd := latest(z.maxEnd(s.StartAt), s.PlannedEndAt); {
	case !end.After(req.ReceivedAt):
		return ChangePlan{}, Reject(CodeInvalidEnd, "end_at %s is not after the change was received (%s)", rfc(end), rfc(req.ReceivedAt))
	case !end.After(s.StartAt):
		return ChangePlan{}, Reject(CodeInvalidEnd, "end_at %s is not after the session's start %s", rfc(end), rfc(s.StartAt))
	case end.After(maxEnd):
		return ChangePlan{}, Reject(CodeInvalidEnd, "end_at %s is more than %d minutes after the session's start %s",
			rfc(end), z.MaxSessionMinutes, rfc(s.StartAt))
	}
	f, err := fitInterval(z, s.StartAt, end, s.PlannedEndAt,
		p.BalanceMinutes+s.ReservedMinutes, p.UsageLeft(z)+s.ReservedMinutes)
	if err != nil {
		return ChangePlan{}, err
	}
	if f.end.After(s.PlannedEndAt) {
		if err := CheckConcurrentSessions(z, Interval{Start: s.StartAt, End: f.end}, req.PermitSessions); err != nil {
			return ChangePlan{}, err
		}
	}
	plan.PlannedEndAt, plan.ReservedMinutes = f.end, f.minutes
	plan.DeltaMinutes = f.minutes - s.ReservedMinutes
	plan.EndChanged = !f.end.Equal(s.PlannedEndAt)
	// The paid-hours advice looks ahead from now: a regime end already behind
	// an active session is no reason to stop.
	plan.Notices = append(f.notices, paidHoursNotices(z, latest(s.StartAt, req.ReceivedAt), f.end)...)
	return plan, nil
}
