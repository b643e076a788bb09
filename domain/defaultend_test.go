package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// DOMAIN.md "End at the regime end": with default_end paid_regime_end a start
// without an end, made inside a paid window, ends where the paid regime really
// ends (windows that carry on into one another are one stretch), still at most
// the maximum duration after the start; outside a paid window, or with an end
// named, nothing changes.
func TestDefaultEndAtPaidRegimeEnd(t *testing.T) {
	regime := func(max int, w ...domain.PaidWindow) func(*domain.ZoneSpec) {
		return func(s *domain.ZoneSpec) {
			s.DefaultEnd = domain.DefaultEndPaidRegimeEnd
			if max != 0 {
				s.MaxSessionMinutes = max
			}
			if w != nil {
				s.PaidHours = w
				s.InvalidWeekdays = []string{}
			}
		}
	}
	win := func(day, from, to string) domain.PaidWindow {
		return domain.PaidWindow{Days: []string{day}, From: from, To: to}
	}
	atEnd := func(at time.Time) noticeWant { return noticeWant{domain.NoticeEndsAtPaidHoursEnd, at} }
	z := zone(t, regime(0))
	long := zone(t, regime(600, win("wed", "09:00", "12:00"), win("wed", "11:00", "17:00")))
	overMidnight := zone(t, regime(0, win("mon", "18:00", "24:00"), win("tue", "00:00", "02:00")))
	untilMidnight := zone(t, regime(0, win("wed", "21:00", "24:00")))
	intoInvalid := zone(t, func(s *domain.ZoneSpec) {
		regime(0, win("fri", "20:00", "24:00"), win("sat", "00:00", "02:00"))(s)
		s.InvalidWeekdays = []string{"sat"}
	})
	dstNight := zone(t, regime(0, win("sat", "20:00", "24:00"), win("sun", "00:00", "03:00")))
	scl := santiagoZone(t, regime(0, win("sat", "20:00", "24:00"), win("sun", "00:00", "02:00")))
	sclSat := santiagoZone(t, regime(0, win("sat", "20:00", "24:00")))
	sclJump := time.Date(2026, time.September, 5, 23, 30, 0, 0, santiago)

	runStartCases(t, []startCase{
		{name: "sunday 16:30 ends at 17:00", z: z, received: june(sun, 16, 30),
			wantEnd: june(sun, 17, 0), reserved: 30, notices: []noticeWant{atEnd(june(sun, 17, 0))}},
		{name: "sunday 16:59:59 reserves the started minute", z: z, received: local(2025, time.June, sun, 16, 59, 59),
			wantEnd: june(sun, 17, 0), reserved: 1, notices: []noticeWant{atEnd(june(sun, 17, 0))}},
		{name: "sunday 17:00, the regime over: maximum duration", z: z, received: june(sun, 17, 0),
			wantEnd: june(sun, 20, 0), reserved: 180},
		{name: "sunday 11:00, before the regime: maximum duration, running into it", z: z, received: june(sun, 11, 0),
			wantEnd: june(sun, 14, 0), reserved: 180},
		{name: "wednesday 10:00, regime end beyond 3 hours: maximum duration", z: z, received: june(wed, 10, 0),
			wantEnd: june(wed, 13, 0), reserved: 180},
		{name: "wednesday 18:00, regime end exactly at 3 hours", z: z, received: june(wed, 18, 0),
			wantEnd: june(wed, 21, 0), reserved: 180},
		{name: "wednesday 19:30 ends at 21:00", z: z, received: june(wed, 19, 30),
			wantEnd: june(wed, 21, 0), reserved: 90, notices: []noticeWant{atEnd(june(wed, 21, 0))}},
		{name: "planned start inside a window ends at its end", z: z, received: june(wed, 10, 0), start: ptr(june(thu, 20, 0)),
			wantStart: june(thu, 20, 0), wantEnd: june(thu, 21, 0), reserved: 60, notices: []noticeWant{atEnd(june(thu, 21, 0))}},
		{name: "an end named wins: sunday 16:30 to 18:00", z: z, received: june(sun, 16, 30), end: ptr(june(sun, 18, 0)),
			wantEnd: june(sun, 18, 0), reserved: 90, notices: []noticeWant{{domain.NoticePastPaidHours, june(sun, 17, 0)}}},
		{name: "sunday 16:30 cut by the balance before 17:00", z: z, permit: permitWith(20, 0, 0), received: june(sun, 16, 30),
			wantEnd: june(sun, 16, 50), reserved: 20, notices: []noticeWant{atEnd(june(sun, 17, 0)), {domain.NoticeCutByBalance, june(sun, 16, 50)}}},
		{name: "overlapping windows are one stretch: 11:30 ends at 17:00, not 12:00", z: long, received: june(wed, 11, 30),
			wantEnd: june(wed, 17, 0), reserved: 330, notices: []noticeWant{atEnd(june(wed, 17, 0))}},
		{name: "windows chained over midnight: monday 23:30 ends tuesday 02:00", z: overMidnight, received: june(mon, 23, 30),
			wantEnd: june(mon+1, 2, 0), reserved: 150, notices: []noticeWant{atEnd(june(mon+1, 2, 0))}},
		{name: "23:59 ends at 00:00", z: untilMidnight, received: june(wed, 23, 59),
			wantEnd: june(thu, 0, 0), reserved: 1, notices: []noticeWant{atEnd(june(thu, 0, 0))}},
		{name: "regime into an invalid day: cut at its start", z: intoInvalid, received: june(fri, 23, 30),
			wantEnd: june(sat, 0, 0), reserved: 30, notices: []noticeWant{atEnd(june(sat, 2, 0)), {domain.NoticeCutInvalidDay, june(sat, 0, 0)}}},
		// 2025-03-30: 02:00 CET jumps to 03:00 CEST; the regime ends at wall
		// 03:00, 30 real minutes after 01:30.
		{name: "spring DST night: 01:30 ends at 03:00 CEST, 30 minutes", z: dstNight, received: local(2025, time.March, 30, 1, 30, 0),
			wantEnd: utc(2025, time.March, 30, 1, 0, 0), reserved: 30, notices: []noticeWant{atEnd(utc(2025, time.March, 30, 1, 0, 0))}},
		// 2025-10-26: 03:00 CEST falls back to 02:00 CET; wall 03:00 CET is 150
		// real minutes after 01:30 CEST.
		{name: "autumn DST night: 01:30 CEST ends at 03:00 CET, 150 minutes", z: dstNight, received: utc(2025, time.October, 25, 23, 30, 0),
			wantEnd: utc(2025, time.October, 26, 2, 0, 0), reserved: 150, notices: []noticeWant{atEnd(utc(2025, time.October, 26, 2, 0, 0))}},
		// Santiago, 2026-09-06: Saturday 24:00 -04 is Sunday 01:00 -03; the
		// Sunday window carries the regime on to 02:00 -03.
		{name: "Santiago jump: saturday 23:30 ends sunday 02:00 -03", z: scl, received: sclJump,
			wantEnd: utc(2026, time.September, 6, 5, 0, 0), reserved: 90, notices: []noticeWant{atEnd(utc(2026, time.September, 6, 5, 0, 0))}},
		{name: "Santiago jump: saturday 23:30 ends at sunday's first instant", z: sclSat, received: sclJump,
			wantEnd: utc(2026, time.September, 6, 4, 0, 0), reserved: 30, notices: []noticeWant{atEnd(utc(2026, time.September, 6, 4, 0, 0))}},
		{name: "default max_duration: sunday 16:30 reserves 3 hours", received: june(sun, 16, 30),
			wantEnd: june(sun, 19, 30), reserved: 180, notices: []noticeWant{{domain.NoticePastPaidHours, june(sun, 17, 0)}}},
	})
}

