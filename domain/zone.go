package domain

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ZoneSpec is the one description of a zone: what an operator writes
// (intake/openapi.yaml, PUT /v1/admin/zones/{code}), what parkd stores (repo.Zone,
// a column per field) and, compiled, what it answers. Zero values (a nil list, and
// null for the pointer fields) mean "the default"; CompileZone fills them in and
// checks the whole. The zone's Spec is the normalised form: every default filled
// in, so that it marshals exactly as intake/openapi.yaml's zone example, every
// field present and an unset limit null. No field is omitted when marshalled: an
// empty invalid_weekdays ([], valid every day) must not read back as the default
// Saturday.
type ZoneSpec struct {
	Name                     string       `json:"name"`
	TimeZone                 string       `json:"time_zone"`
	TariffCentsPerHour       int64        `json:"tariff_cents_per_hour"`
	PaidHours                []PaidWindow `json:"paid_hours"`
	InvalidWeekdays          []string     `json:"invalid_weekdays"` // [] means valid every day
	MaxSessionMinutes        int          `json:"max_session_minutes"`
	MaxPlanAheadDays         int          `json:"max_plan_ahead_days"`
	AnnualPurchaseLimitHours int          `json:"annual_purchase_limit_hours"`
	AnnualUsageLimitHours    int          `json:"annual_usage_limit_hours"`
	YearStarts               string       `json:"year_starts"` // MM-DD
	// MaxConcurrentSessions caps how many of a permit's sessions overlap in time
	// (DOMAIN.md "Visitors at once"); nil: no cap. 1-MaxConcurrentSessionsCap.
	MaxConcurrentSessions *int `json:"max_concurrent_sessions"`
	// DefaultEnd is how a start without an end ends (DOMAIN.md "End at the
	// regime end"): DefaultEndMaxDuration ("" means it) or DefaultEndPaidRegimeEnd.
	DefaultEnd string `json:"default_end"`
	// CarryOverMaxHours caps the balance carried into a new permit year
	// (DOMAIN.md "Carry-over cap"); nil: no cap. 0-MaxCarryOverHours.
	CarryOverMaxHours *int `json:"carry_over_max_hours"`
	// EndingNoticeMinutes is how long before a session's planned end the
	// session.ending event is due (DOMAIN.md "Events"); 0 means
	// DefaultEndingNoticeMinutes. 1-MaxEndingNoticeMinutes.
	EndingNoticeMinutes int `json:"ending_notice_minutes"`
	// Registration names the zone's codes in the national parking register
	// (DOMAIN.md "Registration"); nil: the zone's rights are not registered.
	Registration *ZoneRegistration `json:"registration"`
}

// ZoneRegistration is a zone's codes in the national parking register, each
// 1-10 of [A-Za-z0-9_-] (intake/openapi.yaml).
type ZoneRegistration struct {
	AreaManagerID string `json:"area_manager_id"`
	AreaID        string `json:"area_id"`
	UsageID       string `json:"usage_id"`
}

// PaidWindow is one line of a weekly paid-parking regime: on Days, from From to To
// local time ("HH:MM", To may be "24:00"). A window never crosses midnight; a
// regime running past midnight is written as two windows.
type PaidWindow struct {
	Days []string `json:"days"`
	From string   `json:"from"`
	To   string   `json:"to"`
}

// Defaults of a zone (DOMAIN.md, intake/openapi.yaml).
const (
	DefaultTimeZone                 = "Europe/Amsterdam"
	DefaultMaxSessionMinutes        = 180
	DefaultMaxPlanAheadDays         = 7
	DefaultAnnualPurchaseLimitHours = 500
	DefaultAnnualUsageLimitHours    = 500
	DefaultYearStarts               = "01-01"
	DefaultEndingNoticeMinutes      = 10
)

