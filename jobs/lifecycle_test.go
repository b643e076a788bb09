package jobs

import (
	"encoding/json"
	"testing"
	"time"
)

// Schedulers on several hosts name each hourly rollover the same, even with
// clocks apart, and every hour differently.
func TestRolloverTaskIDPerPeriod(t *testing.T) {
	run := time.Date(2026, time.December, 31, 23, 5, 0, 0, time.UTC)
	want := "permit:rollover:2026-12-31T23"
	for _, skew := range []time.Duration{0, -29 * time.Minute, -30 * time.Minute, 29 * time.Minute, 29*time.Minute + 59*time.Second} {
		if got := RolloverTaskID(run.Add(skew)); got != want {
			t.Errorf("run at %s: %s, want %s", run.Add(skew), got, want)
		}
	}
	if got := RolloverTaskID(run.Add(time.Hour)); got != "permit:rollover:2027-01-01T00" {
		t.Errorf("next hour: %s", got)
	}
	if got := RolloverTaskID(run.Add(-time.Hour)); got == want {
		t.Errorf("the hour before has the same ID %s", got)
	}
	// Any time zone names the same instant the same.
	if got := RolloverTaskID(run.In(time.FixedZone("CET", 3600))); got != want {
		t.Errorf("in CET: %s", got)
	}
}

func TestNewPermitRollover(t *testing.T) {
	task := NewPermitRollover(time.Date(2026, time.December, 31, 23, 5, 0, 0, time.UTC))
	var p PermitRollover
	if err := json.Unmarshal(task.Payload(), &p); err != nil {
		t.Fatal(err)
	}
	if task.Type() != TypePermitRollover || p.Day != "2026-12-31" {
		t.Fatalf("%s %+v", task.Type(), p)
	}
}

// Schedulers name each hourly retention run the same, clocks up to half an
// hour apart, and every hour differently.
func TestRetentionTaskIDPerPeriod(t *testing.T) {
	run := time.Date(2026, time.December, 31, 23, 35, 0, 0, time.UTC)
	want := "privacy:retention:2026-12-31T23"
	for _, skew := range []time.Duration{0, -29 * time.Minute, 29 * time.Minute} {
		if got := RetentionTaskID(run.Add(skew)); got != want {
			t.Errorf("run at %s: %s, want %s", run.Add(skew), got, want)
		}
	}
	if got := RetentionTaskID(run.Add(time.Hour)); got != "privacy:retention:2027-01-01T00" {
		t.Errorf("next hour: %s", got)
	}
	task := NewPrivacyRetention(run)
	if task.Type() != TypePrivacyRetention || len(task.Payload()) != 0 {
		t.Fatalf("%s %q", task.Type(), task.Payload())
	}
}
