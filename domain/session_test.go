package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// startCase is one session start: a request on a permit, and either the rejection
// code or the plan it must give.
type startCase struct {
	name     string
	z        *domain.Zone // the centre when nil
	permit   *domain.PermitState
	received time.Time
	start    *time.Time
	end      *time.Time
	code     domain.Code
	// the plan, when code is ""
	wantStart time.Time // received when zero
	wantEnd   time.Time
	reserved  int
	notices   []noticeWant
}

func runStartCases(t *testing.T, tests []startCase) {
	t.Helper()
	def := centrum(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := tt.z
			if z == nil {
				z = def
			}
			p := rich()
			if tt.permit != nil {
				p = *tt.permit
			}
			plan, err := domain.PlanSession(z, p, domain.StartRequest{
				Plate: "ab-12-cd", StartAt: tt.start, EndAt: tt.end, ReceivedAt: tt.received,
			})
			if !wantCode(t, err, tt.code) {
				return
			}
			wantStart := tt.wantStart
			if wantStart.IsZero() {
				wantStart = tt.received
			}
			if !plan.StartAt.Equal(wantStart) {
				t.Errorf("start %s, want %s", plan.StartAt, wantStart)
			}
			if !plan.PlannedEndAt.Equal(tt.wantEnd) {
				t.Errorf("planned end %s, want %s", plan.PlannedEndAt.In(ams), tt.wantEnd.In(ams))
			}
			if plan.ReservedMinutes != tt.reserved {
				t.Errorf("reserved %d minutes, want %d", plan.ReservedMinutes, tt.reserved)
			}
			if plan.ReservedMinutes > p.BalanceMinutes {
				t.Errorf("reserved %d minutes of a balance of %d", plan.ReservedMinutes, p.BalanceMinutes)
			}
			if plan.Plate != "AB12CD" {
				t.Errorf("plate %q, want AB12CD", plan.Plate)
			}
			checkNotices(t, plan.Notices, tt.notices)
		})
	}
}

func permitWith(balance, used, reserved int) *domain.PermitState {
	return &domain.PermitState{Active: true, BalanceMinutes: balance, UsedMinutes: used, ReservedMinutes: reserved}
}

func TestStartOnEndedPermit(t *testing.T) {
	r := june(wed, 10, 0)
	runStartCases(t, []startCase{
		{name: "ended permit", permit: &domain.PermitState{BalanceMinutes: 600}, received: r, code: domain.CodePermitNotActive},
		{name: "ended permit without balance", permit: &domain.PermitState{}, received: r, code: domain.CodePermitNotActive},
	})
}

func TestStartNotMoreThanFiveMinutesInPast(t *testing.T) {
	r := june(wed, 10, 0)
	runStartCases(t, []startCase{
		{name: "no start means received", received: r, wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "start now", received: r, start: ptr(r), wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "exactly 5 minutes in the past", received: r, start: ptr(june(wed, 9, 55)),
			wantStart: june(wed, 9, 55), wantEnd: june(wed, 12, 55), reserved: 180},
		{name: "4 minutes 59 seconds in the past", received: r, start: ptr(r.Add(-5*time.Minute + time.Second)),
			wantStart: r.Add(-5*time.Minute + time.Second), wantEnd: r.Add(175*time.Minute + time.Second), reserved: 180},
		{name: "5 minutes and 1 second in the past", received: r, start: ptr(r.Add(-5*time.Minute - time.Second)),
			code: domain.CodeStartInPast},
		{name: "an hour in the past", received: r, start: ptr(june(wed, 9, 0)), code: domain.CodeStartInPast},
		{name: "yesterday", received: r, start: ptr(june(wed-1, 10, 0)), code: domain.CodeStartInPast},
		{name: "same instant written in UTC", received: r, start: ptr(utc(2025, time.June, wed, 7, 55, 0)),
			wantStart: june(wed, 9, 55), wantEnd: june(wed, 12, 55), reserved: 180},
		{name: "received 00:01, start 23:56 the day before", received: june(thu, 0, 1), start: ptr(june(wed, 23, 56)),
			wantStart: june(wed, 23, 56), wantEnd: june(thu, 2, 56), reserved: 180},
	})
}

func TestStartAtMostSevenDaysAhead(t *testing.T) {
	r := june(wed, 10, 0)
	two := zone(t, func(s *domain.ZoneSpec) { s.MaxPlanAheadDays = 2 })
	runStartCases(t, []startCase{
		{name: "in an hour", received: r, start: ptr(june(wed, 11, 0)),
			wantStart: june(wed, 11, 0), wantEnd: june(wed, 14, 0), reserved: 180},
		{name: "exactly 7 days ahead", received: r, start: ptr(june(wed+7, 10, 0)),
			wantStart: june(wed+7, 10, 0), wantEnd: june(wed+7, 13, 0), reserved: 180},
		{name: "7 days and 1 second ahead", received: r, start: ptr(local(2025, time.June, wed+7, 10, 0, 1)),
			code: domain.CodeStartTooFarAhead},
		{name: "8 days ahead", received: r, start: ptr(june(wed+8, 10, 0)), code: domain.CodeStartTooFarAhead},
		{name: "a year ahead", received: r, start: ptr(local(2026, time.June, 10, 10, 0, 0)), code: domain.CodeStartTooFarAhead},
		{name: "setting 2 days: exactly 2 days", z: two, received: r, start: ptr(june(wed+2, 10, 0)),
			wantStart: june(wed+2, 10, 0), wantEnd: june(wed+2, 13, 0), reserved: 180},
		{name: "setting 2 days: 2 days and a minute", z: two, received: r, start: ptr(june(wed+2, 10, 1)),
			code: domain.CodeStartTooFarAhead},
	})

	// An instant is an instant: the answer must not depend on the time zone the
	// caller happened to write the received and start instants in (DOMAIN.md:
	// instants are stored in UTC, local rules are evaluated in the zone's zone).
	t.Run("same instants in any location", func(t *testing.T) {
		z := centrum(t)
		cases := []struct{ name, received, start string }{
			{"across spring-forward", "2025-03-24T11:00:00Z", "2025-03-31T10:30:00Z"},
			{"across fall-back", "2025-10-20T10:00:00Z", "2025-10-27T10:30:00Z"},
			{"no DST change", "2025-06-11T08:00:00Z", "2025-06-18T08:00:00Z"},
		}
		for _, c := range cases {
			rec, _ := time.Parse(time.RFC3339, c.received)
			st, _ := time.Parse(time.RFC3339, c.start)
			codeIn := func(loc *time.Location) domain.Code {
				_, err := domain.PlanSession(z, rich(), domain.StartRequest{
					Plate: "AB12CD", StartAt: ptr(st.In(loc)), ReceivedAt: rec.In(loc),
				})
				if re, ok := domain.AsRule(err); ok {
					return re.Code
				}
				if err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				return "accepted"
			}
			inUTC, inAms := codeIn(time.UTC), codeIn(ams)
			inFixed := codeIn(time.FixedZone("", -5*3600))
			if inUTC != inAms || inUTC != inFixed {
				t.Errorf("%s: received %s, start %s: %s with UTC instants, %s with Amsterdam instants, %s with UTC-5 instants",
					c.name, c.received, c.start, inUTC, inAms, inFixed)
			}
		}
	})
}

