package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// Zones whose clocks change at local midnight (verified in the tz database):
// Santiago jumps 00:00→01:00 on the first Sunday of September and falls back
// 24:00→23:00 on the Saturday before the first Sunday of April; Havana jumps
// 00:00→01:00 in March and falls back 01:00→00:00 (midnight twice) in November;
// Beirut jumps 00:00→01:00 on the last Sunday of March; the Azores fall back
// 01:00→00:00 on the last Sunday of October.
var (
	santiago = mustLocation("America/Santiago")
	havana   = mustLocation("America/Havana")
	beirut   = mustLocation("Asia/Beirut")
	azores   = mustLocation("Atlantic/Azores")
)

func mustLocation(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// A local day starts at the first instant of its date in the zone's time zone:
// 01:00 where clocks jump over midnight, the first of two midnights where they
// fall back over it (DOMAIN.md "Money and time, precisely").
func TestLocalDayStartsAtItsFirstInstant(t *testing.T) {
	tests := []struct {
		name string
		loc  *time.Location
		y    int
		m    time.Month
		d    int
		want time.Time // UTC
	}{
		{"Santiago, Saturday before the jump (-04)", santiago, 2026, time.September, 5, utc(2026, time.September, 5, 4, 0, 0)},
		{"Santiago, Sunday of the jump: 01:00 -03", santiago, 2026, time.September, 6, utc(2026, time.September, 6, 4, 0, 0)},
		{"Santiago, 5 September 2027 is the jump: 01:00 -03", santiago, 2027, time.September, 5, utc(2027, time.September, 5, 4, 0, 0)},
		{"Santiago, 5 September 2028, after the jump (-03)", santiago, 2028, time.September, 5, utc(2028, time.September, 5, 3, 0, 0)},
		{"Santiago, Sunday after the fall-back at 24:00 (-04)", santiago, 2026, time.April, 5, utc(2026, time.April, 5, 4, 0, 0)},
		{"Santiago, Saturday of the fall-back (-03)", santiago, 2026, time.April, 4, utc(2026, time.April, 4, 3, 0, 0)},
		{"Havana, Sunday of the jump: 01:00 -04", havana, 2026, time.March, 8, utc(2026, time.March, 8, 5, 0, 0)},
		{"Havana, fall-back day: the first midnight (-04)", havana, 2026, time.November, 1, utc(2026, time.November, 1, 4, 0, 0)},
		{"Havana, the day after the fall-back (-05)", havana, 2026, time.November, 2, utc(2026, time.November, 2, 5, 0, 0)},
		{"Beirut, Sunday of the jump: 01:00 +03", beirut, 2026, time.March, 29, utc(2026, time.March, 28, 22, 0, 0)},
		{"Beirut, Sunday after the fall-back at 24:00 (+02)", beirut, 2026, time.October, 25, utc(2026, time.October, 24, 22, 0, 0)},
		{"Azores, fall-back day: the first midnight (+00)", azores, 2026, time.October, 25, utc(2026, time.October, 25, 0, 0, 0)},
		{"Azores, Sunday of the jump: 01:00 +00", azores, 2026, time.March, 29, utc(2026, time.March, 29, 1, 0, 0)},
		{"Amsterdam, spring DST day (change at 02:00)", ams, 2026, time.March, 29, utc(2026, time.March, 28, 23, 0, 0)},
		{"Amsterdam, autumn DST day (change at 03:00)", ams, 2026, time.October, 25, utc(2026, time.October, 24, 22, 0, 0)},
		{"Amsterdam, new year", ams, 2026, time.January, 1, utc(2025, time.December, 31, 23, 0, 0)},
		{"Amsterdam, day 32 of December is 1 January", ams, 2025, time.December, 32, utc(2025, time.December, 31, 23, 0, 0)},
		{"UTC", time.UTC, 2026, time.September, 6, utc(2026, time.September, 6, 0, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.DayStart(tt.loc, tt.y, tt.m, tt.d)
			if !got.Equal(tt.want) {
				t.Fatalf("DayStart = %s (%s), want %s", got.UTC(), got.In(tt.loc), tt.want)
			}
			// The definition itself: the date begins here and not a moment before.
			wy, wm, wd := time.Date(tt.y, tt.m, tt.d, 0, 0, 0, 0, time.UTC).Date()
			if y, m, d := got.In(tt.loc).Date(); y != wy || m != wm || d != wd {
				t.Errorf("DayStart is on %d-%02d-%02d locally, want %d-%02d-%02d", y, m, d, wy, wm, wd)
			}
			if y, m, d := got.Add(-time.Nanosecond).In(tt.loc).Date(); y == wy && m == wm && d == wd {
				t.Errorf("the instant before DayStart is on the same date")
			}
		})
	}
}

// Every day of every zone above, for two years, starts where its date begins.
func TestEveryLocalDayStartsAtItsFirstInstant(t *testing.T) {
	for _, loc := range []*time.Location{santiago, havana, beirut, azores, ams, time.UTC} {
		for d := range 2 * 366 {
			y, m, dd := time.Date(2026, time.January, 1+d, 0, 0, 0, 0, time.UTC).Date()
			got := domain.DayStart(loc, y, m, dd)
			if gy, gm, gd := got.In(loc).Date(); gy != y || gm != m || gd != dd {
				t.Fatalf("%s: DayStart(%d-%02d-%02d) = %s, on another date", loc, y, m, dd, got.In(loc))
			}
			if py, pm, pd := got.Add(-time.Nanosecond).In(loc).Date(); py == y && pm == m && pd == dd {
				t.Fatalf("%s: DayStart(%d-%02d-%02d) = %s, but the date began earlier", loc, y, m, dd, got.In(loc))
			}
		}
	}
}

// santiagoZone is a zone in Santiago, Sunday invalid, year starting 5 September.
func santiagoZone(t *testing.T, edit func(*domain.ZoneSpec)) *domain.Zone {
	return zone(t, func(s *domain.ZoneSpec) {
		s.TimeZone = "America/Santiago"
		s.InvalidWeekdays = []string{"sun"}
		s.YearStarts = "09-05"
		if edit != nil {
			edit(s)
		}
	})
}

// The end of a session is cut at the start of an invalid local day, which is
// 01:00 where clocks jump over midnight: a start on Saturday 22:30 in Santiago
// before the jump reserves 90 minutes (22:30-24:00 -04), not 180.
func TestEndCutAtInvalidDayThatStartsAfterAGap(t *testing.T) {
	tests := []struct {
		name    string
		z       *domain.Zone
		start   time.Time
		end     time.Time
		minutes int
	}{
		{"Santiago, Saturday 22:30 before the jump", santiagoZone(t, nil),
			time.Date(2026, time.September, 5, 22, 30, 0, 0, santiago), utc(2026, time.September, 6, 4, 0, 0), 90},
		{"Santiago, Saturday 22:30 on the fall-back night (25 hours)", santiagoZone(t, nil),
			time.Date(2026, time.April, 4, 22, 30, 0, 0, santiago), utc(2026, time.April, 5, 4, 0, 0), 150},
		{"Beirut, Saturday 22:30 before the jump", zone(t, func(s *domain.ZoneSpec) {
			s.TimeZone = "Asia/Beirut"
			s.InvalidWeekdays = []string{"sun"}
		}), time.Date(2026, time.March, 28, 22, 30, 0, 0, beirut), utc(2026, time.March, 28, 22, 0, 0), 90},
		{"Havana, Saturday 22:30 before the jump", zone(t, func(s *domain.ZoneSpec) {
			s.TimeZone = "America/Havana"
			s.InvalidWeekdays = []string{"sun"}
		}), time.Date(2026, time.March, 7, 22, 30, 0, 0, havana), utc(2026, time.March, 8, 5, 0, 0), 90},
		{"Havana, Saturday 23:30 before the double midnight", zone(t, func(s *domain.ZoneSpec) {
			s.TimeZone = "America/Havana"
			s.InvalidWeekdays = []string{"sun"}
		}), time.Date(2026, time.October, 31, 23, 30, 0, 0, havana), utc(2026, time.November, 1, 4, 0, 0), 30},
		{"Amsterdam, Friday 22:30 (Saturday invalid)", centrum(t),
			june(fri, 22, 30), june(sat, 0, 0), 90},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := domain.PlanSession(tt.z, rich(), domain.StartRequest{Plate: "AB12CD", StartAt: &tt.start, ReceivedAt: tt.start})
			if !wantCode(t, err, "") {
				return
			}
			if !plan.PlannedEndAt.Equal(tt.end) || plan.ReservedMinutes != tt.minutes {
				t.Fatalf("planned end %s, %d minutes; want %s, %d minutes", plan.PlannedEndAt.UTC(), plan.ReservedMinutes, tt.end, tt.minutes)
			}
			if len(plan.Notices) == 0 || plan.Notices[0].Code != domain.NoticeCutInvalidDay {
				t.Fatalf("notices %+v, want %s first", plan.Notices, domain.NoticeCutInvalidDay)
			}
			// What the start reserves and what enforcement answers agree: the
			// session ends exactly where the invalid day begins.
			if tt.z.ValidOn(plan.PlannedEndAt) || !tt.z.ValidOn(plan.PlannedEndAt.Add(-time.Nanosecond)) {
				t.Fatalf("the cut %s is not where the invalid day begins", plan.PlannedEndAt.In(tt.z.Location))
			}
		})
	}
}

