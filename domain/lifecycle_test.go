package domain_test

import (
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

func TestEndingAPermitNamesItsInstant(t *testing.T) {
	received := june(wed, 12, 0)
	longAgo := june(wed, 12, 0).AddDate(0, -2, 0)
	active := domain.PermitState{Active: true, BalanceMinutes: 300}
	tests := []struct {
		name   string
		p      domain.PermitState
		issued time.Time
		at     *time.Time
		reason string
		code   domain.Code
		want   time.Time
	}{
		{name: "no at: the instant the request was received", p: active, reason: "moved", want: received},
		{name: "at now", p: active, at: ptr(received), reason: "moved", want: received},
		{name: "at 60 seconds before receipt (clock skew)", p: active, at: ptr(received.Add(-domain.MaxBackdate)), reason: "moved", want: received.Add(-domain.MaxBackdate)},
		{name: "at 5 minutes after receipt (clock skew)", p: active, at: ptr(received.Add(5 * time.Minute)), reason: "moved", want: received.Add(5 * time.Minute)},
		{name: "reason is trimmed", p: active, reason: "  on request ", want: received},
		{name: "61 seconds before receipt: sessions would stop in the past", p: active, at: ptr(received.Add(-61 * time.Second)), reason: "moved", code: domain.CodeInvalidEndTime},
		{name: "5 minutes before receipt (the old tolerance)", p: active, at: ptr(received.Add(-5 * time.Minute)), reason: "moved", code: domain.CodeInvalidEndTime},
		{name: "a past move date is not backdated", p: active, at: ptr(received.Add(-5*time.Minute - time.Second)), reason: "moved", code: domain.CodeInvalidEndTime},
		{name: "a move date last month", p: active, at: ptr(received.AddDate(0, -1, 0)), reason: "moved", code: domain.CodeInvalidEndTime},
		{name: "an end date ahead is sent on the day", p: active, at: ptr(received.Add(5*time.Minute + time.Second)), reason: "moved", code: domain.CodeInvalidEndTime},
		{name: "before the permit was issued", p: active, issued: received.Add(-30 * time.Second), at: ptr(received.Add(-40 * time.Second)), reason: "moved", code: domain.CodeInvalidEndTime},
		{name: "at the instant the permit was issued", p: active, issued: received.Add(-30 * time.Second), at: ptr(received.Add(-30 * time.Second)), reason: "moved", want: received.Add(-30 * time.Second)},
		{name: "no reason", p: active, reason: "  ", code: domain.CodeInvalidEndReason},
		{name: "reason too long", p: active, reason: strings.Repeat("x", domain.MaxEndReasonLen+1), code: domain.CodeInvalidEndReason},
		{name: "reason not UTF-8", p: active, reason: "verhuisd\xff", code: domain.CodeInvalidEndReason},
		// Ending twice is a no-op: the second request is answered with the ended
		// permit, whatever instant or reason it names.
		{name: "already ended", p: domain.PermitState{}, at: ptr(received.AddDate(-1, 0, 0))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			issued := tt.issued
			if issued.IsZero() {
				issued = longAgo
			}
			plan, err := domain.PlanEnd(tt.p, issued, domain.EndRequest{At: tt.at, Reason: tt.reason, ReceivedAt: received})
			if !wantCode(t, err, tt.code) {
				return
			}
			if !tt.p.Active {
				if !plan.AlreadyEnded {
					t.Fatalf("plan %+v, want already ended", plan)
				}
				return
			}
			if plan.AlreadyEnded || !plan.At.Equal(tt.want) || plan.Reason != strings.TrimSpace(tt.reason) {
				t.Fatalf("plan %+v, want end at %s", plan, tt.want)
			}
		})
	}
}