func TestMaxDurationThreeHours(t *testing.T) {
	r := june(wed, 10, 0)
	hour := zone(t, func(s *domain.ZoneSpec) { s.MaxSessionMinutes = 60 })
	runStartCases(t, []startCase{
		{name: "no end means start + 3h", received: r, wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "end exactly start + 3h", received: r, end: ptr(june(wed, 13, 0)), wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "end start + 3h + 1s", received: r, end: ptr(local(2025, time.June, wed, 13, 0, 1)), code: domain.CodeInvalidEnd},
		{name: "end start + 4h", received: r, end: ptr(june(wed, 14, 0)), code: domain.CodeInvalidEnd},
		{name: "end start + 1 minute", received: r, end: ptr(june(wed, 10, 1)), wantEnd: june(wed, 10, 1), reserved: 1},
		{name: "end start + 30 s reserves a started minute", received: r, end: ptr(local(2025, time.June, wed, 10, 0, 30)),
			wantEnd: local(2025, time.June, wed, 10, 0, 30), reserved: 1},
		{name: "end start + 90 min", received: r, end: ptr(june(wed, 11, 30)), wantEnd: june(wed, 11, 30), reserved: 90},
		{name: "planned start, end 3h later", received: r, start: ptr(june(thu, 10, 0)), end: ptr(june(thu, 13, 0)),
			wantStart: june(thu, 10, 0), wantEnd: june(thu, 13, 0), reserved: 180},
		{name: "planned start, end 3h01 later", received: r, start: ptr(june(thu, 10, 0)),
			end: ptr(june(thu, 13, 1)), code: domain.CodeInvalidEnd},
		{name: "zone max 60 min: no end", z: hour, received: r, wantEnd: june(wed, 11, 0), reserved: 60},
		{name: "zone max 60 min: end +61 min", z: hour, received: r, end: ptr(june(wed, 11, 1)), code: domain.CodeInvalidEnd},
	})
}

func TestEndMustBeAfterStart(t *testing.T) {
	r := june(wed, 10, 0)
	runStartCases(t, []startCase{
		{name: "end equals start", received: r, end: ptr(r), code: domain.CodeInvalidEnd},
		{name: "end a second before start", received: r, end: ptr(r.Add(-time.Second)), code: domain.CodeInvalidEnd},
		{name: "end an hour before start", received: r, end: ptr(june(wed, 9, 0)), code: domain.CodeInvalidEnd},
		{name: "planned: end before its start", received: r, start: ptr(june(thu, 10, 0)), end: ptr(june(thu, 9, 0)),
			code: domain.CodeInvalidEnd},
		{name: "end a nanosecond after start", received: r, end: ptr(r.Add(time.Nanosecond)), wantEnd: r.Add(time.Nanosecond), reserved: 1},
	})
}

func TestEndCutAtInvalidDay(t *testing.T) {
	satMidnight := june(sat, 0, 0)
	cut := []noticeWant{{domain.NoticeCutInvalidDay, satMidnight}}
	monday := zone(t, func(s *domain.ZoneSpec) { s.InvalidWeekdays = []string{"mon"} })
	ny := zone(t, func(s *domain.ZoneSpec) { s.TimeZone = "America/New_York" })
	nyLoc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	runStartCases(t, []startCase{
		{name: "friday 22:30 cut at saturday 00:00", received: june(fri, 22, 30),
			wantEnd: satMidnight, reserved: 90, notices: cut},
		{name: "friday 22:30 with end 00:30 cut at 00:00", received: june(fri, 22, 30), end: ptr(june(sat, 0, 30)),
			wantEnd: satMidnight, reserved: 90, notices: cut},
		{name: "friday 22:30 with end 23:30 not cut", received: june(fri, 22, 30), end: ptr(june(fri, 23, 30)),
			wantEnd: june(fri, 23, 30), reserved: 60},
		{name: "friday 22:30 with end exactly 00:00 not cut", received: june(fri, 22, 30), end: ptr(satMidnight),
			wantEnd: satMidnight, reserved: 90},
		{name: "friday 21:00 ends exactly at 00:00", received: june(fri, 21, 0), wantEnd: satMidnight, reserved: 180},
		{name: "friday 23:59", received: june(fri, 23, 59), wantEnd: satMidnight, reserved: 1, notices: cut},
		{name: "friday 23:59:30 reserves the started minute", received: local(2025, time.June, fri, 23, 59, 30),
			wantEnd: satMidnight, reserved: 1, notices: cut},
		{name: "planned friday 22:30", received: june(thu, 12, 0), start: ptr(june(fri, 22, 30)),
			wantStart: june(fri, 22, 30), wantEnd: satMidnight, reserved: 90, notices: cut},
		{name: "thursday 22:30 runs into friday", received: june(thu, 22, 30), wantEnd: june(fri, 1, 30), reserved: 180},
		{name: "sunday 23:00 runs into monday", received: june(sun, 23, 0), wantEnd: june(mon, 2, 0), reserved: 180},
		{name: "zone invalid on monday: sunday 22:00 cut", z: monday, received: june(sun, 22, 0),
			wantEnd: june(mon, 0, 0), reserved: 120, notices: []noticeWant{{domain.NoticeCutInvalidDay, june(mon, 0, 0)}}},
		{name: "New York zone: cut at New York midnight", z: ny,
			received: time.Date(2025, time.June, fri, 22, 30, 0, 0, nyLoc),
			wantEnd:  time.Date(2025, time.June, sat, 0, 0, 0, 0, nyLoc), reserved: 90,
			notices: []noticeWant{{domain.NoticeCutInvalidDay, time.Date(2025, time.June, sat, 0, 0, 0, 0, nyLoc)}}},
		{name: "New York zone: Amsterdam midnight is no cut", z: ny, received: june(fri, 22, 30),
			wantEnd: june(sat, 1, 30), reserved: 180},
	})
}

