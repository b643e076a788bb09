package domain_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

func TestZoneSpecValidation(t *testing.T) {
	window := func(days []string, from, to string) func(*domain.ZoneSpec) {
		return func(s *domain.ZoneSpec) {
			s.PaidHours = []domain.PaidWindow{{Days: days, From: from, To: to}}
		}
	}
	tests := []struct {
		name string
		code string // zone code, CENTRUM when empty
		edit func(*domain.ZoneSpec)
		bad  bool
	}{
		{name: "the centre", edit: func(*domain.ZoneSpec) {}},
		{name: "code with digits and underscore", code: "OOST_2"},
		{name: "code of 32 characters", code: strings.Repeat("Z", 32)},
		{name: "code lower case", code: "centrum", bad: true},
		{name: "code with dash", code: "CEN-TRUM", bad: true},
		{name: "code with space", code: "CENTRUM ", bad: true},
		{name: "code of 33 characters", code: strings.Repeat("Z", 33), bad: true},
		{name: "code with accent", code: "ÉÉN", bad: true},
		{name: "code with newline", code: "CENTRUM\n", bad: true},

		{name: "empty name", edit: func(s *domain.ZoneSpec) { s.Name = "" }, bad: true},
		{name: "blank name", edit: func(s *domain.ZoneSpec) { s.Name = "   " }, bad: true},
		{name: "name of 201 characters", edit: func(s *domain.ZoneSpec) { s.Name = strings.Repeat("n", 201) }, bad: true},
		{name: "name of 200 characters", edit: func(s *domain.ZoneSpec) { s.Name = strings.Repeat("n", 200) }},

		{name: "time zone UTC", edit: func(s *domain.ZoneSpec) { s.TimeZone = "UTC" }},
		{name: "time zone New York", edit: func(s *domain.ZoneSpec) { s.TimeZone = "America/New_York" }},
		{name: "unknown time zone", edit: func(s *domain.ZoneSpec) { s.TimeZone = "Mars/Olympus_Mons" }, bad: true},
		{name: "time zone Local", edit: func(s *domain.ZoneSpec) { s.TimeZone = "Local" }, bad: true},
		{name: "time zone path", edit: func(s *domain.ZoneSpec) { s.TimeZone = "../etc/passwd" }, bad: true},

		{name: "tariff zero", edit: func(s *domain.ZoneSpec) { s.TariffCentsPerHour = 0 }, bad: true},
		{name: "tariff negative", edit: func(s *domain.ZoneSpec) { s.TariffCentsPerHour = -210 }, bad: true},
		{name: "tariff one cent", edit: func(s *domain.ZoneSpec) { s.TariffCentsPerHour = 1 }},
		{name: "tariff 1000 euro", edit: func(s *domain.ZoneSpec) { s.TariffCentsPerHour = 100_000 }},
		{name: "tariff above 1000 euro", edit: func(s *domain.ZoneSpec) { s.TariffCentsPerHour = 100_001 }, bad: true},

		{name: "window to 24:00", edit: window([]string{"mon"}, "18:00", "24:00")},
		{name: "window from 00:00", edit: window([]string{"mon"}, "00:00", "02:00")},
		{name: "window from after to", edit: window([]string{"mon"}, "21:00", "09:00"), bad: true},
		{name: "window from equal to", edit: window([]string{"mon"}, "09:00", "09:00"), bad: true},
		{name: "window from 24:00", edit: window([]string{"mon"}, "24:00", "24:00"), bad: true},
		{name: "window to 24:01", edit: window([]string{"mon"}, "09:00", "24:01"), bad: true},
		{name: "window to 25:00", edit: window([]string{"mon"}, "09:00", "25:00"), bad: true},
		{name: "window minute 60", edit: window([]string{"mon"}, "09:60", "21:00"), bad: true},
		{name: "window clock without leading zero", edit: window([]string{"mon"}, "9:00", "21:00"), bad: true},
		{name: "window clock with dot", edit: window([]string{"mon"}, "09.00", "21:00"), bad: true},
		{name: "window clock empty", edit: window([]string{"mon"}, "", "21:00"), bad: true},
		// HH:MM means two digits, a colon and two digits: no signs, no spaces.
		{name: "window clock with plus sign", edit: window([]string{"mon"}, "+9:00", "21:00"), bad: true},
		{name: "window clock with leading space", edit: window([]string{"mon"}, " 9:00", "21:00"), bad: true},
		{name: "window clock with signed minutes", edit: window([]string{"mon"}, "09:+5", "21:00"), bad: true},
		{name: "window clock negative zero hour", edit: window([]string{"mon"}, "-0:30", "21:00"), bad: true},
		{name: "window without days", edit: window(nil, "09:00", "21:00"), bad: true},
		{name: "window day capitalised", edit: window([]string{"Mon"}, "09:00", "21:00"), bad: true},
		{name: "window day spelled out", edit: window([]string{"monday"}, "09:00", "21:00"), bad: true},
		{name: "window day empty", edit: window([]string{""}, "09:00", "21:00"), bad: true},
		{name: "no paid hours at all", edit: func(s *domain.ZoneSpec) { s.PaidHours = []domain.PaidWindow{} }},

		{name: "invalid weekday unknown", edit: func(s *domain.ZoneSpec) { s.InvalidWeekdays = []string{"saturday"} }, bad: true},
		{name: "invalid weekday capitalised", edit: func(s *domain.ZoneSpec) { s.InvalidWeekdays = []string{"Sat"} }, bad: true},
		{name: "invalid weekdays two", edit: func(s *domain.ZoneSpec) { s.InvalidWeekdays = []string{"sat", "sun"} }},

		{name: "max session negative", edit: func(s *domain.ZoneSpec) { s.MaxSessionMinutes = -1 }, bad: true},
		{name: "max session a day", edit: func(s *domain.ZoneSpec) { s.MaxSessionMinutes = 1440 }},
		{name: "max session above a day", edit: func(s *domain.ZoneSpec) { s.MaxSessionMinutes = 1441 }, bad: true},
		{name: "plan ahead negative", edit: func(s *domain.ZoneSpec) { s.MaxPlanAheadDays = -1 }, bad: true},
		{name: "plan ahead 366", edit: func(s *domain.ZoneSpec) { s.MaxPlanAheadDays = 366 }},
		{name: "plan ahead 367", edit: func(s *domain.ZoneSpec) { s.MaxPlanAheadDays = 367 }, bad: true},
		{name: "purchase limit negative", edit: func(s *domain.ZoneSpec) { s.AnnualPurchaseLimitHours = -5 }, bad: true},
		{name: "purchase limit above a year", edit: func(s *domain.ZoneSpec) { s.AnnualPurchaseLimitHours = 8785 }, bad: true},
		{name: "usage limit negative", edit: func(s *domain.ZoneSpec) { s.AnnualUsageLimitHours = -5 }, bad: true},
		{name: "usage limit above a year", edit: func(s *domain.ZoneSpec) { s.AnnualUsageLimitHours = 8785 }, bad: true},
		{name: "limits a leap year", edit: func(s *domain.ZoneSpec) { s.AnnualPurchaseLimitHours, s.AnnualUsageLimitHours = 8784, 8784 }},

		{name: "year starts 04-01", edit: func(s *domain.ZoneSpec) { s.YearStarts = "04-01" }},
		{name: "year starts 02-28", edit: func(s *domain.ZoneSpec) { s.YearStarts = "02-28" }},
		{name: "year starts 12-31", edit: func(s *domain.ZoneSpec) { s.YearStarts = "12-31" }},
		{name: "year starts 02-29", edit: func(s *domain.ZoneSpec) { s.YearStarts = "02-29" }, bad: true},
		{name: "year starts 02-30", edit: func(s *domain.ZoneSpec) { s.YearStarts = "02-30" }, bad: true},
		{name: "year starts 04-31", edit: func(s *domain.ZoneSpec) { s.YearStarts = "04-31" }, bad: true},
		{name: "year starts month 13", edit: func(s *domain.ZoneSpec) { s.YearStarts = "13-01" }, bad: true},
		{name: "year starts month 0", edit: func(s *domain.ZoneSpec) { s.YearStarts = "00-10" }, bad: true},
		{name: "year starts day 0", edit: func(s *domain.ZoneSpec) { s.YearStarts = "04-00" }, bad: true},
		{name: "year starts short form", edit: func(s *domain.ZoneSpec) { s.YearStarts = "4-1" }, bad: true},
		{name: "year starts without dash", edit: func(s *domain.ZoneSpec) { s.YearStarts = "0401" }, bad: true},
		{name: "year starts with slash", edit: func(s *domain.ZoneSpec) { s.YearStarts = "04/01" }, bad: true},
		{name: "year starts letters", edit: func(s *domain.ZoneSpec) { s.YearStarts = "ap-01" }, bad: true},
		{name: "year starts with leading space", edit: func(s *domain.ZoneSpec) { s.YearStarts = " 4-01" }, bad: true},
		{name: "year starts with plus sign", edit: func(s *domain.ZoneSpec) { s.YearStarts = "+4-01" }, bad: true},
		{name: "year starts with signed day", edit: func(s *domain.ZoneSpec) { s.YearStarts = "04-+1" }, bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := centrumSpec()
			if tt.edit != nil {
				tt.edit(&spec)
			}
			code := tt.code
			if code == "" {
				code = "CENTRUM"
			}
			z, err := domain.CompileZone(code, spec)
			if tt.bad {
				wantCode(t, err, domain.CodeInvalidZone)
				if err != nil && z != nil {
					t.Errorf("CompileZone returned a zone along with its error")
				}
				if err != nil && len(err.Error()) > 300 {
					t.Errorf("error message of %d bytes echoes too much input", len(err.Error()))
				}
				return
			}
			if !wantCode(t, err, "") {
				return
			}
			if z.Code != code {
				t.Errorf("z.Code = %q, want %q", z.Code, code)
			}
		})
	}
}

