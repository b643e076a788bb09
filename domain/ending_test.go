package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// DOMAIN.md "Events": session.ending is due ending_notice_minutes (default
// 10) before the planned end, in real minutes, never before the start or the
// receipt of the request that set the end.
func TestSessionEndingNoticeBeforePlannedEnd(t *testing.T) {
	hour := zone(t, func(s *domain.ZoneSpec) { s.EndingNoticeMinutes = 60 })
	minute := zone(t, func(s *domain.ZoneSpec) { s.EndingNoticeMinutes = 1 })
	tests := []struct {
		name                     string
		z                        *domain.Zone // the centre when nil
		start, end, received, at time.Time    // at zero: no notice
	}{
		{name: "3 hours: 10 minutes before", start: june(wed, 10, 0), end: june(wed, 13, 0), received: june(wed, 10, 0), at: june(wed, 12, 50)},
		{name: "zone setting 60", z: hour, start: june(wed, 10, 0), end: june(wed, 13, 0), received: june(wed, 10, 0), at: june(wed, 12, 0)},
		{name: "zone setting 1", z: minute, start: june(wed, 10, 0), end: june(wed, 13, 0), received: june(wed, 10, 0), at: june(wed, 12, 59)},
		{name: "sunday 16:30 to 17:00", start: june(sun, 16, 30), end: june(sun, 17, 0), received: june(sun, 16, 30), at: june(sun, 16, 50)},
		{name: "ends 00:05: due 23:55 the day before", start: june(wed, 21, 5), end: june(thu, 0, 5), received: june(wed, 21, 5), at: june(wed, 23, 55)},
		{name: "exactly 10 minutes long: at the start", start: june(wed, 10, 0), end: june(wed, 10, 10), received: june(wed, 10, 0), at: june(wed, 10, 0)},
		{name: "5 minutes long: at the start", start: june(wed, 10, 0), end: june(wed, 10, 5), received: june(wed, 10, 0), at: june(wed, 10, 0)},
		{name: "planned 5 minutes: at its start, not the receipt", start: june(thu, 10, 0), end: june(thu, 10, 5), received: june(wed, 10, 0), at: june(thu, 10, 0)},
		{name: "start 4 minutes back, 5 minutes long: at the receipt", start: june(wed, 9, 56), end: june(wed, 10, 1), received: june(wed, 10, 0), at: june(wed, 10, 0)},
		{name: "ended on receipt: no notice", start: june(wed, 9, 55), end: june(wed, 9, 56), received: june(wed, 10, 0)},
		{name: "ends at the receipt: no notice", start: june(wed, 9, 55), end: june(wed, 10, 0), received: june(wed, 10, 0)},
		{name: "changed at 10:58 to end 11:05: at once", start: june(wed, 10, 0), end: june(wed, 11, 5), received: june(wed, 10, 58), at: june(wed, 10, 58)},
		{name: "changed at 10:30 to end 12:00", start: june(wed, 10, 0), end: june(wed, 12, 0), received: june(wed, 10, 30), at: june(wed, 11, 50)},
		// 2025-10-26: 02:05 CET is 01:05 UTC; 10 real minutes before is 00:55
		// UTC, which the wall clock shows as 02:55 CEST.
		{name: "autumn DST night: 10 real minutes", start: utc(2025, time.October, 25, 23, 0, 0), end: utc(2025, time.October, 26, 1, 5, 0),
			received: utc(2025, time.October, 25, 23, 0, 0), at: utc(2025, time.October, 26, 0, 55, 0)},
		// 2025-03-30: 03:05 CEST is 01:05 UTC; 10 minutes before is 01:55 CET.
		{name: "spring DST night: 10 real minutes", start: utc(2025, time.March, 29, 23, 0, 0), end: utc(2025, time.March, 30, 1, 5, 0),
			received: utc(2025, time.March, 29, 23, 0, 0), at: utc(2025, time.March, 30, 0, 55, 0)},
		// Santiago 2026-09-06: Sunday 01:05 -03 is 04:05 UTC; the notice is
		// Saturday 23:55 -04.
		{name: "Santiago jump at midnight", z: santiagoZone(t, func(s *domain.ZoneSpec) { s.InvalidWeekdays = []string{} }),
			start: utc(2026, time.September, 6, 2, 0, 0), end: utc(2026, time.September, 6, 4, 5, 0),
			received: utc(2026, time.September, 6, 2, 0, 0), at: utc(2026, time.September, 6, 3, 55, 0)},
	}
	def := centrum(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, _ := orDefaults(tt.z, def, nil)
			at, ok := domain.SessionEndingAt(z, tt.start, tt.end, tt.received)
			if ok != !tt.at.IsZero() || (ok && !at.Equal(tt.at)) {
				t.Errorf("notice at %s (sent %t), want %s (sent %t)", at.UTC(), ok, tt.at.UTC(), !tt.at.IsZero())
			}
		})
	}
}
