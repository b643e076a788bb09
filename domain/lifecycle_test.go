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
	st, next := domain.RollYear(centrum(t), domain.YearState{StartsAt: start, EndsAt: end,
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

// A permit year ends at the start of the local day of the anniversary, summer or
// winter time: a year starting 1 April in Amsterdam is 1 April 00:00 CEST (22:00
// UTC the day before) every year, and one starting 1 January is 00:00 CET (23:00
// UTC); where the clocks jump over midnight on the anniversary, it is 01:00.
func TestNextYearEndIsTheAnniversarysFirstInstant(t *testing.T) {
	in := func(tz, starts string) *domain.Zone {
		return zone(t, func(s *domain.ZoneSpec) { s.TimeZone = tz; s.YearStarts = starts })
	}
	tests := []struct {
		name string
		z    *domain.Zone
		from time.Time
		want time.Time
	}{
		{"1 January, Amsterdam", in("Europe/Amsterdam", "01-01"), utc(2025, time.December, 31, 23, 0, 0), utc(2026, time.December, 31, 23, 0, 0)},
		{"1 April, Amsterdam (summer time)", in("Europe/Amsterdam", "04-01"), utc(2026, time.March, 31, 22, 0, 0), utc(2027, time.March, 31, 22, 0, 0)},
		// 2027-03-28 is the DST change: 29 March is a day after it either way.
		{"29 March, Amsterdam", in("Europe/Amsterdam", "03-29"), utc(2026, time.March, 28, 23, 0, 0), utc(2027, time.March, 28, 22, 0, 0)},
		{"1 November, New York (winter time)", in("America/New_York", "11-01"), utc(2026, time.November, 1, 4, 0, 0), utc(2027, time.November, 1, 4, 0, 0)},
		{"15 March, New York (summer time)", in("America/New_York", "03-15"), utc(2027, time.March, 15, 4, 0, 0), utc(2028, time.March, 15, 4, 0, 0)},
		// DST starts 14 March 2027 and 12 March 2028: 13 March is winter time one
		// year and summer time the next, so the year is an hour short in UTC.
		{"13 March, New York: EST one year, EDT the next", in("America/New_York", "03-13"), utc(2027, time.March, 13, 5, 0, 0), utc(2028, time.March, 13, 4, 0, 0)},
		// 5 September 2027 is the jump in Santiago (00:00 -04 -> 01:00 -03).
		{"5 September, Santiago: into the jump", in("America/Santiago", "09-05"), utc(2026, time.September, 5, 4, 0, 0), utc(2027, time.September, 5, 4, 0, 0)},
		{"5 September, Santiago: out of the jump", in("America/Santiago", "09-05"), utc(2027, time.September, 5, 4, 0, 0), utc(2028, time.September, 5, 3, 0, 0)},
		{"8 March, Havana: out of the jump", in("America/Havana", "03-08"), utc(2026, time.March, 8, 5, 0, 0), utc(2027, time.March, 8, 5, 0, 0)},
		{"25 October, Azores: into the double midnight", in("Atlantic/Azores", "10-25"), utc(2025, time.October, 25, 0, 0, 0), utc(2026, time.October, 25, 0, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.z.NextYearEnd(tt.from)
			if !got.Equal(tt.want) {
				t.Fatalf("NextYearEnd(%s) = %s, want %s", tt.from, got.UTC(), tt.want)
			}
			if before := got.Add(-time.Nanosecond).In(tt.z.Location); before.Format("01-02") == tt.z.YearStarts.String() {
				t.Fatalf("%s: the anniversary began before the year's end", before)
			}
			if lt := got.In(tt.z.Location); lt.Format("01-02") != tt.z.YearStarts.String() {
				t.Fatalf("%s is not on the anniversary", lt)
			}
		})
	}
}

// Zone changes apply forward: the year running when an operator changes
// year_starts (or the time zone) keeps its end, and the year begun at that end
// runs to the first anniversary the zone now has.
func TestNextYearEndFollowsTheZoneAsItIsNow(t *testing.T) {
	old := centrum(t)
	_, end := old.PermitYear(june(wed, 12, 0)) // 2026-01-01 00:00 CET
	sep := zone(t, func(s *domain.ZoneSpec) { s.YearStarts = "09-05" })
	if got, want := sep.NextYearEnd(end), local(2026, time.September, 5, 0, 0, 0); !got.Equal(want) {
		t.Fatalf("after a change to 09-05, the year begun %s ends %s, want %s", end, got, want)
	}
	ny := zone(t, func(s *domain.ZoneSpec) { s.TimeZone = "America/New_York" })
	nyLoc := mustLocation("America/New_York")
	if got, want := ny.NextYearEnd(end), time.Date(2027, time.January, 1, 0, 0, 0, 0, nyLoc); !got.Equal(want) {
		// 2025-12-31 23:00 UTC is still 2025 in New York: the year runs to New
		// York's next new year, not to 18:00 local as the old wall clock would.
		t.Fatalf("after a change to New York, the year begun %s ends %s, want %s", end.UTC(), got.UTC(), want.UTC())
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
		if got := domain.YearsDue(centrum(t), end, tt.now); got != tt.want {
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
		_, next := domain.RollYear(z, domain.YearState{StartsAt: s, EndsAt: e})
		ws, we := z.PermitYear(e)
		if !next.StartsAt.Equal(ws) || !next.EndsAt.Equal(we) {
			t.Errorf("after %s: rolled to [%s, %s), PermitYear says [%s, %s)", at, next.StartsAt, next.EndsAt, ws, we)
		}
	}
}