func TestStartOnInvalidDay(t *testing.T) {
	runStartCases(t, []startCase{
		{name: "saturday 00:00", received: june(sat, 0, 0), code: domain.CodeNotValidOnDay},
		{name: "saturday noon", received: june(sat, 12, 0), code: domain.CodeNotValidOnDay},
		{name: "saturday 23:59", received: june(sat, 23, 59), code: domain.CodeNotValidOnDay},
		{name: "planned on saturday", received: june(thu, 12, 0), start: ptr(june(sat, 10, 0)), code: domain.CodeNotValidOnDay},
		{name: "UTC friday 22:30 is local saturday", received: utc(2025, time.June, fri, 22, 30, 0), code: domain.CodeNotValidOnDay},
		{name: "sunday 00:00 is valid", received: june(sun, 0, 0), wantEnd: june(sun, 3, 0), reserved: 180},
		{name: "UTC saturday 22:00 is local sunday 00:00", received: utc(2025, time.June, sat, 22, 0, 0),
			wantEnd: june(sun, 3, 0), reserved: 180},
		{name: "friday 23:59:59 is valid", received: local(2025, time.June, fri, 23, 59, 59),
			wantEnd: june(sat, 0, 0), reserved: 1, notices: []noticeWant{{domain.NoticeCutInvalidDay, june(sat, 0, 0)}}},
	})
}

func TestReserveCutByBalance(t *testing.T) {
	r := june(wed, 10, 0)
	runStartCases(t, []startCase{
		{name: "balance of an hour", permit: permitWith(60, 0, 0), received: r,
			wantEnd: june(wed, 11, 0), reserved: 60, notices: []noticeWant{{domain.NoticeCutByBalance, june(wed, 11, 0)}}},
		{name: "balance of one minute", permit: permitWith(1, 0, 0), received: r,
			wantEnd: june(wed, 10, 1), reserved: 1, notices: []noticeWant{{domain.NoticeCutByBalance, june(wed, 10, 1)}}},
		{name: "balance one minute short", permit: permitWith(179, 0, 0), received: r,
			wantEnd: june(wed, 12, 59), reserved: 179, notices: []noticeWant{{domain.NoticeCutByBalance, june(wed, 12, 59)}}},
		{name: "balance exactly 3h", permit: permitWith(180, 0, 0), received: r, wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "explicit end within the balance", permit: permitWith(45, 0, 0), received: r, end: ptr(june(wed, 10, 30)),
			wantEnd: june(wed, 10, 30), reserved: 30},
		{name: "explicit end beyond the balance", permit: permitWith(45, 0, 0), received: r, end: ptr(june(wed, 11, 0)),
			wantEnd: june(wed, 10, 45), reserved: 45, notices: []noticeWant{{domain.NoticeCutByBalance, june(wed, 10, 45)}}},
		{name: "start at a broken second, balance-cut end keeps it", permit: permitWith(10, 0, 0),
			received: local(2025, time.June, wed, 10, 0, 30),
			wantEnd:  local(2025, time.June, wed, 10, 10, 30), reserved: 10,
			notices: []noticeWant{{domain.NoticeCutByBalance, local(2025, time.June, wed, 10, 10, 30)}}},
		{name: "invalid-day cut then balance cut", permit: permitWith(60, 0, 0), received: june(fri, 22, 30),
			wantEnd: june(fri, 23, 30), reserved: 60, notices: []noticeWant{
				{domain.NoticeCutInvalidDay, june(sat, 0, 0)}, {domain.NoticeCutByBalance, june(fri, 23, 30)}}},
		{name: "invalid-day cut within the balance", permit: permitWith(100, 0, 0), received: june(fri, 22, 30),
			wantEnd: june(sat, 0, 0), reserved: 90, notices: []noticeWant{{domain.NoticeCutInvalidDay, june(sat, 0, 0)}}},
	})
}

func TestInsufficientBalance(t *testing.T) {
	r := june(wed, 10, 0)
	runStartCases(t, []startCase{
		{name: "balance zero", permit: permitWith(0, 0, 0), received: r, code: domain.CodeInsufficientBalance},
		{name: "balance zero, short session", permit: permitWith(0, 0, 0), received: r, end: ptr(june(wed, 10, 1)),
			code: domain.CodeInsufficientBalance},
		{name: "balance negative", permit: permitWith(-5, 0, 0), received: r, code: domain.CodeInsufficientBalance},
		{name: "balance one minute", permit: permitWith(1, 0, 0), received: r,
			wantEnd: june(wed, 10, 1), reserved: 1, notices: []noticeWant{{domain.NoticeCutByBalance, june(wed, 10, 1)}}},
	})
}

