package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// granted is an open session of plate AB12CD from start to end, with the
// reservation a start gives it.
func granted(start, end time.Time) domain.GrantedSession {
	return domain.GrantedSession{SessionState: sessionAt(start, end), Plate: "AB12CD", Country: "NL"}
}

func strp(s string) *string { return &s }

// changeCase is one change of a session: either the rejection code or the plan.
type changeCase struct {
	name     string
	z        *domain.Zone // the centre when nil
	permit   *domain.PermitState
	s        domain.GrantedSession
	received time.Time
	end      *time.Time
	plate    *string
	others   []domain.Interval
	code     domain.Code
	// the plan, when code is ""
	wantEnd      time.Time // the session's planned end when zero
	reserved     int       // the session's reservation when wantEnd is zero
	wantPlate    string    // AB12CD when ""
	plateChanged bool
	notices      []noticeWant
}

// orDefaults is z, or def when nil, and the permit, or rich() when nil.
func orDefaults(z, def *domain.Zone, permit *domain.PermitState) (*domain.Zone, domain.PermitState) {
	if z == nil {
		z = def
	}
	if permit == nil {
		return z, rich()
	}
	return z, *permit
}

func runChangeCases(t *testing.T, tests []changeCase) {
	t.Helper()
	def := centrum(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, p := orDefaults(tt.z, def, tt.permit)
			plan, err := domain.PlanChange(z, p, tt.s, domain.ChangeRequest{EndAt: tt.end, Plate: tt.plate, ReceivedAt: tt.received, PermitSessions: tt.others})
			if !wantCode(t, err, tt.code) {
				return
			}
			wantEnd, reserved := tt.wantEnd, tt.reserved
			if wantEnd.IsZero() {
				wantEnd, reserved = tt.s.PlannedEndAt, tt.s.ReservedMinutes
			}
			wantPlate := tt.wantPlate
			if wantPlate == "" {
				wantPlate = "AB12CD"
			}
			if !plan.StartAt.Equal(tt.s.StartAt) || plan.Country != tt.s.Country {
				t.Errorf("start %s, country %s: a change moves neither", plan.StartAt, plan.Country)
			}
			if !plan.PlannedEndAt.Equal(wantEnd) {
				t.Errorf("planned end %s, want %s", plan.PlannedEndAt.In(z.Location), wantEnd.In(z.Location))
			}
			if plan.ReservedMinutes != reserved {
				t.Errorf("reserved %d minutes, want %d", plan.ReservedMinutes, reserved)
			}
			if plan.EndChanged != !wantEnd.Equal(tt.s.PlannedEndAt) {
				t.Errorf("EndChanged %t, the end moved from %s to %s", plan.EndChanged, tt.s.PlannedEndAt, plan.PlannedEndAt)
			}
			if plan.Plate != wantPlate || plan.PlateChanged != tt.plateChanged {
				t.Errorf("plate %q (changed %t), want %q (%t)", plan.Plate, plan.PlateChanged, wantPlate, tt.plateChanged)
			}
			// The books: the delta is what moves between balance and
			// reservation, the balance never goes negative, and the
			// reservation covers the session as a start's does.
			if plan.DeltaMinutes != plan.ReservedMinutes-tt.s.ReservedMinutes {
				t.Errorf("delta %d, reserved %d -> %d", plan.DeltaMinutes, tt.s.ReservedMinutes, plan.ReservedMinutes)
			}
			if p.BalanceMinutes-plan.DeltaMinutes < 0 {
				t.Errorf("balance %d - delta %d goes negative", p.BalanceMinutes, plan.DeltaMinutes)
			}
			if plan.EndChanged && plan.ReservedMinutes != domain.Minutes(plan.PlannedEndAt.Sub(plan.StartAt)) {
				t.Errorf("reserved %d for %s", plan.ReservedMinutes, plan.PlannedEndAt.Sub(plan.StartAt))
			}
			checkNotices(t, plan.Notices, tt.notices)
		})
	}
}