func TestEndingStopsCancelsAndSettlesSessions(t *testing.T) {
	end := june(wed, 14, 0)
	open := func(start, plannedEnd time.Time) domain.SessionState {
		return domain.SessionState{State: domain.StateOpen, StartAt: start, PlannedEndAt: plannedEnd,
			ReservedMinutes: domain.Minutes(plannedEnd.Sub(start))}
	}
	tests := []struct {
		name   string
		s      domain.SessionState
		kind   domain.StopKind
		endAt  time.Time
		charge int
	}{
		{name: "active across the end: stopped at it, charged up to it",
			s: open(june(wed, 13, 0), june(wed, 16, 0)), kind: domain.StopSettle, endAt: end, charge: 60},
		{name: "started a second before the end: one started minute",
			s: open(end.Add(-time.Second), june(wed, 17, 0)), kind: domain.StopSettle, endAt: end, charge: 1},
		{name: "planned, starting at the end: cancelled",
			s: open(end, june(wed, 15, 0)), kind: domain.StopCancel, endAt: end, charge: 0},
		{name: "planned, starting later: cancelled",
			s: open(june(thu, 9, 0), june(thu, 12, 0)), kind: domain.StopCancel, endAt: june(thu, 9, 0), charge: 0},
		{name: "over before the end, auto-stop not run yet: settled at its planned end",
			s: open(june(wed, 11, 0), june(wed, 13, 30)), kind: domain.StopSettle, endAt: june(wed, 13, 30), charge: 150},
		{name: "planned end exactly at the end",
			s: open(june(wed, 12, 0), end), kind: domain.StopSettle, endAt: end, charge: 120},
		{name: "already stopped: nothing",
			s: domain.SessionState{State: domain.StateStopped, StartAt: june(wed, 9, 0), PlannedEndAt: june(wed, 10, 0)}, kind: domain.StopNothing},
		{name: "cancelled: nothing",
			s: domain.SessionState{State: domain.StateCancelled, StartAt: june(wed, 15, 0), PlannedEndAt: june(wed, 16, 0)}, kind: domain.StopNothing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan := domain.StopAtPermitEnd(tt.s, end)
			if plan.Kind != tt.kind {
				t.Fatalf("kind %v, want %v (%+v)", plan.Kind, tt.kind, plan)
			}
			if tt.kind == domain.StopNothing {
				return
			}
			if !plan.EndAt.Equal(tt.endAt) || plan.Charge != tt.charge || plan.Release != tt.s.ReservedMinutes {
				t.Fatalf("plan %+v, want end %s charge %d release %d", plan, tt.endAt, tt.charge, tt.s.ReservedMinutes)
			}
			if plan.EndAt.After(tt.s.PlannedEndAt) || plan.EndAt.Before(tt.s.StartAt) {
				t.Fatalf("end %s outside the session [%s, %s]", plan.EndAt, tt.s.StartAt, tt.s.PlannedEndAt)
			}
		})
	}
}

func TestExpiryWritesOffTheBalance(t *testing.T) {
	for _, c := range []struct{ balance, want int }{{0, 0}, {1, 1}, {570, 570}, {-3, 0}} {
		if got := domain.Expiry(c.balance); got != c.want {
			t.Errorf("Expiry(%d) = %d, want %d", c.balance, got, c.want)
		}
	}
}

func TestYearRolloverCarriesTheBalance(t *testing.T) {
	start := local(2025, time.January, 1, 0, 0, 0)
	end := local(2026, time.January, 1, 0, 0, 0)
	st, next := domain.RollYear(ams, domain.YearState{StartsAt: start, EndsAt: end,
		PurchasedMinutes: 600, UsedMinutes: 250, BalanceMinutes: 170, ReservedMinutes: 180})
	if !st.YearStartsAt.Equal(start) || !st.YearEndsAt.Equal(end) || st.PurchasedMinutes != 600 || st.UsedMinutes != 250 || st.CarriedOverMinutes != 170 {
		t.Fatalf("statement %+v", st)
	}
	want := domain.YearState{StartsAt: end, EndsAt: local(2027, time.January, 1, 0, 0, 0), BalanceMinutes: 170, ReservedMinutes: 180}
	if !next.StartsAt.Equal(want.StartsAt) || !next.EndsAt.Equal(want.EndsAt) || next.PurchasedMinutes != 0 || next.UsedMinutes != 0 ||
		next.BalanceMinutes != 170 || next.ReservedMinutes != 180 {
		t.Fatalf("next year %+v, want %+v", next, want)
	}
}