// DOMAIN.md "Visitors at once": at no instant may more of a permit's sessions
// run than the zone's max_concurrent_sessions, the new one included.
func TestMaxConcurrentSessions(t *testing.T) {
	one := zone(t, func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(1) })
	two := zone(t, func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(2) })
	iv := func(a, b time.Time) domain.Interval { return domain.Interval{Start: a, End: b} }
	h := func(hh, mm int) time.Time { return june(wed, hh, mm) }
	tests := []struct {
		name   string
		z      *domain.Zone
		iv     domain.Interval
		others []domain.Interval
		code   domain.Code
	}{
		{"no cap: any number", centrum(t), iv(h(10, 0), h(13, 0)),
			[]domain.Interval{iv(h(10, 0), h(13, 0)), iv(h(10, 0), h(13, 0)), iv(h(9, 0), h(12, 0))}, ""},
		{"cap 1, no other session", one, iv(h(10, 0), h(13, 0)), nil, ""},
		{"cap 1, another at the same time", one, iv(h(10, 0), h(13, 0)), []domain.Interval{iv(h(11, 0), h(12, 0))}, domain.CodeTooManySessions},
		{"cap 1, another ending as this starts", one, iv(h(10, 0), h(13, 0)), []domain.Interval{iv(h(7, 0), h(10, 0))}, ""},
		{"cap 1, another starting as this ends", one, iv(h(10, 0), h(13, 0)), []domain.Interval{iv(h(13, 0), h(16, 0))}, ""},
		{"cap 1, a second of overlap", one, iv(h(10, 0), h(13, 0)), []domain.Interval{iv(h(7, 0), h(10, 0).Add(time.Second))}, domain.CodeTooManySessions},
		{"cap 2, one other", two, iv(h(10, 0), h(13, 0)), []domain.Interval{iv(h(11, 0), h(12, 0))}, ""},
		{"cap 2, two others one after the other", two, iv(h(10, 0), h(13, 0)),
			[]domain.Interval{iv(h(10, 0), h(11, 0)), iv(h(11, 0), h(12, 0))}, ""},
		{"cap 2, two others overlapping each other inside", two, iv(h(10, 0), h(13, 0)),
			[]domain.Interval{iv(h(10, 0), h(11, 30)), iv(h(11, 0), h(12, 0))}, domain.CodeTooManySessions},
		{"cap 2, two others overlapping each other outside", two, iv(h(10, 0), h(13, 0)),
			[]domain.Interval{iv(h(8, 0), h(10, 30)), iv(h(9, 0), h(10, 0))}, ""},
		{"cap 2, two others overlapping each other across the start", two, iv(h(10, 0), h(13, 0)),
			[]domain.Interval{iv(h(8, 0), h(10, 30)), iv(h(9, 0), h(10, 1))}, domain.CodeTooManySessions},
		{"cap 2, others far away", two, iv(h(10, 0), h(13, 0)),
			[]domain.Interval{iv(june(thu, 10, 0), june(thu, 13, 0)), iv(june(thu, 10, 0), june(thu, 13, 0))}, ""},
		{"cap 1 across 23:59 to 00:00", one, iv(h(23, 0), june(thu, 1, 0)), []domain.Interval{iv(june(thu, 0, 0), june(thu, 2, 0))}, domain.CodeTooManySessions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantCode(t, domain.CheckConcurrentSessions(tt.z, tt.iv, tt.others), tt.code)
		})
	}

	// A start is checked on the interval it is granted, after its cuts.
	other := []domain.Interval{iv(h(11, 0), h(14, 0))}
	for _, c := range []struct {
		name    string
		z       *domain.Zone
		balance int
		code    domain.Code
	}{
		{"start overlapping the other", one, 600, domain.CodeTooManySessions},
		{"cut by the balance to end as the other starts", one, 60, ""},
		{"cap 2 allows it", two, 600, ""},
	} {
		t.Run("start: "+c.name, func(t *testing.T) {
			_, err := domain.PlanSession(c.z, *permitWith(c.balance, 0, 0), domain.StartRequest{Plate: "AB12CD", ReceivedAt: h(10, 0), PermitSessions: other})
			wantCode(t, err, c.code)
		})
	}
}