// DOMAIN.md, Change a session: a stopped or cancelled session is
// session_not_open before any other check; so is one whose end has passed.
func TestChangeOnlyAnOpenSession(t *testing.T) {
	s := granted(june(wed, 10, 0), june(wed, 11, 0))
	stopped, cancelled := s, s
	stopped.State, cancelled.State = domain.StateStopped, domain.StateCancelled
	ended := domain.PermitState{BalanceMinutes: 600}
	bad := ptr(june(wed, 9, 0))
	runChangeCases(t, []changeCase{
		{name: "stopped, with a bad plate, a bad end, an ended permit", s: stopped, permit: &ended, received: june(wed, 10, 30),
			end: bad, plate: strp("АВ12СD"), code: domain.CodeSessionNotOpen},
		{name: "cancelled", s: cancelled, received: june(wed, 9, 0), end: ptr(june(wed, 10, 30)), code: domain.CodeSessionNotOpen},
		{name: "open, received at its planned end", s: s, received: june(wed, 11, 0), end: ptr(june(wed, 12, 0)), code: domain.CodeSessionNotOpen},
		{name: "open, received after its planned end (auto-stop late)", s: s, received: june(wed, 11, 5), plate: strp("XY99ZZ"),
			code: domain.CodeSessionNotOpen},
		{name: "open, received a second before its planned end", s: s, received: local(2025, time.June, wed, 10, 59, 59),
			end: ptr(june(wed, 12, 0)), wantEnd: june(wed, 12, 0), reserved: 120},
		{name: "permit ended", s: s, permit: &ended, received: june(wed, 10, 30), end: ptr(june(wed, 12, 0)), code: domain.CodePermitNotActive},
		{name: "nothing to change", s: s, received: june(wed, 10, 30), code: domain.CodeBadRequest},
	})
}

// DOMAIN.md, Change a session: the new end lies after the receipt and after the
// start, at most the maximum duration after the start; extending reserves the
// extra minutes, shortening releases them.
func TestChangeEnd(t *testing.T) {
	s := granted(june(wed, 10, 0), june(wed, 11, 0))
	planned := granted(june(thu, 10, 0), june(thu, 11, 0))
	r := june(wed, 10, 30)
	hour := zone(t, func(z *domain.ZoneSpec) { z.MaxSessionMinutes = 60 })
	long := granted(june(wed, 10, 0), june(wed, 13, 0)) // granted while the maximum was 3 hours
	runChangeCases(t, []changeCase{
		{name: "extend to 12:00", s: s, received: r, end: ptr(june(wed, 12, 0)), wantEnd: june(wed, 12, 0), reserved: 120},
		{name: "extend to the maximum, 13:00", s: s, received: r, end: ptr(june(wed, 13, 0)), wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "extend a second past the maximum", s: s, received: r, end: ptr(local(2025, time.June, wed, 13, 0, 1)), code: domain.CodeInvalidEnd},
		{name: "shorten to 10:45", s: s, received: r, end: ptr(june(wed, 10, 45)), wantEnd: june(wed, 10, 45), reserved: 45},
		{name: "end at the receipt", s: s, received: r, end: ptr(r), code: domain.CodeInvalidEnd},
		{name: "end before the receipt", s: s, received: r, end: ptr(june(wed, 10, 29)), code: domain.CodeInvalidEnd},
		{name: "end a second after the receipt: a started minute", s: s, received: r, end: ptr(r.Add(time.Second)),
			wantEnd: r.Add(time.Second), reserved: 31},
		{name: "the same end: nothing moves", s: s, received: r, end: ptr(june(wed, 11, 0))},
		{name: "planned: move the end", s: planned, received: r, end: ptr(june(thu, 12, 30)), wantEnd: june(thu, 12, 30), reserved: 150},
		{name: "planned: end at its start", s: planned, received: r, end: ptr(june(thu, 10, 0)), code: domain.CodeInvalidEnd},
		{name: "planned: end before its start", s: planned, received: r, end: ptr(june(thu, 9, 0)), code: domain.CodeInvalidEnd},
		{name: "planned: past the maximum", s: planned, received: r, end: ptr(june(thu, 13, 1)), code: domain.CodeInvalidEnd},
		{name: "maximum lowered since the grant: shorten within it", z: hour, s: long, received: r, end: ptr(june(wed, 12, 0)),
			wantEnd: june(wed, 12, 0), reserved: 120},
		{name: "maximum lowered since the grant: its granted end", z: hour, s: long, received: r, end: ptr(june(wed, 13, 0))},
		{name: "maximum lowered since the grant: past it", z: hour, s: long, received: r, end: ptr(june(wed, 13, 1)), code: domain.CodeInvalidEnd},
		{name: "end and plate at once", s: s, received: june(wed, 10, 1), end: ptr(june(wed, 12, 0)), plate: strp("xy-99-zz"),
			wantEnd: june(wed, 12, 0), reserved: 120, wantPlate: "XY99ZZ", plateChanged: true},
	})
}