// What a start without an end time ends at (ZoneSpec.DefaultEnd).
const (
	// DefaultEndMaxDuration: start + the maximum duration, whatever the paid
	// regime does (the seed municipality's rule: Sunday 16:30 reserves 3 hours).
	DefaultEndMaxDuration = "max_duration"
	// DefaultEndPaidRegimeEnd: a start inside a paid window ends where the paid
	// regime ends, still at most the maximum duration after the start.
	DefaultEndPaidRegimeEnd = "paid_regime_end"
)

// Bounds of the zone settings of issue 14. They keep a typo from becoming a
// setting: no permit runs a hundred visitors at once, no balance reaches more
// hours than a leap year has (the bound of the annual limits too), and a notice
// an hour ahead is as early as one that still means "ending soon".
const (
	MaxConcurrentSessionsCap = 100
	MaxCarryOverHours        = 8784
	MaxEndingNoticeMinutes   = 60
)

// DefaultPaidHours is the regime a zone gets when its spec names none:
// Mon–Sat 09:00–21:00, Sun 12:00–17:00.
func DefaultPaidHours() []PaidWindow {
	return []PaidWindow{
		{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat"}, From: "09:00", To: "21:00"},
		{Days: []string{"sun"}, From: "12:00", To: "17:00"},
	}
}

// DefaultInvalidWeekdays is what a zone gets when its spec names no
// invalid_weekdays at all (intake/openapi.yaml's example, the centre's
// Saturday).
func DefaultInvalidWeekdays() []string { return []string{"sat"} }

var (
	zoneCodeRE     = regexp.MustCompile(`^[A-Z0-9_]{1,32}$`)
	registrationRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,10}$`)
	weekdays       = map[string]time.Weekday{
		"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
		"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
	}
)

// ValidZoneCode reports whether code has the form [A-Z0-9_]{1,32}.
func ValidZoneCode(code string) bool { return zoneCodeRE.MatchString(code) }

// Zone is a compiled, validated zone: the form every rule works with.
type Zone struct {
	Code                     string
	Name                     string
	Location                 *time.Location
	TariffCentsPerHour       int64
	windows                  []window
	invalid                  [7]bool
	MaxSessionMinutes        int
	MaxPlanAheadDays         int
	AnnualPurchaseLimitHours int
	AnnualUsageLimitHours    int
	YearStarts               MonthDay
	// MaxConcurrentSessions is the cap on a permit's overlapping sessions; 0: none.
	MaxConcurrentSessions int
	// DefaultEnd is DefaultEndMaxDuration or DefaultEndPaidRegimeEnd ("" acts
	// as DefaultEndMaxDuration).
	DefaultEnd string
	// CarryOverCapped says whether the balance carried into a new permit year
	// is capped, at CarryOverMaxMinutes.
	CarryOverCapped     bool
	CarryOverMaxMinutes int
	EndingNoticeMinutes int
	// Registration is nil when the zone's rights are not registered.
	Registration *ZoneRegistration
	Spec         ZoneSpec // normalised, with defaults filled in
}

type window struct {
	day      time.Weekday
	from, to int // minutes after local midnight, to may be 1440
}

// MonthDay is the anniversary of a permit year.
type MonthDay struct {
	Month time.Month
	Day   int
}

// ParseMonthDay reads "MM-DD". 29 February is refused: a permit year must start on
// a day every year has.
func ParseMonthDay(s string) (MonthDay, error) {
	m, ok1 := twoDigits(s, 0)
	d, ok2 := twoDigits(s, 3)
	if len(s) != 5 || s[2] != '-' || !ok1 || !ok2 {
		return MonthDay{}, fmt.Errorf("year_starts %q is not MM-DD", truncate(s, 20))
	}
	if m < 1 || m > 12 || d < 1 || d > daysIn(time.Month(m)) || (m == 2 && d == 29) {
		return MonthDay{}, fmt.Errorf("year_starts %q is not a day every year has", s)
	}
	return MonthDay{Month: time.Month(m), Day: d}, nil
}

func (md MonthDay) String() string { return fmt.Sprintf("%02d-%02d", int(md.Month), md.Day) }

func daysIn(m time.Month) int {
	return time.Date(2001, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

// twoDigits reads two ASCII digits at s[i:i+2]; signs and spaces are not digits.
func twoDigits(s string, i int) (int, bool) {
	if len(s) < i+2 || s[i] < '0' || s[i] > '9' || s[i+1] < '0' || s[i+1] > '9' {
		return 0, false
	}
	return int(s[i]-'0')*10 + int(s[i+1]-'0'), true
}

func parseClock(s string, allow24 bool) (int, bool) {
	h, ok1 := twoDigits(s, 0)
	m, ok2 := twoDigits(s, 3)
	if len(s) != 5 || s[2] != ':' || !ok1 || !ok2 {
		return 0, false
	}
	if m < 0 || m > 59 || h < 0 || h > 24 || (h == 24 && (m != 0 || !allow24)) {
		return 0, false
	}
	return h*60 + m, true
}

// CompileZone checks a zone spec, fills in its defaults and returns the zone the
// rules work with. Every problem is an invalid_zone rejection naming the field.
func CompileZone(code string, spec ZoneSpec) (*Zone, error) {
	bad := func(format string, args ...any) (*Zone, error) {
		return nil, Reject(CodeInvalidZone, format, args...)
	}
	if !ValidZoneCode(code) {
		return bad("zone code %q must be 1-32 of A-Z, 0-9 and _", truncate(code, 40))
	}
	spec.Name = strings.TrimSpace(spec.Name)
	if spec.Name == "" || len(spec.Name) > 200 {
		return bad("name must be 1-200 characters")
	}
	if spec.TimeZone == "" {
		spec.TimeZone = DefaultTimeZone
	}
	loc, err := time.LoadLocation(spec.TimeZone)
	if err != nil || spec.TimeZone == "Local" {
		return bad("time_zone %q is not an IANA time zone", truncate(spec.TimeZone, 60))
	}
	if spec.TariffCentsPerHour <= 0 || spec.TariffCentsPerHour > 100_000 {
		return bad("tariff_cents_per_hour must be between 1 and 100000")
	}
	if spec.PaidHours == nil {
		spec.PaidHours = DefaultPaidHours()
	}
	z := &Zone{Code: code, Name: spec.Name, Location: loc, TariffCentsPerHour: spec.TariffCentsPerHour}
	for i, w := range spec.PaidHours {
		from, ok1 := parseClock(w.From, false)
		to, ok2 := parseClock(w.To, true)
		if !ok1 || !ok2 {
			return bad("paid_hours[%d]: from and to must be HH:MM (to may be 24:00)", i)
		}
		if from >= to {
			return bad("paid_hours[%d]: from %s must be before to %s", i, w.From, w.To)
		}
		if len(w.Days) == 0 {
			return bad("paid_hours[%d]: days must name at least one weekday", i)
		}
		for _, d := range w.Days {
			wd, ok := weekdays[d]
			if !ok {
				return bad("paid_hours[%d]: day %q is not one of mon..sun", i, truncate(d, 20))
			}
			z.windows = append(z.windows, window{day: wd, from: from, to: to})
		}
	}
	if spec.InvalidWeekdays == nil {
		// intake/openapi.yaml: every field but name and tariff has the default
		// shown, and the example shows Saturday. A zone valid every day says so
		// with [].
		spec.InvalidWeekdays = DefaultInvalidWeekdays()
	}
	for _, d := range spec.InvalidWeekdays {
		wd, ok := weekdays[d]
		if !ok {
			return bad("invalid_weekdays: %q is not one of mon..sun", truncate(d, 20))
		}
		z.invalid[wd] = true
	}
	if spec.MaxSessionMinutes == 0 {
		spec.MaxSessionMinutes = DefaultMaxSessionMinutes
	}
	if spec.MaxSessionMinutes < 1 || spec.MaxSessionMinutes > 24*60 {
		return bad("max_session_minutes must be between 1 and 1440")
	}
	if spec.MaxPlanAheadDays == 0 {
		spec.MaxPlanAheadDays = DefaultMaxPlanAheadDays
	}
	if spec.MaxPlanAheadDays < 1 || spec.MaxPlanAheadDays > 366 {
		return bad("max_plan_ahead_days must be between 1 and 366")
	}
	if spec.AnnualPurchaseLimitHours == 0 {
		spec.AnnualPurchaseLimitHours = DefaultAnnualPurchaseLimitHours
	}
	if spec.AnnualUsageLimitHours == 0 {
		spec.AnnualUsageLimitHours = DefaultAnnualUsageLimitHours
	}
	if spec.AnnualPurchaseLimitHours < 1 || spec.AnnualPurchaseLimitHours > 8784 {
		return bad("annual_purchase_limit_hours must be between 1 and 8784")
	}
	if spec.AnnualUsageLimitHours < 1 || spec.AnnualUsageLimitHours > 8784 {
		return bad("annual_usage_limit_hours must be between 1 and 8784")
	}
	if spec.YearStarts == "" {
		spec.YearStarts = DefaultYearStarts
	}
	md, err := ParseMonthDay(spec.YearStarts)
	if err != nil {
		return bad("%v", err)
	}
	if n := spec.MaxConcurrentSessions; n != nil {
		if *n < 1 || *n > MaxConcurrentSessionsCap {
			return bad("max_concurrent_sessions must be null (no cap) or between 1 and %d", MaxConcurrentSessionsCap)
		}
		n := *n // the zone keeps its own copy: the caller's spec may change
		z.MaxConcurrentSessions = n
		spec.MaxConcurrentSessions = &n
	}
	switch spec.DefaultEnd {
	case "":
		spec.DefaultEnd = DefaultEndMaxDuration
	case DefaultEndMaxDuration, DefaultEndPaidRegimeEnd:
	default:
		return bad("default_end %q is not %s or %s", truncate(spec.DefaultEnd, 40), DefaultEndMaxDuration, DefaultEndPaidRegimeEnd)
	}
	if h := spec.CarryOverMaxHours; h != nil {
		if *h < 0 || *h > MaxCarryOverHours {
			return bad("carry_over_max_hours must be null (no cap) or between 0 and %d", MaxCarryOverHours)
		}
		hours := *h
		z.CarryOverCapped, z.CarryOverMaxMinutes = true, hours*60
		spec.CarryOverMaxHours = &hours
	}
	if spec.EndingNoticeMinutes == 0 {
		spec.EndingNoticeMinutes = DefaultEndingNoticeMinutes
	}
	if spec.EndingNoticeMinutes < 1 || spec.EndingNoticeMinutes > MaxEndingNoticeMinutes {
		return bad("ending_notice_minutes must be between 1 and %d", MaxEndingNoticeMinutes)
	}
	if r := spec.Registration; r != nil {
		for _, f := range []struct{ name, value string }{
			{"area_manager_id", r.AreaManagerID}, {"area_id", r.AreaID}, {"usage_id", r.UsageID},
		} {
			if !registrationRE.MatchString(f.value) {
				return bad("registration.%s %q must be 1-10 of A-Z, a-z, 0-9, _ and -", f.name, truncate(f.value, 20))
			}
		}
		spec.Registration = new(ZoneRegistration)
		*spec.Registration = *r
		z.Registration = new(ZoneRegistration)
		*z.Registration = *r
	}
	z.MaxSessionMinutes = spec.MaxSessionMinutes
	z.MaxPlanAheadDays = spec.MaxPlanAheadDays
	z.AnnualPurchaseLimitHours = spec.AnnualPurchaseLimitHours
	z.AnnualUsageLimitHours = spec.AnnualUsageLimitHours
	z.YearStarts = md
	z.DefaultEnd = spec.DefaultEnd
	z.EndingNoticeMinutes = spec.EndingNoticeMinutes
	z.Spec = spec
	return z, nil
}

// ValidOn reports whether the visitor permit is valid on the local day of t.
func (z *Zone) ValidOn(t time.Time) bool {
	return !z.invalid[t.In(z.Location).Weekday()]
}

// InPaidRegime reports whether t lies inside the zone's paid-parking regime.
func (z *Zone) InPaidRegime(t time.Time) bool {
	lt := t.In(z.Location)
	mins := lt.Hour()*60 + lt.Minute()
	return slices.ContainsFunc(z.windows, func(w window) bool {
		return w.day == lt.Weekday() && mins >= w.from && mins < w.to
	})
}

// maxUTCOffset bounds the UTC offset of every time zone in the tz database,
// local mean times of the nineteenth century included (the largest is under 16h).
const maxUTCOffset = 26 * time.Hour

// DayStart returns the first instant of the local date y-m-d in loc (DOMAIN.md
// "Money and time, precisely"): local midnight, or, where clocks jump over
// midnight, the instant they land (01:00 in America/Santiago on the first
// Sunday of September: 00:00 does not exist); where clocks fall back over
// midnight (America/Havana in November), the first of the two midnights. The
// date is normalised like time.Date's (day 32 is the next month's first).
//
// time.Date cannot be used for this: for a wall time that does not exist it
// may answer an instant of the day before (23:00 in Santiago).
func DayStart(loc *time.Location, y int, m time.Month, d int) time.Time {
	return atWallClock(loc, time.Date(y, m, d, 0, 0, 0, 0, time.UTC))
}

// atWallClock returns the first instant at which loc's clock reads wall or
// later; wall is a date and clock time written as if it were UTC. Every local
// day boundary and clock time of a zone goes through here (DayStart is its day
// form): a wall time that exists maps to its (first) instant, one in a gap to
// the instant the clocks land after the gap.
//
// It walks the zone's periods (time.Time.ZoneBounds) from an instant surely
// before the wall time: within one period the clock runs evenly, so the wall
// time is reached in the first period in which its instant lies before the
// period's end, or at the very start of a period that begins past it.
func atWallClock(loc *time.Location, wall time.Time) time.Time {
	u := wall.Add(-maxUTCOffset)
	var c time.Time
	// A couple of periods lie within 52 hours; the bound only guards against a
	// broken zone file.
	for range 16 {
		lt := u.In(loc)
		_, offset := lt.Zone()
		c = wall.Add(-time.Duration(offset) * time.Second) // when this period's clock reads wall
		if !c.After(u) {
			return lt // the period began with its clock past wall: a gap ends here
		}
		_, end := lt.ZoneBounds()
		if end.IsZero() || c.Before(end) {
			break
		}
		u = end
	}
	return c.In(loc)
}

// localMidnight returns the start of the local day d days after t's local day.
func (z *Zone) localMidnight(t time.Time, d int) time.Time {
	y, m, day := t.In(z.Location).Date()
	return DayStart(z.Location, y, m, day+d)
}

// localClock returns the instant at minute m (1440 being the next day's start)
// of the local date of day. The minute is counted on the wall clock (09:00 is
// 09:00 on a DST day too); a wall time that does not exist on a spring-forward
// day is the instant the clocks land after the gap.
func (z *Zone) localClock(day time.Time, m int) time.Time {
	y, mo, d := day.In(z.Location).Date()
	return atWallClock(z.Location, time.Date(y, mo, d, 0, m, 0, 0, time.UTC))
}

// PlanAheadLimit is the latest start a request received at received may plan:
// the same wall-clock time MaxPlanAheadDays local days later. Days are counted
// on the zone's calendar, so a DST change in between does not move the limit by
// an hour depending on how the caller wrote the instant.
func (z *Zone) PlanAheadLimit(received time.Time) time.Time {
	lt := received.In(z.Location)
	return atWallClock(z.Location, time.Date(lt.Year(), lt.Month(), lt.Day()+z.MaxPlanAheadDays,
		lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC))
}

// FirstInvalidDayStart returns the start of the first local day after start's day
// and before end on which the permit is not valid, if any.
func (z *Zone) FirstInvalidDayStart(start, end time.Time) (time.Time, bool) {
	for d := 1; ; d++ {
		mid := z.localMidnight(start, d)
		if !mid.Before(end) {
			return time.Time{}, false
		}
		if !z.ValidOn(mid) {
			return mid, true
		}
	}
}

// PaidHoursEndWithin returns the first instant strictly between start and end at
// which the paid regime ends (and does not carry straight on into another window).
func (z *Zone) PaidHoursEndWithin(start, end time.Time) (time.Time, bool) {
	for d := 0; ; d++ {
		day := z.localMidnight(start, d)
		if !day.Before(end) {
			return time.Time{}, false
		}
		var first time.Time
		for _, w := range z.windows {
			if w.day != day.Weekday() {
				continue
			}
			e := z.localClock(day, w.to)
			if !e.After(start) || !e.Before(end) || z.InPaidRegime(e) {
				continue
			}
			if first.IsZero() || e.Before(first) {
				first = e
			}
		}
		if !first.IsZero() {
			return first, true
		}
	}
}

// PermitYear returns the permit year [start, end) of the zone that contains t: it
// starts at the start of the local day of the anniversary (DayStart).
func (z *Zone) PermitYear(t time.Time) (start, end time.Time) {
	y := t.In(z.Location).Year()
	start = z.anniversary(y)
	if t.Before(start) {
		y--
		start = z.anniversary(y)
	}
	return start, z.anniversary(y + 1)
}

// NextYearEnd is the end of the permit year that follows one ending at end: the
// zone's anniversary nearest to a year after end. With the zone unchanged that is
// the next anniversary, whatever DST does to the UTC length of the year. After an
// operator changed year_starts or time_zone, the year already running has kept
// its end (DOMAIN.md "Zone changes apply forward"), and the year begun there runs
// to an anniversary the zone now has: the one that makes it closest to a year
// long, so between six and eighteen months, never a year of a few hours.
func (z *Zone) NextYearEnd(end time.Time) time.Time {
	aYear := end.UTC().AddDate(1, 0, 0)
	before, after := z.PermitYear(aYear)
	if aYear.Sub(before) <= after.Sub(aYear) {
		return before
	}
	return after
}

func (z *Zone) anniversary(y int) time.Time {
	return DayStart(z.Location, y, z.YearStarts.Month, z.YearStarts.Day)
}

// TopupCents is what buying hours costs at the zone's tariff.
func (z *Zone) TopupCents(hours int) int64 { return int64(hours) * z.TariffCentsPerHour }

// PaidRegimeEnd returns, when t lies inside the paid regime, the instant that
// regime ends, provided it comes before limit. The end is the regime's real,
// continuous end: windows that carry straight on into one another (Monday
// 18:00-24:00 and Tuesday 00:00-02:00, or two overlapping windows of one day)
// are one stretch of paid time, ending Tuesday 02:00. A stretch still running at
// limit answers false, as does a t outside the regime.
func (z *Zone) PaidRegimeEnd(t, limit time.Time) (time.Time, bool) {
	if !z.InPaidRegime(t) {
		return time.Time{}, false
	}
	return z.PaidHoursEndWithin(t, limit)
}

// CostCents is what minutes of parking cost at the zone's tariff (DOMAIN.md
// "Quote"): minutes × tariff / 60, rounded up to a whole cent, in integers.
func (z *Zone) CostCents(minutes int) int64 {
	if minutes <= 0 {
		return 0
	}
	return (int64(minutes)*z.TariffCentsPerHour + 59) / 60
}