func TestUsageCap(t *testing.T) {
	r := june(wed, 10, 0)
	const limit = 500 * 60
	small := zone(t, func(s *domain.ZoneSpec) { s.AnnualUsageLimitHours = 1 })
	runStartCases(t, []startCase{
		{name: "all used", permit: permitWith(600, limit, 0), received: r, code: domain.CodeAnnualUsageLimit},
		{name: "all used or reserved", permit: permitWith(600, limit-1000, 1000), received: r, code: domain.CodeAnnualUsageLimit},
		{name: "over the cap", permit: permitWith(600, limit+10, 0), received: r, code: domain.CodeAnnualUsageLimit},
		{name: "an hour left: cut", permit: permitWith(600, limit-60, 0), received: r,
			wantEnd: june(wed, 11, 0), reserved: 60, notices: []noticeWant{{domain.NoticeCutByUsageCap, june(wed, 11, 0)}}},
		{name: "an hour left counting reservations: cut", permit: permitWith(600, limit-100, 40), received: r,
			wantEnd: june(wed, 11, 0), reserved: 60, notices: []noticeWant{{domain.NoticeCutByUsageCap, june(wed, 11, 0)}}},
		{name: "one minute left", permit: permitWith(600, limit-1, 0), received: r,
			wantEnd: june(wed, 10, 1), reserved: 1, notices: []noticeWant{{domain.NoticeCutByUsageCap, june(wed, 10, 1)}}},
		{name: "exactly 3h left: no cut", permit: permitWith(600, limit-180, 0), received: r, wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "179 min left: cut", permit: permitWith(600, limit-179, 0), received: r,
			wantEnd: june(wed, 12, 59), reserved: 179, notices: []noticeWant{{domain.NoticeCutByUsageCap, june(wed, 12, 59)}}},
		{name: "balance and cap both cut", permit: permitWith(100, limit-60, 0), received: r,
			wantEnd: june(wed, 11, 0), reserved: 60, notices: []noticeWant{
				{domain.NoticeCutByBalance, june(wed, 11, 40)}, {domain.NoticeCutByUsageCap, june(wed, 11, 0)}}},
		{name: "zone limit of 1 hour", z: small, permit: permitWith(600, 0, 0), received: r,
			wantEnd: june(wed, 11, 0), reserved: 60, notices: []noticeWant{{domain.NoticeCutByUsageCap, june(wed, 11, 0)}}},
		{name: "zone limit of 1 hour, used", z: small, permit: permitWith(600, 60, 0), received: r, code: domain.CodeAnnualUsageLimit},
	})
	z := centrum(t)
	if got := (domain.PermitState{UsedMinutes: 100, ReservedMinutes: 20}).UsageLeft(z); got != limit-120 {
		t.Errorf("UsageLeft = %d, want %d", got, limit-120)
	}
}

func TestPaidRegimeIgnoredWithNotice(t *testing.T) {
	sunday17 := june(sun, 17, 0)
	contiguous := zone(t, func(s *domain.ZoneSpec) {
		s.PaidHours = []domain.PaidWindow{
			{Days: []string{"mon"}, From: "09:00", To: "24:00"},
			{Days: []string{"tue"}, From: "00:00", To: "01:00"},
		}
	})
	noRegime := zone(t, func(s *domain.ZoneSpec) { s.PaidHours = []domain.PaidWindow{} })
	runStartCases(t, []startCase{
		{name: "sunday 16:30 still reserves 3h", received: june(sun, 16, 30), wantEnd: june(sun, 19, 30), reserved: 180,
			notices: []noticeWant{{domain.NoticePastPaidHours, sunday17}}},
		{name: "sunday 16:59", received: june(sun, 16, 59), wantEnd: june(sun, 19, 59), reserved: 180,
			notices: []noticeWant{{domain.NoticePastPaidHours, sunday17}}},
		{name: "sunday 14:00 ends exactly at 17:00: no notice", received: june(sun, 14, 0), wantEnd: sunday17, reserved: 180},
		{name: "sunday 17:00 starts at the regime end: no notice", received: sunday17, wantEnd: june(sun, 20, 0), reserved: 180},
		{name: "sunday 11:00 runs into the regime: no notice", received: june(sun, 11, 0), wantEnd: june(sun, 14, 0), reserved: 180},
		{name: "wednesday 19:30", received: june(wed, 19, 30), wantEnd: june(wed, 22, 30), reserved: 180,
			notices: []noticeWant{{domain.NoticePastPaidHours, june(wed, 21, 0)}}},
		{name: "wednesday 20:59", received: june(wed, 20, 59), wantEnd: june(wed, 23, 59), reserved: 180,
			notices: []noticeWant{{domain.NoticePastPaidHours, june(wed, 21, 0)}}},
		{name: "wednesday 23:00 over midnight: nothing paid", received: june(wed, 23, 0), wantEnd: june(thu, 2, 0), reserved: 180},
		{name: "sunday 16:30 with end 16:55: no notice", received: june(sun, 16, 30), end: ptr(june(sun, 16, 55)),
			wantEnd: june(sun, 16, 55), reserved: 25},
		{name: "sunday 16:30 cut by balance before 17:00: no notice", permit: permitWith(20, 0, 0), received: june(sun, 16, 30),
			wantEnd: june(sun, 16, 50), reserved: 20, notices: []noticeWant{{domain.NoticeCutByBalance, june(sun, 16, 50)}}},
		{name: "sunday 16:30 on the spring DST day", received: local(2025, time.March, 30, 16, 30, 0),
			wantEnd: local(2025, time.March, 30, 19, 30, 0), reserved: 180,
			notices: []noticeWant{{domain.NoticePastPaidHours, local(2025, time.March, 30, 17, 0, 0)}}},
		{name: "regime running on past midnight: notice at its real end", z: contiguous, received: june(mon, 23, 0),
			wantEnd: local(2025, time.June, mon+1, 2, 0, 0), reserved: 180,
			notices: []noticeWant{{domain.NoticePastPaidHours, local(2025, time.June, mon+1, 1, 0, 0)}}},
		{name: "no regime at all: no notice", z: noRegime, received: june(wed, 20, 0), wantEnd: june(wed, 23, 0), reserved: 180},
	})
}