// DOMAIN.md, Change a session: the new end is cut by the balance and the usage
// cap exactly as a start's, with the session's own reservation available to it.
func TestChangeCutByBalanceAndUsageCap(t *testing.T) {
	s := granted(june(wed, 10, 0), june(wed, 11, 0))
	r := june(wed, 10, 30)
	const limit = 500 * 60
	balanceCut := func(at time.Time) []noticeWant { return []noticeWant{{domain.NoticeCutByBalance, at}} }
	capCut := func(at time.Time) []noticeWant { return []noticeWant{{domain.NoticeCutByUsageCap, at}} }
	lowered := zone(t, func(z *domain.ZoneSpec) { z.AnnualUsageLimitHours = 1 })
	runChangeCases(t, []changeCase{
		{name: "balance 30: extension cut at 11:30", s: s, permit: permitWith(30, 0, 60), received: r, end: ptr(june(wed, 13, 0)),
			wantEnd: june(wed, 11, 30), reserved: 90, notices: balanceCut(june(wed, 11, 30))},
		{name: "balance 120: extension to 13:00 fits exactly", s: s, permit: permitWith(120, 0, 60), received: r, end: ptr(june(wed, 13, 0)),
			wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "balance 0: extension cut to the granted end", s: s, permit: permitWith(0, 0, 60), received: r, end: ptr(june(wed, 12, 0)),
			notices: balanceCut(june(wed, 11, 0))},
		{name: "balance 0: shortening still releases", s: s, permit: permitWith(0, 0, 60), received: r, end: ptr(june(wed, 10, 40)),
			wantEnd: june(wed, 10, 40), reserved: 40},
		{name: "usage cap: 30 minutes left besides this session", s: s, permit: permitWith(600, limit-90, 60), received: r,
			end: ptr(june(wed, 13, 0)), wantEnd: june(wed, 11, 30), reserved: 90, notices: capCut(june(wed, 11, 30))},
		{name: "usage cap: nothing left besides this session", s: s, permit: permitWith(600, limit-60, 60), received: r,
			end: ptr(june(wed, 12, 0)), notices: capCut(june(wed, 11, 0))},
		{name: "balance and cap both cut", s: s, permit: permitWith(60, limit-90, 60), received: r, end: ptr(june(wed, 13, 0)),
			wantEnd: june(wed, 11, 30), reserved: 90, notices: []noticeWant{{domain.NoticeCutByBalance, june(wed, 12, 0)}, {domain.NoticeCutByUsageCap, june(wed, 11, 30)}}},
		// The zone's limit lowered below what is used: the extension is cut
		// away, the interval granted stays (a right is never taken back).
		{name: "usage limit lowered below the used: granted interval kept", z: lowered, s: s, permit: permitWith(600, 120, 60), received: r,
			end: ptr(june(wed, 12, 0)), notices: capCut(june(wed, 11, 0))},
		{name: "usage limit lowered below the used: shortening allowed", z: lowered, s: s, permit: permitWith(600, 120, 60), received: r,
			end: ptr(june(wed, 10, 45)), wantEnd: june(wed, 10, 45), reserved: 45},
	})
}

