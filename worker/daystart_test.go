package worker_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// A zone in America/Santiago, Sunday invalid, its year starting 5 September:
// on 5 September 2027 the clocks jump from 00:00 -04 to 01:00 -03. Through
// Postgres: the permit's year ends at 01:00 (04:00Z), a start on Saturday 22:30
// reserves the 90 minutes up to that instant and no more, enforcement covers
// exactly those 90 minutes, and the auto-stop charges them.
func TestStartBeforeAJumpAtMidnightIsCutWhereTheInvalidDayBegins(t *testing.T) {
	e := setupParallel(t)
	e.putZone("SCL", domain.ZoneSpec{Name: "Santiago", TimeZone: "America/Santiago", TariffCentsPerHour: 210,
		InvalidWeekdays: []string{"sun"}, YearStarts: "09-05"})
	sunday := time.Date(2027, time.September, 5, 4, 0, 0, 0, time.UTC) // 01:00 -03, the first instant of Sunday
	clock := time.Date(2027, time.September, 5, 2, 25, 0, 0, time.UTC) // Saturday 22:25 -04
	clk := newTestClock(clock)
	e.h.Clock = clk
	pid := e.permitIn("SCL", 10)
	if p := e.permitRow(pid); !p.YearEndsAt.Equal(sunday) {
		t.Fatalf("permit year ends %s, want %s (01:00 -03), not 23:00 the evening before", p.YearEndsAt.UTC(), sunday)
	}

	startAt := time.Date(2027, time.September, 5, 2, 30, 0, 0, time.UTC) // Saturday 22:30 -04
	task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: rid("start"), PermitID: pid, Plate: "SCL123", StartAt: &startAt, ReceivedAt: clock})
	if err != nil {
		t.Fatal(err)
	}
	var s jobs.Session
	if r := e.run(task, e.h.SessionStart, &s); r.Status != repo.RequestApplied {
		t.Fatalf("start: %s %s", r.Status, r.Error)
	}
	if !s.PlannedEndAt.Equal(sunday) || s.ReservedMinutes != 90 {
		t.Fatalf("planned end %s, %d minutes reserved; want %s and 90", s.PlannedEndAt.UTC(), s.ReservedMinutes, sunday)
	}
	if len(s.Notices) == 0 || s.Notices[0].Code != domain.NoticeCutInvalidDay {
		t.Fatalf("notices %+v, want %s", s.Notices, domain.NoticeCutInvalidDay)
	}
	if got := e.permitRow(pid).BalanceMinutes; got != 600-90 {
		t.Fatalf("balance %d, want 510", got)
	}

	// Enforcement, as GET /v1/rights asks: covered up to Sunday's first instant,
	// not valid from it; every minute reserved is a minute covered.
	for _, c := range []struct {
		at     time.Time
		valid  bool
		reason string
	}{
		{sunday.Add(-time.Minute), true, domain.ReasonSession},
		{sunday, false, domain.ReasonNotValidOnDay},
	} {
		z, _, covered, err := e.store.RightsLookup(e.ctx, e.store.DB, "SCL123", "SCL", c.at)
		if err != nil {
			t.Fatal(err)
		}
		if got := domain.CheckRight(z, domain.PlacePermitHolder, c.at, covered); got.Valid != c.valid || got.Reason != c.reason {
			t.Fatalf("right at %s: %+v, want valid=%v %s", c.at.UTC(), got, c.valid, c.reason)
		}
	}

	clk.set(sunday)
	if st := e.autoStopNow(s); st.ChargedMinutes == nil || *st.ChargedMinutes != 90 || !st.EndAt.Equal(sunday) {
		t.Fatalf("auto-stopped: %+v, want 90 minutes charged up to %s", st, sunday)
	}
	e.checkInvariants()
}
