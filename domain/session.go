package domain

import (
	"encoding/json"
	"fmt"
	"time"
)

// Session statuses as the outside world sees them. Postgres stores only whether a
// session is open, stopped or cancelled; planned versus active follows from the
// clock, so no job has to flip it and no reader ever sees it stale.
const (
	StatusPlanned   = "planned"
	StatusActive    = "active"
	StatusStopped   = "stopped"
	StatusCancelled = "cancelled"
)

// State is what Postgres stores of a session's life.
type State string

// Stored session states.
const (
	StateOpen      State = "open"
	StateStopped   State = "stopped"
	StateCancelled State = "cancelled"
)

// Tolerances of DOMAIN.md.
const (
	// PastTolerance is how far before the request's receipt a start may lie.
	PastTolerance = 5 * time.Minute

	// MaxBackdate is how far before the request's receipt an instant may lie
	// when it ends or shortens a right already granted (a stop's at, a permit
	// end's at): clock skew between an app and parkd, no more. Enforcement was
	// told the session was valid up to the receipt; an end further back would
	// rewrite that answer after the fact and, chained, make parking free.
	MaxBackdate = 60 * time.Second
)

// Notice codes carried in a session's answer.
const (
	NoticePastPaidHours   = "runs_past_paid_hours"
	NoticeCutByBalance    = "end_cut_by_balance"
	NoticeCutByUsageCap   = "end_cut_by_usage_limit"
	NoticeCutInvalidDay   = "end_cut_at_invalid_day"
	NoticeShortenedByStop = "end_moved_by_stop"
	// NoticeEndsAtPaidHoursEnd: a start without an end in a zone with
	// default_end paid_regime_end ends where the paid regime ends.
	NoticeEndsAtPaidHoursEnd = "ends_at_paid_hours_end"
)

// Notice tells the app something about a session that is not an error.
type Notice struct {
	Code    string    `json:"code"`
	Message string    `json:"message"`
	At      time.Time `json:"at"`
}

// MarshalJSON writes At in UTC, like every instant parkd answers: a notice's
// instant is often a local day boundary or clock time, computed in the zone's
// time zone.
func (n Notice) MarshalJSON() ([]byte, error) {
	type notice Notice // without this method
	n.At = n.At.UTC()
	return json.Marshal(notice(n))
}

// StatusAt derives the outside status of a session at now.
func StatusAt(state State, start, now time.Time) string {
	switch state {
	case StateStopped:
		return StatusStopped
	case StateCancelled:
		return StatusCancelled
	}
	if now.Before(start) {
		return StatusPlanned
	}
	return StatusActive
}

// Minutes is the number of started minutes in d: parking is charged per started
// minute, and d is elapsed real time, so a session across a DST change is charged
// for the minutes that really passed.
func Minutes(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Minute - 1) / time.Minute)
}

// PermitState is what the rules need to know of a permit's current year.
type PermitState struct {
	Active           bool
	BalanceMinutes   int
	PurchasedMinutes int
	UsedMinutes      int // charged in the current permit year
	ReservedMinutes  int // reserved by open sessions
}

// UsageLeft is how many minutes the usage cap still allows this permit year.
func (p PermitState) UsageLeft(z *Zone) int {
	return z.AnnualUsageLimitHours*60 - p.UsedMinutes - p.ReservedMinutes
}

// StartRequest is a session start as the worker receives it. ReceivedAt is the
// instant the request was received upstream, never the instant a worker ran it: a
// backed-up queue must not shift anyone's parking right.
type StartRequest struct {
	Plate      string
	Country    string // ISO 3166-1 alpha-2; "" means DefaultCountry
	StartAt    *time.Time
	EndAt      *time.Time
	ReceivedAt time.Time
	// PermitSessions are the permit's sessions that may overlap the new one, for
	// the max_concurrent_sessions rule (CheckConcurrentSessions): needed only
	// when the zone has that cap, and any superset will do (all the permit's
	// open sessions, say), since only those overlapping the planned interval
	// count.
	PermitSessions []Interval
}

