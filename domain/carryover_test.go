package domain_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// DOMAIN.md "Carry-over cap": at rollover the balance above the zone's
// carry_over_max_hours expires (an expire ledger entry, expired_minutes on the
// statement); without a cap the whole balance carries, as before; reservations
// of open sessions carry whole either way.
func TestCarryOverCapAtRollover(t *testing.T) {
	capped := func(h int) *domain.Zone {
		return zone(t, func(s *domain.ZoneSpec) { s.CarryOverMaxHours = intp(h) })
	}
	start := local(2025, time.January, 1, 0, 0, 0)
	end := local(2026, time.January, 1, 0, 0, 0)
	tests := []struct {
		name              string
		z                 *domain.Zone
		balance, reserved int
		carried, expired  int
	}{
		{"no cap: 600 hours carry", centrum(t), 600 * 60, 0, 600 * 60, 0},
		{"no cap: nothing", centrum(t), 0, 0, 0, 0},
		{"cap 50: below it", capped(50), 49*60 + 59, 0, 49*60 + 59, 0},
		{"cap 50: exactly at it", capped(50), 50 * 60, 0, 50 * 60, 0},
		{"cap 50: a minute above", capped(50), 50*60 + 1, 0, 50 * 60, 1},
		{"cap 50: 120 hours", capped(50), 120 * 60, 0, 50 * 60, 70 * 60},
		{"cap 50: reservations are not balance", capped(50), 50 * 60, 180, 50 * 60, 0},
		{"cap 50: balance above, reservations carried whole", capped(50), 60 * 60, 180, 50 * 60, 10 * 60},
		{"cap 0: everything expires", capped(0), 170, 30, 0, 170},
		{"cap 0: nothing to expire", capped(0), 0, 30, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			y := domain.YearState{StartsAt: start, EndsAt: end, PurchasedMinutes: 600, UsedMinutes: 250,
				BalanceMinutes: tt.balance, ReservedMinutes: tt.reserved}
			st, next := domain.RollYear(tt.z, y)
			if st.CarriedOverMinutes != tt.carried || st.ExpiredMinutes != tt.expired {
				t.Errorf("statement carried %d, expired %d; want %d, %d", st.CarriedOverMinutes, st.ExpiredMinutes, tt.carried, tt.expired)
			}
			if st.CarriedOverMinutes+st.ExpiredMinutes != tt.balance {
				t.Errorf("carried %d + expired %d != balance %d: minutes lost or made", st.CarriedOverMinutes, st.ExpiredMinutes, tt.balance)
			}
			if next.BalanceMinutes != tt.carried || next.ReservedMinutes != tt.reserved ||
				next.PurchasedMinutes != 0 || next.UsedMinutes != 0 || !next.StartsAt.Equal(end) {
				t.Errorf("next year %+v", next)
			}
			if st.PurchasedMinutes != 600 || st.UsedMinutes != 250 || !st.YearStartsAt.Equal(start) || !st.YearEndsAt.Equal(end) {
				t.Errorf("statement %+v", st)
			}
			if c, e := tt.z.CarryOver(tt.balance); c != tt.carried || e != tt.expired {
				t.Errorf("CarryOver(%d) = %d, %d", tt.balance, c, e)
			}
		})
	}
}
