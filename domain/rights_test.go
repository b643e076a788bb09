package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

func TestEnforcementRight(t *testing.T) {
	z := centrum(t)
	var (
		holder   = domain.PlacePermitHolder
		paid     = domain.PlacePaid
		short    = domain.PlaceShortStay
		carFree  = domain.PlaceCarFree
		session  = domain.ReasonSession
		noNeed   = domain.ReasonNoRightNeeded
		notHere  = domain.ReasonNotValidHere
		notToday = domain.ReasonNotValidOnDay
		none     = domain.ReasonNoSession
	)
	tests := []struct {
		name    string
		kind    domain.PlaceKind
		at      time.Time
		covered bool
		valid   bool
		reason  string
	}{
		// permit_holder: a session at every hour, 7 days, 00:00-24:00.
		{"holder, night, session", holder, june(wed, 3, 0), true, true, session},
		{"holder, night, no session", holder, june(wed, 3, 0), false, false, none},
		{"holder, paid hours, session", holder, june(wed, 12, 0), true, true, session},
		{"holder, paid hours, no session", holder, june(wed, 12, 0), false, false, none},
		{"holder, sunday 23:59, no session", holder, june(sun, 23, 59), false, false, none},
		{"holder, monday 00:00, session", holder, june(mon, 0, 0), true, true, session},
		{"holder, friday 23:59, session", holder, june(fri, 23, 59), true, true, session},
		{"holder, saturday 00:00, no session", holder, june(sat, 0, 0), false, false, notToday},
		{"holder, saturday paid hours, no session", holder, june(sat, 12, 0), false, false, notToday},
		{"holder, UTC friday that is local saturday, no session", holder, utc(2025, time.June, fri, 22, 30, 0), false, false, notToday},
		// A session covering a saturday was granted before saturday became
		// invalid (a start is cut at invalid days): a zone change applies
		// forward, so the right granted stands.
		{"holder, saturday 00:00, session granted before the zone changed", holder, june(sat, 0, 0), true, true, session},
		{"holder, saturday night, session granted before the zone changed", holder, june(sat, 3, 0), true, true, session},
		{"holder, UTC friday that is local saturday, session granted before", holder, utc(2025, time.June, fri, 22, 30, 0), true, true, session},

		// paid: a session only inside the regime.
		{"paid, before 09:00, no session", paid, june(wed, 8, 59), false, true, noNeed},
		{"paid, 09:00, no session", paid, june(wed, 9, 0), false, false, none},
		{"paid, 09:00, session", paid, june(wed, 9, 0), true, true, session},
		{"paid, 20:59, no session", paid, june(wed, 20, 59), false, false, none},
		{"paid, 21:00, no session", paid, june(wed, 21, 0), false, true, noNeed},
		{"paid, 21:00, session", paid, june(wed, 21, 0), true, true, noNeed},
		{"paid, sunday 16:59, no session", paid, june(sun, 16, 59), false, false, none},
		{"paid, sunday 17:00, no session", paid, june(sun, 17, 0), false, true, noNeed},
		{"paid, saturday in the regime, no session", paid, june(sat, 12, 0), false, false, notToday},
		{"paid, saturday in the regime, session granted before the zone changed", paid, june(sat, 12, 0), true, true, session},
		{"paid, saturday outside the regime", paid, june(sat, 22, 0), false, true, noNeed},
		{"paid, UTC 07:30 is local 09:30, no session", paid, utc(2025, time.June, wed, 7, 30, 0), false, false, none},

		// short_stay and car_free: never valid.
		{"short stay, session", short, june(wed, 12, 0), true, false, notHere},
		{"short stay, night, session", short, june(wed, 3, 0), true, false, notHere},
		{"short stay, no session", short, june(wed, 12, 0), false, false, notHere},
		{"car free, session", carFree, june(wed, 12, 0), true, false, notHere},
		{"car free, night, session", carFree, june(wed, 3, 0), true, false, notHere},
		{"car free, saturday, session", carFree, june(sat, 12, 0), true, false, notHere},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := domain.CheckRight(z, tt.kind, tt.at, tt.covered)
			if got.Valid != tt.valid || got.Reason != tt.reason {
				t.Errorf("CheckRight(%s, %s, covered=%v) = %+v, want valid=%v reason=%s",
					tt.kind, tt.at.In(ams).Format("Mon 15:04"), tt.covered, got, tt.valid, tt.reason)
			}
		})
	}
}

func TestParsePlaceKind(t *testing.T) {
	for _, s := range []string{"permit_holder", "paid", "short_stay", "car_free"} {
		k, err := domain.ParsePlaceKind(s)
		if err != nil || string(k) != s {
			t.Errorf("ParsePlaceKind(%q) = %q, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "PAID", "kort_parkeren", "paid ", "permit-holder"} {
		if k, err := domain.ParsePlaceKind(s); err == nil {
			t.Errorf("ParsePlaceKind(%q) = %q, want an error", s, k)
		}
	}
}