// SessionPlan is an accepted start: what to store and reserve.
type SessionPlan struct {
	Plate           string
	Country         string
	StartAt         time.Time
	PlannedEndAt    time.Time
	ReservedMinutes int
	Notices         []Notice
}

// PlanSession applies every start rule of DOMAIN.md to a request on a permit in a
// zone and returns the session to store, or the RuleError of the first rule broken.
// QuoteSession answers with exactly this decision.
func PlanSession(z *Zone, p PermitState, req StartRequest) (SessionPlan, error) {
	if !p.Active {
		return SessionPlan{}, Reject(CodePermitNotActive, "the permit has ended")
	}
	plate, err := NormalizePlate(req.Plate)
	if err != nil {
		return SessionPlan{}, err
	}
	country, err := NormalizeCountry(req.Country)
	if err != nil {
		return SessionPlan{}, err
	}
	start := req.ReceivedAt
	if req.StartAt != nil {
		start = *req.StartAt
	}
	if start.Before(req.ReceivedAt.Add(-PastTolerance)) {
		return SessionPlan{}, Reject(CodeStartInPast, "start_at %s is more than 5 minutes before the request was received", rfc(start))
	}
	if start.After(z.PlanAheadLimit(req.ReceivedAt)) {
		return SessionPlan{}, Reject(CodeStartTooFarAhead, "start_at %s is more than %d days ahead", rfc(start), z.MaxPlanAheadDays)
	}
	if !z.ValidOn(start) {
		return SessionPlan{}, Reject(CodeNotValidOnDay, "the visitor permit of zone %s is not valid on %s", z.Code, start.In(z.Location).Weekday())
	}
	maxEnd := z.maxEnd(start)
	end := maxEnd
	var notices []Notice
	if req.EndAt != nil {
		end = *req.EndAt
		if !end.After(start) {
			return SessionPlan{}, Reject(CodeInvalidEnd, "end_at %s is not after start_at %s", rfc(end), rfc(start))
		}
		if end.After(maxEnd) {
			return SessionPlan{}, Reject(CodeInvalidEnd, "end_at %s is more than %d minutes after start_at %s", rfc(end), z.MaxSessionMinutes, rfc(start))
		}
	} else if z.DefaultEnd == DefaultEndPaidRegimeEnd {
		if e, ok := z.PaidRegimeEnd(start, maxEnd); ok {
			end = e
			notices = append(notices, Notice{Code: NoticeEndsAtPaidHoursEnd, At: e,
				Message: fmt.Sprintf("ends at %s, where the paid hours end", rfc(e))})
		}
	}
	// Nothing is granted yet: the whole interval is subject to the cuts.
	f, err := fitInterval(z, start, end, start, p.BalanceMinutes, p.UsageLeft(z))
	if err != nil {
		return SessionPlan{}, err
	}
	if err := CheckConcurrentSessions(z, Interval{Start: start, End: f.end}, req.PermitSessions); err != nil {
		return SessionPlan{}, err
	}
	notices = append(append(notices, f.notices...), paidHoursNotices(z, start, f.end)...)
	return SessionPlan{Plate: plate, Country: country, StartAt: start, PlannedEndAt: f.end, ReservedMinutes: f.minutes, Notices: notices}, nil
}

// maxEnd is the latest end of a session starting at start.
func (z *Zone) maxEnd(start time.Time) time.Time {
	return start.Add(time.Duration(z.MaxSessionMinutes) * time.Minute)
}

// fitted is a session's interval after the cuts of fitInterval.
type fitted struct {
	end     time.Time
	minutes int // to reserve: the started minutes from the start to end
	notices []Notice
}