// sessionAt is an open session of start..end with its full reservation.
func sessionAt(start, end time.Time) domain.SessionState {
	return domain.SessionState{State: domain.StateOpen, StartAt: start, PlannedEndAt: end,
		ReservedMinutes: domain.Minutes(end.Sub(start))}
}

type stopCase struct {
	name     string
	s        domain.SessionState
	at       *time.Time
	received time.Time
	now      time.Time // received when zero
	code     domain.Code
	kind     domain.StopKind
	end      time.Time
	charge   int
	release  int
	keep     int // NewReserved
}

func runStopCases(t *testing.T, tests []stopCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = tt.received
			}
			plan, err := domain.PlanStop(tt.s, domain.StopRequest{At: tt.at, ReceivedAt: tt.received}, now)
			if !wantCode(t, err, tt.code) {
				return
			}
			checkStop(t, plan, tt.kind, tt.end, tt.charge, tt.release, tt.keep)
			if plan.Kind == domain.StopSettle || plan.Kind == domain.StopCancel {
				if refund := plan.Release - plan.Charge; refund < 0 || refund > tt.s.ReservedMinutes {
					t.Errorf("refund %d outside 0..%d", refund, tt.s.ReservedMinutes)
				}
			}
			if plan.Kind == domain.StopShorten && plan.Release+plan.NewReserved != tt.s.ReservedMinutes {
				t.Errorf("shorten: release %d + kept %d != reserved %d", plan.Release, plan.NewReserved, tt.s.ReservedMinutes)
			}
		})
	}
}

func checkStop(t *testing.T, plan domain.StopPlan, kind domain.StopKind, end time.Time, charge, release, keep int) {
	t.Helper()
	if plan.Kind != kind {
		t.Errorf("kind %d, want %d (plan %+v)", plan.Kind, kind, plan)
		return
	}
	if kind == domain.StopNothing || kind == domain.StopNotDue {
		if plan != (domain.StopPlan{Kind: kind}) {
			t.Errorf("plan %+v, want nothing but the kind", plan)
		}
		return
	}
	if !plan.EndAt.Equal(end) {
		t.Errorf("end %s, want %s", plan.EndAt.In(ams), end.In(ams))
	}
	if plan.Charge != charge || plan.Release != release || plan.NewReserved != keep {
		t.Errorf("charge %d, release %d, kept %d; want %d, %d, %d",
			plan.Charge, plan.Release, plan.NewReserved, charge, release, keep)
	}
}

func TestStopEarlyChargesStartedMinutes(t *testing.T) {
	s := sessionAt(june(wed, 10, 0), june(wed, 13, 0))
	after := func(d time.Duration) time.Time { return june(wed, 10, 0).Add(d) }
	tests := []stopCase{
		{name: "10 min 1 s is 11 minutes", s: s, at: ptr(after(10*time.Minute + time.Second)), received: after(11 * time.Minute),
			kind: domain.StopSettle, end: after(10*time.Minute + time.Second), charge: 11, release: 180},
		{name: "exactly 10 minutes", s: s, at: ptr(after(10 * time.Minute)), received: after(11 * time.Minute),
			kind: domain.StopSettle, end: after(10 * time.Minute), charge: 10, release: 180},
		{name: "no at: stopped when received", s: s, received: after(42*time.Minute + 30*time.Second),
			kind: domain.StopSettle, end: after(42*time.Minute + 30*time.Second), charge: 43, release: 180},
		{name: "a nanosecond is a started minute", s: s, at: ptr(after(time.Nanosecond)), received: after(time.Minute),
			kind: domain.StopSettle, end: after(time.Nanosecond), charge: 1, release: 180},
		{name: "at the start: nothing charged", s: s, at: ptr(after(0)), received: after(time.Minute),
			kind: domain.StopSettle, end: after(0), charge: 0, release: 180},
		{name: "one second before the planned end", s: s, at: ptr(after(3*time.Hour - time.Second)), received: after(3*time.Hour - time.Second),
			kind: domain.StopSettle, end: after(3*time.Hour - time.Second), charge: 180, release: 180},
		{name: "balance-cut session stopped early", s: sessionAt(june(wed, 10, 0), june(wed, 10, 45)),
			at: ptr(after(20 * time.Minute)), received: after(21 * time.Minute),
			kind: domain.StopSettle, end: after(20 * time.Minute), charge: 20, release: 45},
		{name: "worker runs late: still charged to at", s: s, at: ptr(after(time.Hour)), received: after(time.Hour),
			now: after(2 * time.Hour), kind: domain.StopSettle, end: after(time.Hour), charge: 60, release: 180},
		{name: "over midnight 23:59 to 00:00", s: sessionAt(june(wed, 23, 0), june(thu, 2, 0)),
			at: ptr(june(thu, 0, 0)), received: june(thu, 0, 0),
			kind: domain.StopSettle, end: june(thu, 0, 0), charge: 60, release: 180},
	}
	runStopCases(t, tests)
	// refund = reserved - charged
	plan, err := domain.PlanStop(s, domain.StopRequest{At: ptr(after(10*time.Minute + time.Second)), ReceivedAt: after(11 * time.Minute)}, after(11*time.Minute))
	if wantCode(t, err, "") && plan.Release-plan.Charge != 169 {
		t.Errorf("refund %d minutes, want 180 - 11 = 169", plan.Release-plan.Charge)
	}
}