// The paid regime's windows are wall-clock times of their local day: a window
// to 24:00 on the Saturday before Santiago's jump ends where Sunday starts
// (01:00 -03), and a session across it is told so.
func TestPaidRegimeWindowEndsAtTheNextDaysFirstInstant(t *testing.T) {
	z := santiagoZone(t, func(s *domain.ZoneSpec) {
		s.InvalidWeekdays = []string{}
		s.PaidHours = []domain.PaidWindow{{Days: []string{"sat"}, From: "20:00", To: "24:00"}}
	})
	start := time.Date(2026, time.September, 5, 22, 30, 0, 0, santiago)
	plan, err := domain.PlanSession(z, rich(), domain.StartRequest{Plate: "AB12CD", StartAt: &start, ReceivedAt: start})
	if !wantCode(t, err, "") {
		return
	}
	checkNotices(t, plan.Notices, []noticeWant{{domain.NoticePastPaidHours, utc(2026, time.September, 6, 4, 0, 0)}})
	if !z.InPaidRegime(utc(2026, time.September, 6, 4, 0, 0).Add(-time.Second)) || z.InPaidRegime(utc(2026, time.September, 6, 4, 0, 0)) {
		t.Fatalf("the regime does not end at Sunday's first instant")
	}
}

// Plan-ahead days are counted on the zone's calendar: received Sunday 00:30, a
// start may lie up to 00:30 seven days later, which on the Sunday of Santiago's
// jump does not exist, so the limit is 01:00, when the clocks land.
func TestPlanAheadDaysAcrossAGapAtMidnight(t *testing.T) {
	z := santiagoZone(t, func(s *domain.ZoneSpec) { s.InvalidWeekdays = []string{} })
	received := time.Date(2026, time.August, 30, 0, 30, 0, 0, santiago)
	tests := []struct {
		name  string
		start time.Time
		code  domain.Code
	}{
		{"Saturday 23:45 -04, before the limit", utc(2026, time.September, 6, 3, 45, 0), ""},
		{"Sunday 01:00 -03, at the limit", utc(2026, time.September, 6, 4, 0, 0), ""},
		{"Sunday 01:00:01 -03", utc(2026, time.September, 6, 4, 0, 1), domain.CodeStartTooFarAhead},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := domain.PlanSession(z, rich(), domain.StartRequest{Plate: "AB12CD", StartAt: &tt.start, ReceivedAt: received})
			wantCode(t, err, tt.code)
		})
	}
}