// DOMAIN.md, Change a session: the new end is cut at an invalid day exactly as
// a start's, on the zone's local days (DST nights, Santiago's jump at midnight).
func TestChangeAcrossInvalidDayMidnight(t *testing.T) {
	satMidnight := june(sat, 0, 0)
	cut := func(at time.Time) []noticeWant { return []noticeWant{{domain.NoticeCutInvalidDay, at}} }
	everyDay := zone(t, func(z *domain.ZoneSpec) { z.InvalidWeekdays = []string{} })
	// Granted Friday 23:00 to Saturday 01:00 while Saturday was valid; the
	// centre now is the zone as changed since.
	before := granted(june(fri, 23, 0), june(sat, 1, 0))
	scl := santiagoZone(t, nil)
	sclSession := granted(time.Date(2026, time.September, 5, 22, 30, 0, 0, santiago), time.Date(2026, time.September, 5, 23, 30, 0, 0, santiago))
	runChangeCases(t, []changeCase{
		{name: "friday 22:00-23:00 extended to 01:00: cut at saturday 00:00", s: granted(june(fri, 22, 0), june(fri, 23, 0)),
			received: june(fri, 22, 30), end: ptr(june(sat, 1, 0)), wantEnd: satMidnight, reserved: 120, notices: cut(satMidnight)},
		{name: "23:59 extends to 00:30: cut at 00:00", s: granted(june(fri, 23, 0), june(fri, 23, 59)),
			received: local(2025, time.June, fri, 23, 58, 59), end: ptr(june(sat, 0, 30)), wantEnd: satMidnight, reserved: 60, notices: cut(satMidnight)},
		{name: "extended to exactly 00:00: no cut", s: granted(june(fri, 22, 0), june(fri, 23, 0)),
			received: june(fri, 22, 30), end: ptr(satMidnight), wantEnd: satMidnight, reserved: 120},
		{name: "valid day after: thursday into friday", s: granted(june(thu, 22, 0), june(thu, 23, 0)),
			received: june(thu, 22, 30), end: ptr(june(fri, 1, 0)), wantEnd: june(fri, 1, 0), reserved: 180},
		{name: "zone unchanged: friday into a valid saturday", z: everyDay, s: before, received: june(fri, 23, 30), end: ptr(june(sat, 2, 0)),
			wantEnd: june(sat, 2, 0), reserved: 180},
		{name: "saturday made invalid since the grant: extension cut to the granted end", s: before, received: june(fri, 23, 30),
			end: ptr(june(sat, 2, 0)), notices: cut(june(sat, 1, 0))},
		{name: "saturday made invalid since the grant: shorten after midnight", s: before, received: june(sat, 0, 10),
			end: ptr(june(sat, 0, 30)), wantEnd: june(sat, 0, 30), reserved: 90},
		{name: "Santiago: saturday 22:30 extended across the jump: cut at 01:00 -03", z: scl, s: sclSession,
			received: time.Date(2026, time.September, 5, 23, 0, 0, 0, santiago), end: ptr(utc(2026, time.September, 6, 4, 30, 0)),
			wantEnd: utc(2026, time.September, 6, 4, 0, 0), reserved: 90, notices: cut(utc(2026, time.September, 6, 4, 0, 0))},
	})
}

// DOMAIN.md "Money and time, precisely": a change across a DST change reserves
// the real minutes, and the maximum duration is real time too.
func TestChangeAcrossDSTNight(t *testing.T) {
	everyDay := zone(t, func(z *domain.ZoneSpec) { z.InvalidWeekdays = []string{} })
	// 2025-10-26 01:30 CEST is 23:30 UTC the day before; 02:30 CEST, 00:30 UTC.
	autumn := granted(utc(2025, time.October, 25, 23, 30, 0), utc(2025, time.October, 26, 0, 30, 0))
	// 2025-03-30 01:00 CET is 00:00 UTC.
	spring := granted(utc(2025, time.March, 30, 0, 0, 0), utc(2025, time.March, 30, 0, 30, 0))
	runChangeCases(t, []changeCase{
		{name: "autumn: 01:30 CEST extended to 03:30 CET is 3 real hours", z: everyDay, s: autumn, received: utc(2025, time.October, 26, 0, 0, 0),
			end: ptr(utc(2025, time.October, 26, 2, 30, 0)), wantEnd: utc(2025, time.October, 26, 2, 30, 0), reserved: 180},
		{name: "autumn: to 03:31 CET is past the maximum", z: everyDay, s: autumn, received: utc(2025, time.October, 26, 0, 0, 0),
			end: ptr(utc(2025, time.October, 26, 2, 31, 0)), code: domain.CodeInvalidEnd},
		{name: "spring: 01:00 CET extended to 04:00 CEST is 2 real hours", z: everyDay, s: spring, received: utc(2025, time.March, 30, 0, 10, 0),
			end: ptr(utc(2025, time.March, 30, 2, 0, 0)), wantEnd: utc(2025, time.March, 30, 2, 0, 0), reserved: 120},
	})
}

// DOMAIN.md, Change a session, and "the registration ignores the paid regime":
// a change that runs past the paid hours carries the same notice as a start,
// looking ahead from the receipt.
func TestChangeSunday1630PastPaidHours(t *testing.T) {
	s := granted(june(sun, 16, 30), june(sun, 17, 0))
	runChangeCases(t, []changeCase{
		{name: "16:45 extends to 18:00: paid hours end at 17:00", s: s, received: june(sun, 16, 45), end: ptr(june(sun, 18, 0)),
			wantEnd: june(sun, 18, 0), reserved: 90, notices: []noticeWant{{domain.NoticePastPaidHours, june(sun, 17, 0)}}},
		{name: "16:50 shortens to 16:55: no notice", s: granted(june(sun, 16, 30), june(sun, 19, 30)), received: june(sun, 16, 50),
			end: ptr(june(sun, 16, 55)), wantEnd: june(sun, 16, 55), reserved: 25},
		{name: "17:10, the paid hours over, extends: no notice", s: granted(june(sun, 16, 30), june(sun, 17, 30)), received: june(sun, 17, 10),
			end: ptr(june(sun, 18, 0)), wantEnd: june(sun, 18, 0), reserved: 90},
	})
}

