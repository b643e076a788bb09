package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// ams is the time zone of every zone in the rule book's examples.
var ams = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		panic(err)
	}
	return loc
}()

// Reference days of June 2025 (no DST change nearby): Wed 11, Thu 12, Fri 13,
// Sat 14 (invalid in the centre), Sun 15, Mon 16.
const (
	wed = 11
	thu = 12
	fri = 13
	sat = 14
	sun = 15
	mon = 16
)

// local returns an instant given by its wall clock in Europe/Amsterdam. Only
// unambiguous wall times are built this way; the repeated hour of a fall-back day
// is built from UTC instead.
func local(y int, m time.Month, d, hh, mm, ss int) time.Time {
	return time.Date(y, m, d, hh, mm, ss, 0, ams)
}

// june returns hh:mm on a day of June 2025, Amsterdam time.
func june(d, hh, mm int) time.Time { return local(2025, time.June, d, hh, mm, 0) }

func utc(y int, m time.Month, d, hh, mm, ss int) time.Time {
	return time.Date(y, m, d, hh, mm, ss, 0, time.UTC)
}

func ptr(t time.Time) *time.Time { return &t }

// centrumSpec is the centre of the rule book: tariff 210, default paid hours,
// the visitor permit not valid on Saturday.
func centrumSpec() domain.ZoneSpec {
	return domain.ZoneSpec{Name: "Centrum", TariffCentsPerHour: 210, InvalidWeekdays: []string{"sat"}}
}

// zone compiles a spec (the centre changed by edit, if any) or fails the test.
func zone(t *testing.T, edit func(*domain.ZoneSpec)) *domain.Zone {
	t.Helper()
	spec := centrumSpec()
	if edit != nil {
		edit(&spec)
	}
	z, err := domain.CompileZone("CENTRUM", spec)
	if err != nil {
		t.Fatalf("CompileZone: %v", err)
	}
	return z
}

func centrum(t *testing.T) *domain.Zone { t.Helper(); return zone(t, nil) }

// rich is an active permit with plenty of balance and nothing used.
func rich() domain.PermitState {
	return domain.PermitState{Active: true, BalanceMinutes: 100 * 60}
}

// wantCode fails unless err is a RuleError with code want; want "" means no error.
func wantCode(t *testing.T, err error, want domain.Code) bool {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("unexpected error: %v", err)
			return false
		}
		return true
	}
	if err == nil {
		t.Errorf("no error, want %s", want)
		return false
	}
	re, ok := domain.AsRule(err)
	if !ok {
		t.Errorf("error %v is not a RuleError, want %s", err, want)
		return false
	}
	if re.Code != want {
		t.Errorf("code %s (%v), want %s", re.Code, err, want)
	}
	return false
}

// noticeWant is an expected notice of a session plan.
type noticeWant struct {
	code string
	at   time.Time
}

func checkNotices(t *testing.T, got []domain.Notice, want []noticeWant) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("notices %+v, want %+v", got, want)
		return
	}
	for i := range want {
		if got[i].Code != want[i].code || !got[i].At.Equal(want[i].at) {
			t.Errorf("notice %d = %s at %s, want %s at %s", i, got[i].Code, got[i].At, want[i].code, want[i].at)
		}
		if got[i].Message == "" {
			t.Errorf("notice %d (%s) has no message", i, got[i].Code)
		}
	}
}

// mustWeekday guards the test data itself: a case named after a weekday must fall on it.
func mustWeekday(t *testing.T, at time.Time, wd time.Weekday) {
	t.Helper()
	if got := at.In(ams).Weekday(); got != wd {
		t.Fatalf("test data: %s is a %s, not a %s", at, got, wd)
	}
}

func TestReferenceDays(t *testing.T) {
	mustWeekday(t, june(wed, 12, 0), time.Wednesday)
	mustWeekday(t, june(thu, 12, 0), time.Thursday)
	mustWeekday(t, june(fri, 12, 0), time.Friday)
	mustWeekday(t, june(sat, 12, 0), time.Saturday)
	mustWeekday(t, june(sun, 12, 0), time.Sunday)
	mustWeekday(t, june(mon, 12, 0), time.Monday)
	// DST changes of 2025 in Europe/Amsterdam: last Sundays of March and October.
	mustWeekday(t, local(2025, time.March, 30, 12, 0, 0), time.Sunday)
	mustWeekday(t, local(2025, time.October, 26, 12, 0, 0), time.Sunday)
	if _, off := local(2025, time.March, 30, 1, 59, 0).Zone(); off != 3600 {
		t.Fatalf("2025-03-30 01:59 offset %d, want CET", off)
	}
	if _, off := local(2025, time.March, 30, 3, 0, 0).Zone(); off != 7200 {
		t.Fatalf("2025-03-30 03:00 offset %d, want CEST", off)
	}
}