func TestZoneDefaults(t *testing.T) {
	z, err := domain.CompileZone("OOST", domain.ZoneSpec{Name: "  Oost  ", TariffCentsPerHour: 180})
	if !wantCode(t, err, "") {
		return
	}
	if z.Name != "Oost" || z.Spec.Name != "Oost" {
		t.Errorf("name %q / %q, want it trimmed to Oost", z.Name, z.Spec.Name)
	}
	if z.Location.String() != "Europe/Amsterdam" || z.Spec.TimeZone != domain.DefaultTimeZone {
		t.Errorf("time zone %s / %q, want Europe/Amsterdam", z.Location, z.Spec.TimeZone)
	}
	if z.TariffCentsPerHour != 180 {
		t.Errorf("tariff %d, want 180", z.TariffCentsPerHour)
	}
	if z.MaxSessionMinutes != 180 || z.Spec.MaxSessionMinutes != 180 {
		t.Errorf("max session %d / %d, want 180", z.MaxSessionMinutes, z.Spec.MaxSessionMinutes)
	}
	if z.MaxPlanAheadDays != 7 || z.Spec.MaxPlanAheadDays != 7 {
		t.Errorf("plan ahead %d / %d, want 7", z.MaxPlanAheadDays, z.Spec.MaxPlanAheadDays)
	}
	if z.AnnualPurchaseLimitHours != 500 || z.Spec.AnnualPurchaseLimitHours != 500 {
		t.Errorf("purchase limit %d / %d, want 500", z.AnnualPurchaseLimitHours, z.Spec.AnnualPurchaseLimitHours)
	}
	if z.AnnualUsageLimitHours != 500 || z.Spec.AnnualUsageLimitHours != 500 {
		t.Errorf("usage limit %d / %d, want 500", z.AnnualUsageLimitHours, z.Spec.AnnualUsageLimitHours)
	}
	if z.YearStarts != (domain.MonthDay{Month: time.January, Day: 1}) || z.Spec.YearStarts != "01-01" {
		t.Errorf("year starts %v / %q, want 01-01", z.YearStarts, z.Spec.YearStarts)
	}
	if !reflect.DeepEqual(z.Spec.PaidHours, domain.DefaultPaidHours()) {
		t.Errorf("paid hours %+v, want the default %+v", z.Spec.PaidHours, domain.DefaultPaidHours())
	}
	if z.Spec.InvalidWeekdays == nil {
		t.Errorf("invalid weekdays nil, want an empty list when none are named")
	}
	// Explicit values are kept, not replaced by defaults.
	spec := centrumSpec()
	spec.TimeZone, spec.MaxSessionMinutes, spec.MaxPlanAheadDays = "UTC", 60, 2
	spec.AnnualPurchaseLimitHours, spec.AnnualUsageLimitHours, spec.YearStarts = 100, 200, "04-01"
	spec.PaidHours = []domain.PaidWindow{{Days: []string{"mon"}, From: "10:00", To: "11:00"}}
	z, err = domain.CompileZone("CENTRUM", spec)
	if !wantCode(t, err, "") {
		return
	}
	if z.Location.String() != "UTC" || z.MaxSessionMinutes != 60 || z.MaxPlanAheadDays != 2 ||
		z.AnnualPurchaseLimitHours != 100 || z.AnnualUsageLimitHours != 200 ||
		z.YearStarts != (domain.MonthDay{Month: time.April, Day: 1}) ||
		!reflect.DeepEqual(z.Spec.PaidHours, spec.PaidHours) {
		t.Errorf("explicit values not kept: %+v", z)
	}
}