// DOMAIN.md, Change a session: the plate may be corrected before the start and
// up to 2 minutes after it, normalised as a start's.
func TestChangePlateWithinTwoMinutesOfStart(t *testing.T) {
	s := granted(june(wed, 10, 0), june(wed, 11, 0))
	runChangeCases(t, []changeCase{
		{name: "planned: before the start", s: s, received: june(wed, 9, 0), plate: strp("xy-99-zz"), wantPlate: "XY99ZZ", plateChanged: true},
		{name: "at the start", s: s, received: june(wed, 10, 0), plate: strp("XY 99 ZZ"), wantPlate: "XY99ZZ", plateChanged: true},
		{name: "exactly 2 minutes after", s: s, received: june(wed, 10, 2), plate: strp("XY99ZZ"), wantPlate: "XY99ZZ", plateChanged: true},
		{name: "2 minutes and a second after", s: s, received: local(2025, time.June, wed, 10, 2, 1), plate: strp("XY99ZZ"),
			code: domain.CodePlateChangeWindowClosed},
		{name: "an hour after", s: s, received: june(wed, 10, 59), plate: strp("XY99ZZ"), code: domain.CodePlateChangeWindowClosed},
		{name: "an hour after, with an end: nothing applied", s: s, received: june(wed, 10, 30), plate: strp("XY99ZZ"),
			end: ptr(june(wed, 12, 0)), code: domain.CodePlateChangeWindowClosed},
		{name: "the same plate as typed before, an hour after: no change", s: s, received: june(wed, 10, 59), plate: strp("ab-12-cd")},
		{name: "diacritics fold: the same plate", s: s, received: june(wed, 10, 59), plate: strp("ÅB12ÇD")},
		{name: "Cyrillic look-alike", s: s, received: june(wed, 10, 1), plate: strp("АВ12СD"), code: domain.CodeInvalidPlate},
		{name: "empty", s: s, received: june(wed, 10, 1), plate: strp(" - "), code: domain.CodeInvalidPlate},
		{name: "too long", s: s, received: june(wed, 10, 1), plate: strp("ABCDEFGHIJKLM"), code: domain.CodeInvalidPlate},
	})
}

// DOMAIN.md "Visitors at once": a change whose end moves later is checked as a
// start is; one that moves nothing later is not (a cap lowered since never
// takes back what was granted).
func TestChangeTooManySessions(t *testing.T) {
	one := zone(t, func(z *domain.ZoneSpec) { z.MaxConcurrentSessions = intp(1) })
	s := granted(june(wed, 10, 0), june(wed, 11, 0))
	r := june(wed, 10, 1)
	later := []domain.Interval{{Start: june(wed, 12, 0), End: june(wed, 13, 0)}}
	overlapping := []domain.Interval{{Start: june(wed, 10, 30), End: june(wed, 11, 30)}}
	runChangeCases(t, []changeCase{
		{name: "extended into another session", z: one, s: s, received: r, others: later, end: ptr(june(wed, 12, 30)),
			code: domain.CodeTooManySessions},
		{name: "extended to where another starts", z: one, s: s, received: r, others: later, end: ptr(june(wed, 12, 0)),
			wantEnd: june(wed, 12, 0), reserved: 120},
		{name: "cut by the balance before another starts", z: one, s: s, permit: permitWith(30, 0, 60), received: r, others: later,
			end: ptr(june(wed, 12, 30)), wantEnd: june(wed, 11, 30), reserved: 90, notices: []noticeWant{{domain.NoticeCutByBalance, june(wed, 11, 30)}}},
		{name: "overlapping already (cap set since): shortening", z: one, s: s, received: r, others: overlapping,
			end: ptr(june(wed, 10, 45)), wantEnd: june(wed, 10, 45), reserved: 45},
		{name: "overlapping already (cap set since): plate correction", z: one, s: s, received: r, others: overlapping,
			plate: strp("XY99ZZ"), wantPlate: "XY99ZZ", plateChanged: true},
		{name: "overlapping already (cap set since): extending", z: one, s: s, received: r, others: overlapping,
			end: ptr(june(wed, 11, 15)), code: domain.CodeTooManySessions},
	})
}