func TestStopAtBounds(t *testing.T) {
	s := sessionAt(june(wed, 10, 0), june(wed, 13, 0))
	lateStart := local(2025, time.June, wed, 10, 59, 30)
	late := sessionAt(lateStart, lateStart.Add(3*time.Hour))
	r := june(wed, 11, 0)
	runStopCases(t, []stopCase{
		{name: "exactly 60 seconds before receipt", s: s, at: ptr(june(wed, 10, 59)), received: r,
			kind: domain.StopSettle, end: june(wed, 10, 59), charge: 59, release: 180},
		{name: "61 seconds before receipt", s: s, at: ptr(local(2025, time.June, wed, 10, 58, 59)), received: r,
			code: domain.CodeInvalidStopTime},
		{name: "an hour before receipt", s: s, at: ptr(june(wed, 10, 0)), received: r, code: domain.CodeInvalidStopTime},
		{name: "before the start of an active session", s: late, at: ptr(local(2025, time.June, wed, 10, 59, 10)), received: r,
			code: domain.CodeInvalidStopTime},
		{name: "a second before the start of an active session", s: late, at: ptr(lateStart.Add(-time.Second)), received: r,
			code: domain.CodeInvalidStopTime},
		{name: "at the start of an active session", s: late, at: ptr(lateStart), received: r,
			kind: domain.StopSettle, end: lateStart, charge: 0, release: 180},
		{name: "at beyond the planned end: charged to the planned end", s: sessionAt(june(wed, 7, 0), june(wed, 10, 0)),
			received: r, kind: domain.StopSettle, end: june(wed, 10, 0), charge: 180, release: 180},
		{name: "at beyond the planned end, within tolerance", s: sessionAt(june(wed, 7, 0), june(wed, 10, 57)),
			at: ptr(local(2025, time.June, wed, 10, 59, 30)), received: r, kind: domain.StopSettle, end: june(wed, 10, 57), charge: 237, release: 237},
		{name: "at exactly the planned end", s: s, at: ptr(june(wed, 13, 0)), received: june(wed, 13, 1),
			kind: domain.StopSettle, end: june(wed, 13, 0), charge: 180, release: 180},
		// Nothing to shorten: the session keeps running and its auto-stop settles it.
		{name: "at in the future beyond a future planned end: runs on", s: s, at: ptr(june(wed, 14, 0)),
			received: r, kind: domain.StopNothing},
		{name: "at in the future beyond a past planned end: settled at the planned end", s: sessionAt(june(wed, 7, 0), june(wed, 10, 0)),
			at: ptr(june(wed, 12, 0)), received: r, kind: domain.StopSettle, end: june(wed, 10, 0), charge: 180, release: 180},
	})
}

func TestStopPlannedSessionCancels(t *testing.T) {
	s := sessionAt(june(wed, 12, 0), june(wed, 15, 0))
	r := june(wed, 11, 0)
	runStopCases(t, []stopCase{
		{name: "no at, before the start", s: s, received: r,
			kind: domain.StopCancel, end: june(wed, 12, 0), charge: 0, release: 180},
		{name: "at before the start", s: s, at: ptr(june(wed, 11, 30)), received: r,
			kind: domain.StopCancel, end: june(wed, 12, 0), charge: 0, release: 180},
		{name: "at exactly the start", s: s, at: ptr(june(wed, 12, 0)), received: r,
			kind: domain.StopCancel, end: june(wed, 12, 0), charge: 0, release: 180},
		{name: "at within tolerance before receipt", s: s, at: ptr(local(2025, time.June, wed, 10, 59, 30)), received: r,
			kind: domain.StopCancel, end: june(wed, 12, 0), charge: 0, release: 180},
		{name: "received before start, worker runs after start", s: s, received: june(wed, 11, 59),
			now: june(wed, 12, 30), kind: domain.StopCancel, end: june(wed, 12, 0), charge: 0, release: 180},
		{name: "a week ahead, cut reservation", s: sessionAt(june(wed+7, 10, 0), june(wed+7, 10, 40)), received: r,
			kind: domain.StopCancel, end: june(wed+7, 10, 0), charge: 0, release: 40},
		{name: "at too far before receipt", s: s, at: ptr(june(wed, 10, 58)), received: r, code: domain.CodeInvalidStopTime},
	})
}

// A stop may name an instant at most 60 seconds before the request was
// received, and never before the session's start: a stop backdated further
// would take back what enforcement was already told (and, chained, make
// parking free).
func TestStopBackdatedAtMostSixtySeconds(t *testing.T) {
	start := june(wed, 10, 0)
	s := sessionAt(start, june(wed, 13, 0))
	sec := func(n int) time.Duration { return time.Duration(n) * time.Second }
	runStopCases(t, []stopCase{
		// The fault of issue 10: started, 70 s parked, stopped "at the start".
		{name: "70 s after the start, at the start", s: s, at: ptr(start), received: start.Add(sec(70)),
			code: domain.CodeInvalidStopTime},
		{name: "an hour after the start, at the start", s: s, at: ptr(start), received: start.Add(time.Hour),
			code: domain.CodeInvalidStopTime},
		{name: "an hour after the start, 61 s back", s: s, at: ptr(start.Add(time.Hour - sec(61))), received: start.Add(time.Hour),
			code: domain.CodeInvalidStopTime},
		{name: "5 minutes back (the old tolerance)", s: s, at: ptr(start.Add(time.Hour - 5*time.Minute)), received: start.Add(time.Hour),
			code: domain.CodeInvalidStopTime},
		{name: "61 s back across a late worker", s: s, at: ptr(start.Add(time.Hour - sec(61))), received: start.Add(time.Hour),
			now: start.Add(2 * time.Hour), code: domain.CodeInvalidStopTime},
		{name: "an hour after the start, 60 s back: clock skew", s: s, at: ptr(start.Add(time.Hour - sec(60))), received: start.Add(time.Hour),
			kind: domain.StopSettle, end: start.Add(time.Hour - sec(60)), charge: 59, release: 180},
		{name: "an hour after the start, 1 s back", s: s, at: ptr(start.Add(time.Hour - sec(1))), received: start.Add(time.Hour),
			kind: domain.StopSettle, end: start.Add(time.Hour - sec(1)), charge: 60, release: 180},
		{name: "30 s after the start, at the start: within the skew", s: s, at: ptr(start), received: start.Add(sec(30)),
			kind: domain.StopSettle, end: start, charge: 0, release: 180},
		{name: "30 s after the start, 40 s back: before the start", s: s, at: ptr(start.Add(-sec(10))), received: start.Add(sec(30)),
			code: domain.CodeInvalidStopTime},
		{name: "after the planned end, at more than 60 s back", s: s, at: ptr(june(wed, 12, 50)), received: june(wed, 13, 5),
			code: domain.CodeInvalidStopTime},
		{name: "no at: the receipt", s: s, received: start.Add(sec(70)),
			kind: domain.StopSettle, end: start.Add(sec(70)), charge: 2, release: 180},
		{name: "at in the future shortens", s: s, at: ptr(start.Add(2 * time.Hour)), received: start.Add(sec(70)),
			kind: domain.StopShorten, end: start.Add(2 * time.Hour), release: 60, keep: 120},
	})
}