// fitInterval is the one place where a session's end is cut, for a start and for
// a change alike (DOMAIN.md: a change is cut "exactly as a start is"): at the
// first local day on which the permit is not valid, then by the balance, then by
// the usage cap, each cut with its notice; with less than a minute of balance or
// of usage left it is insufficient_balance or annual_usage_limit.
//
// balance and usageLeft are the minutes available to this session: for a start
// the permit's; for a change its own reservation counts as available too.
//
// granted is the end already granted to the session (its start, for a start):
// a right already granted is never taken back (DOMAIN.md "Zone changes apply
// forward"), so an invalid day or usage cap that a zone change brought never cuts
// the interval below min(end, granted). With the zone unchanged the granted
// interval passed these very cuts, so this changes nothing. The balance cut is
// never held up, so that no balance goes negative; the granted interval's own
// reservation covers it.
func fitInterval(z *Zone, start, end, granted time.Time, balance, usageLeft int) (fitted, error) {
	floor := granted
	if end.Before(floor) {
		floor = end
	}
	nothingGranted := !floor.After(start)
	var notices []Notice
	if cut, ok := z.FirstInvalidDayStart(start, end); ok {
		if cut = latest(cut, floor); cut.Before(end) {
			end = cut
			notices = append(notices, Notice{Code: NoticeCutInvalidDay, At: cut,
				Message: fmt.Sprintf("ends at %s: the permit is not valid on %s", rfc(cut), cut.In(z.Location).Weekday())})
		}
	}
	minutes := Minutes(end.Sub(start))
	if balance < 1 {
		return fitted{}, Reject(CodeInsufficientBalance, "the balance is %d minutes", balance)
	}
	if minutes > balance {
		minutes, end = balance, start.Add(time.Duration(balance)*time.Minute)
		notices = append(notices, Notice{Code: NoticeCutByBalance, At: end,
			Message: fmt.Sprintf("ends at %s: the balance covers %d minutes", rfc(end), minutes)})
	}
	if usageLeft < 1 && nothingGranted {
		return fitted{}, Reject(CodeAnnualUsageLimit, "the %d hours of this permit year are used or reserved", z.AnnualUsageLimitHours)
	}
	if minutes > usageLeft {
		if cut := latest(start.Add(time.Duration(usageLeft)*time.Minute), floor); cut.Before(end) {
			minutes, end = Minutes(cut.Sub(start)), cut
			notices = append(notices, Notice{Code: NoticeCutByUsageCap, At: end,
				Message: fmt.Sprintf("ends at %s: %d minutes are left under the annual usage limit", rfc(end), max(usageLeft, 0))})
		}
	}
	return fitted{end: end, minutes: minutes, notices: notices}, nil
}

// paidHoursNotices tells, when the paid regime ends between from and end, that
// stopping then saves the rest (DOMAIN.md: the registration ignores the paid
// regime, but the app can suggest an earlier stop).
func paidHoursNotices(z *Zone, from, end time.Time) []Notice {
	e, ok := z.PaidHoursEndWithin(from, end)
	if !ok {
		return nil
	}
	return []Notice{{Code: NoticePastPaidHours, At: e,
		Message: fmt.Sprintf("paid hours end at %s; stop then to save %d minutes", rfc(e), Minutes(end.Sub(e)))}}
}

