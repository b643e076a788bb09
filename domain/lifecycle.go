package domain

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Rejection codes of ending a permit. They are additions to DOMAIN.md's list: the
// rule book says when sessions stop, but not which end instants a request may name.
const (
	// CodeInvalidEndTime rejects a permit end whose `at` lies more than
	// MaxBackdate before the instant the request was received, more than
	// EndAheadTolerance after it, or before the permit was issued.
	CodeInvalidEndTime Code = "invalid_end_time"
	// CodeInvalidEndReason rejects a permit end without a reason (or with one
	// longer than MaxEndReasonLen).
	CodeInvalidEndReason Code = "invalid_end_reason"
)

// EndAheadTolerance is how far after the request's receipt a permit end may lie:
// only as far as clock skew between the E-loket and parkd reaches. A permit is not
// held open in a half-ended state, so an end date ahead is kept upstream and sent
// on the day.
const EndAheadTolerance = 5 * time.Minute

// MaxEndReasonLen bounds a permit end's reason.
const MaxEndReasonLen = 200

// EndRequest is a permit end as the worker receives it. At nil means ReceivedAt.
type EndRequest struct {
	At         *time.Time
	Reason     string
	ReceivedAt time.Time
}

// EndPlan is an accepted permit end. AlreadyEnded means there is nothing to do:
// ending twice returns the ended permit as it is.
type EndPlan struct {
	AlreadyEnded bool
	At           time.Time
	Reason       string
}

// PlanEnd applies the rules of ending a permit issued at issuedAt. An ended
// permit is answered as it is, whatever the request names: ending twice (an
// E-loket retrying with a fresh request ID, or a second reason) is not an error.
//
// Ending a permit stops its sessions at the end instant, so that instant ends
// rights already granted: into the past it may lie only as far as a stop's may
// (MaxBackdate), since a session that ran (and was shown to enforcement as
// valid) or was settled long ago cannot be undone. An E-loket that records a
// move date in the past ends the permit now; the move date is its own record.
func PlanEnd(p PermitState, issuedAt time.Time, req EndRequest) (EndPlan, error) {
	if !p.Active {
		return EndPlan{AlreadyEnded: true}, nil
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" || !utf8.ValidString(reason) || utf8.RuneCountInString(reason) > MaxEndReasonLen {
		return EndPlan{}, Reject(CodeInvalidEndReason, "reason must be 1-%d characters of text", MaxEndReasonLen)
	}
	at := req.ReceivedAt
	if req.At != nil {
		at = *req.At
	}
	if err := checkBackdate(CodeInvalidEndTime, at, req.ReceivedAt); err != nil {
		return EndPlan{}, err
	}
	switch {
	case at.After(req.ReceivedAt.Add(EndAheadTolerance)):
		return EndPlan{}, Reject(CodeInvalidEndTime, "at %s is more than %s after the request was received: send the end when it is due", rfc(at), EndAheadTolerance)
	case at.Before(issuedAt):
		return EndPlan{}, Reject(CodeInvalidEndTime, "at %s is before the permit was issued (%s)", rfc(at), rfc(issuedAt))
	}
	return EndPlan{At: at, Reason: reason}, nil
}

// StopAtPermitEnd says what ending its permit at end does to a session: a session
// that starts at or after the end was planned and is cancelled (charged nothing);
// one that runs across the end is stopped there and charged up to it; one whose
// planned end already passed (its auto-stop has not run yet) is settled at its
// planned end, exactly as the auto-stop would. The whole reservation goes back
// to the balance in every case; the balance then expires with the permit.
func StopAtPermitEnd(s SessionState, end time.Time) StopPlan {
	switch {
	case s.State != StateOpen:
		return StopPlan{Kind: StopNothing}
	case !s.StartAt.Before(end):
		return StopPlan{Kind: StopCancel, EndAt: s.StartAt, Release: s.ReservedMinutes}
	case !end.Before(s.PlannedEndAt):
		return settleAt(s, s.PlannedEndAt)
	}
	return settleAt(s, end)
}

// Expiry is what ending a permit writes off: the whole balance left once every
// open session has been settled. Zero means nothing to write off.
func Expiry(balanceMinutes int) int { return max(balanceMinutes, 0) }

// Statement is a closed permit year: the annual statement. The balance at the
// year's end is CarriedOverMinutes + ExpiredMinutes: what went into the new
// year, and what the zone's carry-over cap wrote off.
type Statement struct {
	YearStartsAt       time.Time
	YearEndsAt         time.Time
	PurchasedMinutes   int
	UsedMinutes        int
	CarriedOverMinutes int
	// ExpiredMinutes is the balance above the zone's carry_over_max_hours,
	// expired at rollover: the repo writes it as one expire ledger entry of
	// -ExpiredMinutes (none when zero).
	ExpiredMinutes int
}

// YearState is a permit's current year as the rollover sees it.
type YearState struct {
	StartsAt         time.Time
	EndsAt           time.Time
	PurchasedMinutes int
	UsedMinutes      int
	BalanceMinutes   int
	ReservedMinutes  int
}

// RollYear closes a permit year of zone z that has ended and opens the next one:
// the closed year becomes a statement (bought, used, the balance carried over
// and the balance expired); the new year runs from the old end to z.NextYearEnd
// of it, with purchase and usage counters at zero. The balance carries over
// (it expires only when the permit ends), up to the zone's carry-over cap
// (CarryOver), and so do the reservations of open sessions, whole: their
// minutes were taken from the balance already, and whatever they are charged
// when they settle counts in the year they settle in.
//
// The repo does the same in set-based SQL, with the new ends computed here.
func RollYear(z *Zone, y YearState) (Statement, YearState) {
	carried, expired := z.CarryOver(y.BalanceMinutes)
	st := Statement{
		YearStartsAt: y.StartsAt, YearEndsAt: y.EndsAt,
		PurchasedMinutes: y.PurchasedMinutes, UsedMinutes: y.UsedMinutes,
		CarriedOverMinutes: carried, ExpiredMinutes: expired,
	}
	next := YearState{
		StartsAt: y.EndsAt, EndsAt: z.NextYearEnd(y.EndsAt),
		BalanceMinutes: carried, ReservedMinutes: y.ReservedMinutes,
	}
	return st, next
}

// CarryOver splits the balance at a permit year's end into what carries into
// the new year and what expires (DOMAIN.md "Carry-over cap"): without a cap
// everything carries; with carry_over_max_hours the balance above the cap
// expires. The cap applies to the balance only: minutes reserved by open
// sessions are not balance, are never expired, and what they release after the
// rollover is balance of the new year.
func (z *Zone) CarryOver(balanceMinutes int) (carried, expired int) {
	if !z.CarryOverCapped || balanceMinutes <= z.CarryOverMaxMinutes {
		return balanceMinutes, 0
	}
	return z.CarryOverMaxMinutes, balanceMinutes - z.CarryOverMaxMinutes
}

// YearsDue is how many permit years ending at or before now a permit of zone z
// whose current year ends at end has to close: normally 0 or 1, more when the
// rollover did not run for years.
func YearsDue(z *Zone, end, now time.Time) int {
	n := 0
	for !end.After(now) {
		n++
		end = z.NextYearEnd(end)
	}
	return n
}