func TestStopInFutureShortens(t *testing.T) {
	s := sessionAt(june(wed, 10, 0), june(wed, 13, 0))
	r := june(wed, 11, 0)
	runStopCases(t, []stopCase{
		{name: "active session, stop at 12:00", s: s, at: ptr(june(wed, 12, 0)), received: r,
			kind: domain.StopShorten, end: june(wed, 12, 0), release: 60, keep: 120},
		{name: "started minute kept", s: s, at: ptr(local(2025, time.June, wed, 11, 0, 30)), received: r,
			kind: domain.StopShorten, end: local(2025, time.June, wed, 11, 0, 30), release: 119, keep: 61},
		{name: "one minute before the planned end", s: s, at: ptr(june(wed, 12, 59)), received: r,
			kind: domain.StopShorten, end: june(wed, 12, 59), release: 1, keep: 179},
		{name: "planned session shortened", s: sessionAt(june(wed, 12, 0), june(wed, 15, 0)), at: ptr(june(wed, 13, 0)), received: r,
			kind: domain.StopShorten, end: june(wed, 13, 0), release: 120, keep: 60},
		{name: "balance-cut session shortened", s: sessionAt(june(wed, 10, 0), june(wed, 11, 30)), at: ptr(june(wed, 11, 10)), received: r,
			kind: domain.StopShorten, end: june(wed, 11, 10), release: 20, keep: 70},
		{name: "at already past when the worker runs: settles", s: s, at: ptr(june(wed, 11, 2)), received: r,
			now: june(wed, 11, 5), kind: domain.StopSettle, end: june(wed, 11, 2), charge: 62, release: 180},
		{name: "at equal to now: settles", s: s, at: ptr(r), received: r,
			kind: domain.StopSettle, end: r, charge: 60, release: 180},
	})
}

func TestStopAlreadyStoppedIsNoop(t *testing.T) {
	r := june(wed, 11, 0)
	for _, st := range []domain.State{domain.StateStopped, domain.StateCancelled} {
		s := sessionAt(june(wed, 10, 0), june(wed, 13, 0))
		s.State = st
		runStopCases(t, []stopCase{
			{name: string(st) + ": plain stop", s: s, received: r, kind: domain.StopNothing},
			{name: string(st) + ": at that would be invalid", s: s, at: ptr(june(wed, 9, 0)), received: r, kind: domain.StopNothing},
			{name: string(st) + ": at in the future", s: s, at: ptr(june(wed, 12, 0)), received: r, kind: domain.StopNothing},
		})
		if got := domain.PlanAutoStop(s, june(wed, 13, 10)); got != (domain.StopPlan{Kind: domain.StopNothing}) {
			t.Errorf("%s: auto-stop = %+v, want StopNothing", st, got)
		}
	}
}

func TestAutoStopChargesUpToPlannedEnd(t *testing.T) {
	s := sessionAt(june(wed, 10, 0), june(wed, 13, 0))
	tests := []struct {
		name    string
		s       domain.SessionState
		now     time.Time
		kind    domain.StopKind
		end     time.Time
		charge  int
		release int
	}{
		{"on time", s, june(wed, 13, 0), domain.StopSettle, june(wed, 13, 0), 180, 180},
		{"10 minutes late", s, june(wed, 13, 10), domain.StopSettle, june(wed, 13, 0), 180, 180},
		{"a day late", s, june(thu, 13, 0), domain.StopSettle, june(wed, 13, 0), 180, 180},
		{"a minute early: not due", s, june(wed, 12, 59), domain.StopNotDue, time.Time{}, 0, 0},
		{"just over a second early: not due", s, june(wed, 13, 0).Add(-domain.AutoStopEarliness - time.Nanosecond), domain.StopNotDue, time.Time{}, 0, 0},
		// Redis schedules in whole seconds: a task up to a second early settles, at the planned end.
		{"exactly a second early: settled at the planned end", s, june(wed, 13, 0).Add(-domain.AutoStopEarliness), domain.StopSettle, june(wed, 13, 0), 180, 180},
		{"half a second early: settled at the planned end", s, june(wed, 13, 0).Add(-500 * time.Millisecond), domain.StopSettle, june(wed, 13, 0), 180, 180},
		{"balance-cut session", sessionAt(june(wed, 10, 0), june(wed, 11, 0)), june(wed, 11, 7),
			domain.StopSettle, june(wed, 11, 0), 60, 60},
		{"sub-minute session charges its started minute", sessionAt(june(wed, 10, 0), local(2025, time.June, wed, 10, 0, 30)),
			june(wed, 10, 5), domain.StopSettle, local(2025, time.June, wed, 10, 0, 30), 1, 1},
		{"invalid-day cut at saturday 00:00", sessionAt(june(fri, 22, 30), june(sat, 0, 0)), june(sat, 0, 1),
			domain.StopSettle, june(sat, 0, 0), 90, 90},
		{"charge never exceeds the reservation",
			domain.SessionState{State: domain.StateOpen, StartAt: june(wed, 10, 0), PlannedEndAt: june(wed, 13, 0), ReservedMinutes: 60},
			june(wed, 13, 10), domain.StopSettle, june(wed, 13, 0), 60, 60},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkStop(t, domain.PlanAutoStop(tt.s, tt.now), tt.kind, tt.end, tt.charge, tt.release, 0)
		})
	}
}