// The window the repo reads the permit's sessions in holds every interval a
// start or a change could be given: a superset is all CheckConcurrentSessions
// needs, and a read of it misses no session that counts.
func TestConcurrencyWindowHoldsEveryPlan(t *testing.T) {
	regimeEnd := zone(t, func(s *domain.ZoneSpec) { s.DefaultEnd = domain.DefaultEndPaidRegimeEnd })
	received := june(wed, 10, 0)
	starts := []*time.Time{nil, ptr(received.Add(-4 * time.Minute)), ptr(received.Add(26 * time.Hour)), ptr(june(wed, 23, 30))}
	ends := []func(time.Time) *time.Time{
		func(time.Time) *time.Time { return nil },
		func(s time.Time) *time.Time { return ptr(s.Add(time.Minute)) },
		func(s time.Time) *time.Time { return ptr(s.Add(3 * time.Hour)) },
	}
	planned, changed := 0, 0
	for _, z := range []*domain.Zone{centrum(t), regimeEnd} {
		for _, start := range starts {
			for _, end := range ends {
				s := received
				if start != nil {
					s = *start
				}
				req := domain.StartRequest{Plate: "AB12CD", StartAt: start, EndAt: end(s), ReceivedAt: received}
				plan, err := domain.PlanSession(z, rich(), req)
				if err != nil {
					continue // a rejected start is given no interval
				}
				planned++
				w := req.Window(z)
				if plan.StartAt.Before(w.Start) || plan.PlannedEndAt.After(w.End) {
					t.Errorf("start %v end %v: plan [%s, %s) outside the window [%s, %s)", start, end(s),
						plan.StartAt, plan.PlannedEndAt, w.Start, w.End)
				}
				g := domain.GrantedSession{SessionState: domain.SessionState{State: domain.StateOpen, StartAt: plan.StartAt,
					PlannedEndAt: plan.PlannedEndAt, ReservedMinutes: plan.ReservedMinutes}, Plate: plan.Plate, Country: plan.Country}
				for _, to := range []time.Duration{time.Minute, time.Hour, 3 * time.Hour} {
					c, err := domain.PlanChange(z, rich(), g, domain.ChangeRequest{EndAt: ptr(plan.StartAt.Add(to)), ReceivedAt: received})
					if err != nil {
						continue
					}
					changed++
					if gw := g.Window(z); c.PlannedEndAt.After(gw.End) || c.StartAt.Before(gw.Start) {
						t.Errorf("change to %s: [%s, %s) outside the window [%s, %s)", to, c.StartAt, c.PlannedEndAt, gw.Start, gw.End)
					}
				}
			}
		}
	}
	if planned < 10 || changed < 10 {
		t.Fatalf("%d starts planned and %d changes: the cases test too little", planned, changed)
	}
}
