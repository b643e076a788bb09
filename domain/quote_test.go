package domain_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
)

// DOMAIN.md "Quote": what a start would do now, with the cost in cents at the
// zone's tariff, minutes × tariff / 60 rounded up, or the rule it breaks.
func TestQuoteIsTheStartsDecisionWithItsCost(t *testing.T) {
	r := june(wed, 10, 0)
	odd := zone(t, func(s *domain.ZoneSpec) { s.TariffCentsPerHour = 7 })
	regimeEnd := zone(t, func(s *domain.ZoneSpec) { s.DefaultEnd = domain.DefaultEndPaidRegimeEnd })
	one := zone(t, func(s *domain.ZoneSpec) { s.MaxConcurrentSessions = intp(1) })
	tests := []struct {
		name    string
		z       *domain.Zone // the centre when nil
		permit  *domain.PermitState
		req     domain.StartRequest
		code    domain.Code
		minutes int
		cents   int64
	}{
		{name: "3 hours at 210: 630 cents", req: domain.StartRequest{ReceivedAt: r}, minutes: 180, cents: 630},
		{name: "1 minute at 210: 3.5 rounds up to 4", req: domain.StartRequest{ReceivedAt: r, EndAt: ptr(june(wed, 10, 1))}, minutes: 1, cents: 4},
		{name: "2 minutes at 210: exactly 7", req: domain.StartRequest{ReceivedAt: r, EndAt: ptr(june(wed, 10, 2))}, minutes: 2, cents: 7},
		{name: "30 seconds is a started minute", req: domain.StartRequest{ReceivedAt: r, EndAt: ptr(local(2025, time.June, wed, 10, 0, 30))},
			minutes: 1, cents: 4},
		{name: "59 minutes at 7: 6.88 rounds up to 7", z: odd, req: domain.StartRequest{ReceivedAt: r, EndAt: ptr(june(wed, 10, 59))},
			minutes: 59, cents: 7},
		{name: "cut by the balance: the cost of what is reserved", permit: permitWith(45, 0, 0), req: domain.StartRequest{ReceivedAt: r},
			minutes: 45, cents: 158},
		{name: "cut at saturday: friday 22:30", req: domain.StartRequest{ReceivedAt: june(fri, 22, 30)}, minutes: 90, cents: 315},
		{name: "sunday 16:30 at the regime end", z: regimeEnd, req: domain.StartRequest{ReceivedAt: june(sun, 16, 30)}, minutes: 30, cents: 105},
		{name: "sunday 16:30, default: 3 hours", req: domain.StartRequest{ReceivedAt: june(sun, 16, 30)}, minutes: 180, cents: 630},
		{name: "DST night: 3 real hours", req: domain.StartRequest{ReceivedAt: utc(2025, time.October, 25, 23, 30, 0)}, minutes: 180, cents: 630},
		{name: "on saturday: the start's rejection", req: domain.StartRequest{ReceivedAt: june(sat, 10, 0)}, code: domain.CodeNotValidOnDay},
		{name: "no balance: the start's rejection", permit: permitWith(0, 0, 0), req: domain.StartRequest{ReceivedAt: r},
			code: domain.CodeInsufficientBalance},
		{name: "too many sessions: the start's rejection", z: one, req: domain.StartRequest{ReceivedAt: r,
			PermitSessions: []domain.Interval{{Start: june(wed, 9, 0), End: june(wed, 11, 0)}}}, code: domain.CodeTooManySessions},
		{name: "bad plate: the start's rejection", req: domain.StartRequest{ReceivedAt: r, Plate: "😀"}, code: domain.CodeInvalidPlate},
	}
	def := centrum(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z, p := orDefaults(tt.z, def, tt.permit)
			if tt.req.Plate == "" {
				tt.req.Plate = "ab-12-cd"
			}
			q, err := domain.QuoteSession(z, p, tt.req)
			plan, planErr := domain.PlanSession(z, p, tt.req)
			if !reflect.DeepEqual(err, planErr) {
				t.Errorf("quote error %v, start error %v: not the same decision", err, planErr)
			}
			if !wantCode(t, err, tt.code) {
				return
			}
			if !reflect.DeepEqual(q.SessionPlan, plan) {
				t.Errorf("quote %+v, start %+v: not the same decision", q.SessionPlan, plan)
			}
			if q.ReservedMinutes != tt.minutes || q.CostCents != tt.cents {
				t.Errorf("%d minutes for %d cents, want %d for %d", q.ReservedMinutes, q.CostCents, tt.minutes, tt.cents)
			}
		})
	}
}

// The cost in cents is exact integer arithmetic at every size: minutes ×
// tariff / 60 rounded up, never a float.
func TestCostCentsRoundsUp(t *testing.T) {
	tests := []struct {
		tariff  int64
		minutes int
		want    int64
	}{
		{210, 0, 0}, {210, -5, 0}, {210, 1, 4}, {210, 2, 7}, {210, 60, 210}, {210, 61, 214},
		{1, 1, 1}, {1, 60, 1}, {1, 61, 2}, {100_000, 1, 1667}, {100_000, 1440, 2_400_000},
		{100_000, 8784 * 60, 878_400_000},
	}
	for _, tt := range tests {
		z := zone(t, func(s *domain.ZoneSpec) { s.TariffCentsPerHour = tt.tariff })
		if got := z.CostCents(tt.minutes); got != tt.want {
			t.Errorf("CostCents(%d) at %d/h = %d, want %d", tt.minutes, tt.tariff, got, tt.want)
		}
	}
}