func TestDSTChargedByElapsedMinutes(t *testing.T) {
	// Spring forward: Sunday 30 March 2025, 02:00 CET -> 03:00 CEST (01:00Z).
	// Fall back: Sunday 26 October 2025, 03:00 CEST -> 02:00 CET (01:00Z).
	spring := func(hh, mm int) time.Time { return local(2025, time.March, 30, hh, mm, 0) }
	fall := func(hh, mm int) time.Time { return local(2025, time.October, 26, hh, mm, 0) } // not for 02:xx
	t.Run("start", func(t *testing.T) {
		runStartCases(t, []startCase{
			{name: "spring: no end is 3h of real time", received: spring(1, 30),
				wantEnd: spring(5, 30), reserved: 180},
			{name: "spring: 01:00 to 04:00 wall clock is 2 real hours", received: spring(1, 0), end: ptr(spring(4, 0)),
				wantEnd: spring(4, 0), reserved: 120},
			{name: "spring: 01:00 to 05:00 wall clock is 3 real hours", received: spring(1, 0), end: ptr(spring(5, 0)),
				wantEnd: spring(5, 0), reserved: 180},
			{name: "spring: 01:00 to 05:01 is over 3 real hours", received: spring(1, 0), end: ptr(spring(5, 1)),
				code: domain.CodeInvalidEnd},
			{name: "fall: no end is 3h of real time", received: fall(1, 30),
				wantEnd: fall(3, 30), reserved: 180},
			{name: "fall: 01:00 to 03:00 wall clock is 3 real hours", received: fall(1, 0), end: ptr(fall(3, 0)),
				wantEnd: fall(3, 0), reserved: 180},
			{name: "fall: 01:00 to 03:01 wall clock is over 3 real hours", received: fall(1, 0), end: ptr(fall(3, 1)),
				code: domain.CodeInvalidEnd},
			{name: "fall: 00:30 to 01:30Z (02:30 CET) is 3 real hours", received: fall(0, 30), end: ptr(utc(2025, time.October, 26, 1, 30, 0)),
				wantEnd: utc(2025, time.October, 26, 1, 30, 0), reserved: 180},
		})
	})
	t.Run("stop and auto-stop", func(t *testing.T) {
		springS := sessionAt(spring(1, 30), spring(5, 30))
		fallS := sessionAt(fall(1, 30), fall(3, 30))
		if springS.ReservedMinutes != 180 || fallS.ReservedMinutes != 180 {
			t.Fatalf("test data: reserved %d / %d, want 180", springS.ReservedMinutes, fallS.ReservedMinutes)
		}
		// 02:15 CEST and 02:15 CET: the same wall clock, an hour apart.
		first := utc(2025, time.October, 26, 0, 15, 0).In(ams)
		second := utc(2025, time.October, 26, 1, 15, 0).In(ams)
		runStopCases(t, []stopCase{
			{name: "spring: 01:30 CET to 03:30 CEST is 60 minutes", s: springS, at: ptr(spring(3, 30)), received: spring(3, 31),
				kind: domain.StopSettle, end: spring(3, 30), charge: 60, release: 180},
			{name: "spring: 01:30 to 01:59:30 is 30 minutes", s: springS, at: ptr(local(2025, time.March, 30, 1, 59, 30)), received: spring(3, 0),
				kind: domain.StopSettle, end: local(2025, time.March, 30, 1, 59, 30), charge: 30, release: 180},
			{name: "fall: 01:30 CEST to 02:30 CET is 120 minutes", s: fallS, at: ptr(utc(2025, time.October, 26, 1, 30, 0)),
				received: utc(2025, time.October, 26, 1, 31, 0), kind: domain.StopSettle,
				end: utc(2025, time.October, 26, 1, 30, 0), charge: 120, release: 180},
			{name: "fall: 02:15 CEST to 02:15 CET is 60 minutes", s: sessionAt(first, first.Add(3*time.Hour)), at: ptr(second), received: second,
				kind: domain.StopSettle, end: second, charge: 60, release: 180},
			{name: "fall: shorten across the change keeps real minutes", s: fallS, at: ptr(fall(3, 0)), received: fall(1, 45),
				kind: domain.StopShorten, end: fall(3, 0), release: 30, keep: 150},
		})
		for _, c := range []struct {
			name string
			s    domain.SessionState
			now  time.Time
		}{
			{"spring auto-stop", springS, spring(5, 40)},
			{"fall auto-stop", fallS, fall(3, 40)},
		} {
			checkStop(t, domain.PlanAutoStop(c.s, c.now), domain.StopSettle, c.s.PlannedEndAt, 180, 180, 0)
		}
	})
}

func TestMinutes(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{-time.Hour, 0},
		{-time.Nanosecond, 0},
		{0, 0},
		{time.Nanosecond, 1},
		{59 * time.Second, 1},
		{time.Minute, 1},
		{time.Minute + time.Nanosecond, 2},
		{10*time.Minute + time.Second, 11},
		{3 * time.Hour, 180},
		{3*time.Hour + time.Second, 181},
	}
	for _, tt := range tests {
		if got := domain.Minutes(tt.d); got != tt.want {
			t.Errorf("Minutes(%s) = %d, want %d", tt.d, got, tt.want)
		}
	}
}

func TestSessionStatus(t *testing.T) {
	start := june(wed, 12, 0)
	tests := []struct {
		state domain.State
		now   time.Time
		want  string
	}{
		{domain.StateOpen, june(wed, 11, 59), domain.StatusPlanned},
		{domain.StateOpen, start, domain.StatusActive},
		{domain.StateOpen, june(wed, 18, 0), domain.StatusActive},
		{domain.StateStopped, june(wed, 11, 0), domain.StatusStopped},
		{domain.StateCancelled, june(wed, 13, 0), domain.StatusCancelled},
	}
	for _, tt := range tests {
		if got := domain.StatusAt(tt.state, start, tt.now); got != tt.want {
			t.Errorf("StatusAt(%s, start 12:00, %s) = %s, want %s", tt.state, tt.now.In(ams).Format("15:04"), got, tt.want)
		}
	}
}