func latest(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// SessionState is what the stop rules need to know of a stored session.
type SessionState struct {
	State           State
	StartAt         time.Time
	PlannedEndAt    time.Time
	ReservedMinutes int
}

// StopKind says what a stop does to a session.
type StopKind int

// What a stop can do.
const (
	StopNothing StopKind = iota // already stopped or cancelled: answer it as it is
	StopCancel                  // a planned session stopped before its start
	StopSettle                  // stopped now (or at its planned end): charge and release
	StopShorten                 // a stop in the future: move the planned end, release the rest now
	StopNotDue                  // an auto-stop that came early: the session runs on
)

// StopPlan is the outcome of the stop rules: the new end, the charge and what goes
// back to the balance. For StopSettle and StopCancel, Release is the whole remaining
// reservation and Charge the charged minutes (balance change = Release - Charge).
// For StopShorten, Release is the part of the reservation given back now and
// NewReserved what stays reserved until the new end.
type StopPlan struct {
	Kind        StopKind
	EndAt       time.Time
	Charge      int
	Release     int
	NewReserved int
}

// checkBackdate refuses, with code, an instant at that ends or shortens a right
// already granted and lies more than MaxBackdate before the receipt.
func checkBackdate(code Code, at, receivedAt time.Time) error {
	if at.Before(receivedAt.Add(-MaxBackdate)) {
		return Reject(code, "at %s is more than %d seconds before the request was received (%s)",
			rfc(at), int(MaxBackdate/time.Second), rfc(receivedAt))
	}
	return nil
}

// StopRequest is a stop as the worker receives it: At is the instant the visitor
// left (nil means the instant the request was received).
type StopRequest struct {
	At         *time.Time
	ReceivedAt time.Time
}

// PlanStop applies the stop rules of DOMAIN.md; now is the worker's clock, used only
// to tell a stop in the future (which shortens) from one in the past (which settles).
func PlanStop(s SessionState, req StopRequest, now time.Time) (StopPlan, error) {
	if s.State != StateOpen {
		return StopPlan{Kind: StopNothing}, nil
	}
	at := req.ReceivedAt
	if req.At != nil {
		at = *req.At
	}
	if err := checkBackdate(CodeInvalidStopTime, at, req.ReceivedAt); err != nil {
		return StopPlan{}, err
	}
	plannedAtReceipt := req.ReceivedAt.Before(s.StartAt)
	if !at.After(s.StartAt) {
		if plannedAtReceipt {
			return StopPlan{Kind: StopCancel, EndAt: s.StartAt, Release: s.ReservedMinutes}, nil
		}
		if at.Before(s.StartAt) {
			return StopPlan{}, Reject(CodeInvalidStopTime, "at %s is before the session's start %s", rfc(at), rfc(s.StartAt))
		}
	}
	if !at.Before(s.PlannedEndAt) {
		if s.PlannedEndAt.After(now) {
			// Nothing to shorten: the session runs to its planned end, where the
			// auto-stop settles it.
			return StopPlan{Kind: StopNothing}, nil
		}
		return settleAt(s, s.PlannedEndAt), nil
	}
	if at.After(now) {
		keep := Minutes(at.Sub(s.StartAt))
		return StopPlan{Kind: StopShorten, EndAt: at, Release: s.ReservedMinutes - keep, NewReserved: keep}, nil
	}
	return settleAt(s, at), nil
}

// AutoStopEarliness is how early an auto-stop may settle a session. Redis keeps a
// scheduled task's time in whole seconds, so an auto-stop can run up to a second
// before the planned end; settling it then changes nothing that matters: the
// charge is still exactly up to the planned end, and the session's end_at (which
// enforcement reads) is still the planned end.
const AutoStopEarliness = time.Second

// PlanAutoStop settles a session at its planned end, and never charges for the
// auto-stop's own lateness. An auto-stop that arrives more than
// AutoStopEarliness before the planned end leaves the session running.
func PlanAutoStop(s SessionState, now time.Time) StopPlan {
	if s.State != StateOpen {
		return StopPlan{Kind: StopNothing}
	}
	if now.Before(s.PlannedEndAt.Add(-AutoStopEarliness)) {
		return StopPlan{Kind: StopNotDue}
	}
	return settleAt(s, s.PlannedEndAt)
}

func settleAt(s SessionState, end time.Time) StopPlan {
	charge := min(Minutes(end.Sub(s.StartAt)), s.ReservedMinutes)
	return StopPlan{Kind: StopSettle, EndAt: end, Charge: charge, Release: s.ReservedMinutes}
}

func rfc(t time.Time) string { return t.UTC().Format(time.RFC3339) }