func TestParseMonthDay(t *testing.T) {
	tests := []struct {
		in   string
		want domain.MonthDay
		bad  bool
	}{
		{in: "01-01", want: domain.MonthDay{Month: time.January, Day: 1}},
		{in: "04-01", want: domain.MonthDay{Month: time.April, Day: 1}},
		{in: "12-31", want: domain.MonthDay{Month: time.December, Day: 31}},
		{in: "02-28", want: domain.MonthDay{Month: time.February, Day: 28}},
		{in: "02-29", bad: true},
		{in: "06-31", bad: true},
		{in: "", bad: true},
		{in: "1-1", bad: true},
		{in: "01-01-2025", bad: true},
		{in: " 1-01", bad: true},
		{in: "+1-01", bad: true},
	}
	for _, tt := range tests {
		got, err := domain.ParseMonthDay(tt.in)
		if tt.bad {
			if err == nil {
				t.Errorf("ParseMonthDay(%q) = %v, want an error", tt.in, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseMonthDay(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("MonthDay(%q).String() = %q", tt.in, got.String())
		}
	}
}

// The paid regime is a weekly schedule of local-time windows, [from, to).
func TestPaidRegime(t *testing.T) {
	z := centrum(t)
	late := zone(t, func(s *domain.ZoneSpec) {
		s.PaidHours = []domain.PaidWindow{{Days: []string{"mon"}, From: "18:00", To: "24:00"}}
	})
	tests := []struct {
		name string
		z    *domain.Zone
		at   time.Time
		want bool
	}{
		{"weekday before opening", z, june(wed, 8, 59), false},
		{"weekday at opening", z, june(wed, 9, 0), true},
		{"weekday last minute", z, local(2025, time.June, wed, 20, 59, 59), true},
		{"weekday at closing", z, june(wed, 21, 0), false},
		{"weekday 23:59", z, june(wed, 23, 59), false},
		{"saturday is paid", z, june(sat, 10, 0), true},
		{"sunday before 12", z, june(sun, 11, 59), false},
		{"sunday at 12", z, june(sun, 12, 0), true},
		{"sunday 16:59", z, june(sun, 16, 59), true},
		{"sunday at 17", z, june(sun, 17, 0), false},
		{"monday 00:00", z, june(mon, 0, 0), false},
		{"same instant in UTC, paid local", z, utc(2025, time.June, wed, 7, 30, 0), true},     // 09:30 local
		{"same instant in UTC, unpaid local", z, utc(2025, time.June, wed, 19, 30, 0), false}, // 21:30 local
		{"window to 24:00, at 23:59", late, june(mon, 23, 59), true},
		{"window to 24:00, next midnight", late, local(2025, time.June, mon+1, 0, 0, 0), false},
		{"window to 24:00, other day", late, june(sun, 23, 0), false},
		{"DST spring day, sunday 12:00 CEST", z, local(2025, time.March, 30, 12, 0, 0), true},
		{"DST autumn day, sunday 17:00 CET", z, local(2025, time.October, 26, 17, 0, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.z.InPaidRegime(tt.at); got != tt.want {
				t.Errorf("InPaidRegime(%s) = %v, want %v", tt.at, got, tt.want)
			}
		})
	}
}

// The permit is not valid at all on the zone's invalid weekdays, local days.
func TestPermitNotValidOnInvalidWeekday(t *testing.T) {
	z := centrum(t)
	ny := zone(t, func(s *domain.ZoneSpec) { s.TimeZone = "America/New_York" })
	tests := []struct {
		name string
		z    *domain.Zone
		at   time.Time
		want bool
	}{
		{"friday 23:59:59", z, local(2025, time.June, fri, 23, 59, 59), true},
		{"saturday 00:00", z, june(sat, 0, 0), false},
		{"saturday noon", z, june(sat, 12, 0), false},
		{"saturday 23:59:59", z, local(2025, time.June, sat, 23, 59, 59), false},
		{"sunday 00:00", z, june(sun, 0, 0), true},
		{"wednesday", z, june(wed, 12, 0), true},
		{"UTC friday that is local saturday", z, utc(2025, time.June, fri, 22, 30, 0), false},
		{"UTC saturday that is local sunday", z, utc(2025, time.June, sat, 22, 30, 0), true},
		{"New York: Amsterdam saturday is New York friday", ny, june(sat, 3, 0), true},
		{"New York: saturday 00:00 New York", ny, june(sat, 6, 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.z.ValidOn(tt.at); got != tt.want {
				t.Errorf("ValidOn(%s) = %v, want %v", tt.at, got, tt.want)
			}
		})
	}
}

func TestPermitYear(t *testing.T) {
	jan := centrum(t)
	apr := zone(t, func(s *domain.ZoneSpec) { s.YearStarts = "04-01" })
	dst := zone(t, func(s *domain.ZoneSpec) { s.YearStarts = "03-30" })
	scl := santiagoZone(t, nil)
	bei := zone(t, func(s *domain.ZoneSpec) { s.TimeZone = "Asia/Beirut"; s.YearStarts = "03-29" })
	hav := zone(t, func(s *domain.ZoneSpec) { s.TimeZone = "America/Havana"; s.YearStarts = "11-01" })
	azo := zone(t, func(s *domain.ZoneSpec) { s.TimeZone = "Atlantic/Azores"; s.YearStarts = "10-25" })
	tests := []struct {
		name       string
		z          *domain.Zone
		at         time.Time
		start, end time.Time
	}{
		{"default, mid year", jan, june(sun, 12, 0),
			local(2025, time.January, 1, 0, 0, 0), local(2026, time.January, 1, 0, 0, 0)},
		{"default, last second of the year (local)", jan, local(2024, time.December, 31, 23, 59, 59),
			local(2024, time.January, 1, 0, 0, 0), local(2025, time.January, 1, 0, 0, 0)},
		{"default, local midnight of new year", jan, local(2025, time.January, 1, 0, 0, 0),
			local(2025, time.January, 1, 0, 0, 0), local(2026, time.January, 1, 0, 0, 0)},
		{"default, UTC 23:30 on 31 December is local new year", jan, utc(2024, time.December, 31, 23, 30, 0),
			local(2025, time.January, 1, 0, 0, 0), local(2026, time.January, 1, 0, 0, 0)},
		{"default, UTC 22:59:59 on 31 December is the old year", jan, utc(2024, time.December, 31, 22, 59, 59),
			local(2024, time.January, 1, 0, 0, 0), local(2025, time.January, 1, 0, 0, 0)},
		{"04-01, just before local midnight of the anniversary", apr, local(2025, time.March, 31, 23, 59, 59),
			local(2024, time.April, 1, 0, 0, 0), local(2025, time.April, 1, 0, 0, 0)},
		{"04-01, at local midnight of the anniversary", apr, local(2025, time.April, 1, 0, 0, 0),
			local(2025, time.April, 1, 0, 0, 0), local(2026, time.April, 1, 0, 0, 0)},
		{"04-01, UTC 22:30 on 31 March is local 1 April (CEST)", apr, utc(2025, time.March, 31, 22, 30, 0),
			local(2025, time.April, 1, 0, 0, 0), local(2026, time.April, 1, 0, 0, 0)},
		{"04-01, UTC 21:59 on 31 March is still the old year", apr, utc(2025, time.March, 31, 21, 59, 0),
			local(2024, time.April, 1, 0, 0, 0), local(2025, time.April, 1, 0, 0, 0)},
		{"04-01, January belongs to the year begun last April", apr, local(2026, time.January, 15, 12, 0, 0),
			local(2025, time.April, 1, 0, 0, 0), local(2026, time.April, 1, 0, 0, 0)},
		{"04-01, 31 December", apr, local(2025, time.December, 31, 23, 59, 0),
			local(2025, time.April, 1, 0, 0, 0), local(2026, time.April, 1, 0, 0, 0)},
		{"anniversary on a DST day", dst, local(2025, time.March, 30, 0, 0, 0),
			local(2025, time.March, 30, 0, 0, 0), local(2026, time.March, 30, 0, 0, 0)},
		// A year starts at the first instant of the anniversary's local date: in
		// Santiago on 5 September 2027 that is 01:00 -03 (00:00 does not exist),
		// not 23:00 the evening before.
		{"Santiago, year ending on the jump", scl, utc(2027, time.June, 1, 12, 0, 0),
			utc(2026, time.September, 5, 4, 0, 0), utc(2027, time.September, 5, 4, 0, 0)},
		{"Santiago, 23:30 the evening before is the old year", scl, utc(2027, time.September, 5, 3, 30, 0),
			utc(2026, time.September, 5, 4, 0, 0), utc(2027, time.September, 5, 4, 0, 0)},
		{"Santiago, year starting on the jump", scl, utc(2027, time.September, 5, 4, 0, 0),
			utc(2027, time.September, 5, 4, 0, 0), utc(2028, time.September, 5, 3, 0, 0)},
		{"Beirut, year starting on the jump", bei, utc(2026, time.June, 1, 12, 0, 0),
			utc(2026, time.March, 28, 22, 0, 0), utc(2027, time.March, 28, 21, 0, 0)},
		{"Havana, year starting on the double midnight", hav, utc(2026, time.December, 1, 12, 0, 0),
			utc(2026, time.November, 1, 4, 0, 0), utc(2027, time.November, 1, 4, 0, 0)},
		{"Havana, the second midnight belongs to the new year", hav, utc(2026, time.November, 1, 5, 0, 0),
			utc(2026, time.November, 1, 4, 0, 0), utc(2027, time.November, 1, 4, 0, 0)},
		{"Azores, year starting on the double midnight", azo, utc(2026, time.December, 1, 12, 0, 0),
			utc(2026, time.October, 25, 0, 0, 0), utc(2027, time.October, 25, 0, 0, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start, end := tt.z.PermitYear(tt.at)
			if !start.Equal(tt.start) || !end.Equal(tt.end) {
				t.Errorf("PermitYear(%s) = [%s, %s), want [%s, %s)",
					tt.at, start.UTC(), end.UTC(), tt.start.UTC(), tt.end.UTC())
			}
			if tt.at.Before(start) || !tt.at.Before(end) {
				t.Errorf("PermitYear(%s) = [%s, %s) does not contain the instant", tt.at, start, end)
			}
		})
	}
	// Spot checks in UTC, so the test does not lean on the helper alone.
	start, end := jan.PermitYear(june(sun, 12, 0))
	if !start.Equal(utc(2024, time.December, 31, 23, 0, 0)) || !end.Equal(utc(2025, time.December, 31, 23, 0, 0)) {
		t.Errorf("2025 permit year = [%s, %s), want [2024-12-31T23:00Z, 2025-12-31T23:00Z)", start.UTC(), end.UTC())
	}
	start, end = apr.PermitYear(june(sun, 12, 0))
	if !start.Equal(utc(2025, time.March, 31, 22, 0, 0)) || !end.Equal(utc(2026, time.March, 31, 22, 0, 0)) {
		t.Errorf("2025 April permit year = [%s, %s), want [2025-03-31T22:00Z, 2026-03-31T22:00Z)", start.UTC(), end.UTC())
	}
}