// A permit year ends at local midnight on the anniversary, summer or winter time:
// a year starting 1 April in Amsterdam is 1 April 00:00 CEST (22:00 UTC the day
// before) every year, and one starting 1 January is 00:00 CET (23:00 UTC).
func TestNextAnniversaryIsLocalMidnight(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		loc  *time.Location
		from time.Time
		want time.Time
	}{
		{"1 January, Amsterdam", ams, utc(2025, time.December, 31, 23, 0, 0), utc(2026, time.December, 31, 23, 0, 0)},
		{"1 April, Amsterdam (summer time)", ams, utc(2026, time.March, 31, 22, 0, 0), utc(2027, time.March, 31, 22, 0, 0)},
		// 2027-03-28 is the DST change: 29 March is a day after it either way.
		{"29 March, Amsterdam", ams, utc(2026, time.March, 28, 23, 0, 0), utc(2027, time.March, 28, 22, 0, 0)},
		{"1 November, New York (winter time)", ny, utc(2026, time.November, 1, 4, 0, 0), utc(2027, time.November, 1, 4, 0, 0)},
		{"15 March, New York (summer time)", ny, utc(2027, time.March, 15, 4, 0, 0), utc(2028, time.March, 15, 4, 0, 0)},
		// DST starts 14 March 2027 and 12 March 2028: 13 March is winter time one
		// year and summer time the next, so the year is an hour short in UTC.
		{"13 March, New York: EST one year, EDT the next", ny, utc(2027, time.March, 13, 5, 0, 0), utc(2028, time.March, 13, 4, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.NextAnniversary(tt.loc, tt.from)
			if !got.Equal(tt.want) {
				t.Fatalf("NextAnniversary(%s) = %s, want %s", tt.from, got.UTC(), tt.want)
			}
			if lt := got.In(tt.loc); lt.Hour() != 0 || lt.Minute() != 0 {
				t.Fatalf("%s is not local midnight", lt)
			}
		})
	}
}

func TestYearsDueCountsMissedYears(t *testing.T) {
	end := local(2026, time.January, 1, 0, 0, 0)
	tests := []struct {
		now  time.Time
		want int
	}{
		{end.Add(-time.Second), 0},
		{end, 1},
		{end.Add(time.Hour), 1},
		{local(2027, time.January, 1, 0, 0, 0).Add(-time.Nanosecond), 1},
		{local(2029, time.January, 1, 0, 5, 0), 4},
		{local(2028, time.June, 1, 0, 0, 0), 3},
	}
	for _, tt := range tests {
		if got := domain.YearsDue(ams, end, tt.now); got != tt.want {
			t.Errorf("YearsDue(at %s) = %d, want %d", tt.now, got, tt.want)
		}
	}
}

// The zone's permit year and the rollover agree: rolling the year that contains
// an instant gives the year that contains the instant a year later.
func TestRolloverMatchesPermitYear(t *testing.T) {
	z := zone(t, func(s *domain.ZoneSpec) { s.YearStarts = "04-01" })
	for _, at := range []time.Time{june(wed, 12, 0), local(2026, time.March, 31, 23, 59, 0), local(2026, time.April, 1, 0, 0, 0)} {
		s, e := z.PermitYear(at)
		_, next := domain.RollYear(z.Location, domain.YearState{StartsAt: s, EndsAt: e})
		ws, we := z.PermitYear(e)
		if !next.StartsAt.Equal(ws) || !next.EndsAt.Equal(we) {
			t.Errorf("after %s: rolled to [%s, %s), PermitYear says [%s, %s)", at, next.StartsAt, next.EndsAt, ws, we)
		}
	}
}
