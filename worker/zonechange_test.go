package worker_test

import (
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Zone changes apply forward: a session granted before an operator changed the
// zone (every weekday invalid, a one-minute maximum, another tariff and time
// zone) is settled as it was granted, by its auto-stop and by a stop alike, and
// only what starts afterwards meets the new rules.
func TestZoneChangeLeavesGrantedSessionsAsGranted(t *testing.T) {
	e := setupParallel(t)
	clock := time.Now().UTC().Truncate(time.Second)
	clk := newTestClock(clock)
	e.h.Clock = clk
	pid := e.permit(10)
	var a, b jobs.Session
	for _, c := range []struct {
		plate string
		into  *jobs.Session
	}{{"KEEP1", &a}, {"KEEP2", &b}} {
		task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: rid("start"), PermitID: pid, Plate: c.plate, ReceivedAt: clock})
		if err != nil {
			t.Fatal(err)
		}
		if r := e.run(task, e.h.SessionStart, c.into); r.Status != repo.RequestApplied || c.into.ReservedMinutes != 180 {
			t.Fatalf("start %s: %s %s %+v", c.plate, r.Status, r.Error, c.into)
		}
	}

	e.putZone("TEST", domain.ZoneSpec{Name: "Test", TimeZone: "Pacific/Kiritimati", TariffCentsPerHour: 999,
		InvalidWeekdays: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}, MaxSessionMinutes: 1})

	// A stop 100 minutes in charges the 100 minutes started.
	clock = a.StartAt.Add(100 * time.Minute)
	clk.set(clock)
	sid := rid("stop")
	stop, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: sid, SessionID: a.ID, ReceivedAt: clock})
	if err != nil {
		t.Fatal(err)
	}
	var st jobs.Session
	if r := e.run(stop, e.h.SessionStop, &st); r.Status != repo.RequestApplied || st.ChargedMinutes == nil || *st.ChargedMinutes != 100 {
		t.Fatalf("stop %s: %s %s %+v, want 100 minutes charged", sid, r.Status, r.Error, st)
	}
	// The auto-stop charges the whole interval granted.
	clk.set(b.PlannedEndAt)
	if got := e.autoStopNow(b); got.ChargedMinutes == nil || *got.ChargedMinutes != 180 || !got.EndAt.Equal(b.PlannedEndAt) {
		t.Fatalf("auto-stopped: %+v, want 180 minutes charged up to %s", got, b.PlannedEndAt)
	}
	if p := e.permitRow(pid); p.BalanceMinutes != 600-280 || p.UsedMinutes != 280 {
		t.Fatalf("permit: balance %d used %d, want 320 and 280", p.BalanceMinutes, p.UsedMinutes)
	}
	// What starts now meets the zone as it is now.
	task, id := e.startTask(pid, "NEW1", nil, nil)
	if r := e.run(task, e.h.SessionStart, nil); r.Status != repo.RequestRejected {
		t.Fatalf("start after the change (%s): %s, want rejected", id, r.Status)
	}
	e.checkInvariants()
}
