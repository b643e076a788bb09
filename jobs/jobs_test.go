package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestRequestIDForm(t *testing.T) {
	for id, ok := range map[string]bool{
		"a": true, strings.Repeat("x", 64): true, "app-1:start_2.b": true,
		"": false, strings.Repeat("x", 65): false, "a b": false, "ä": false, "a/b": false,
	} {
		if ValidRequestID(id) != ok {
			t.Errorf("ValidRequestID(%q) = %v, want %v", id, !ok, ok)
		}
	}
}

func TestConstructorsStampReceiptAndSetPolicy(t *testing.T) {
	fixed := time.Date(2026, 3, 29, 1, 30, 0, 0, time.FixedZone("X", 3600))
	now = func() time.Time { return fixed }
	defer func() { now = time.Now }()
	task, err := NewSessionStart(SessionStart{RequestID: "r1", PermitID: "1", Plate: "AB12CD"})
	if err != nil {
		t.Fatal(err)
	}
	var p SessionStart
	if err := json.Unmarshal(task.Payload(), &p); err != nil {
		t.Fatal(err)
	}
	if !p.ReceivedAt.Equal(fixed) || p.ReceivedAt.Location() != time.UTC || p.StartAt != nil {
		t.Fatalf("received_at = %v start_at = %v, want the receipt instant in UTC and no start", p.ReceivedAt, p.StartAt)
	}
	if _, err := NewSessionStart(SessionStart{RequestID: "r1"}); err == nil {
		t.Fatal("a start without permit_id was accepted")
	}
	if _, err := NewPermitTopup(PermitTopup{RequestID: "x y", PermitID: "1"}); err == nil {
		t.Fatal("a bad request ID was accepted")
	}
}

func TestFingerprintIgnoresReceiptButNotContent(t *testing.T) {
	a := SessionStart{RequestID: "r", PermitID: "1", Plate: "AB12CD", ReceivedAt: time.Unix(1, 0)}
	b := a
	b.ReceivedAt = time.Unix(99, 0)
	b.RequestID = "other"
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatal("fingerprint depends on receipt instant or request ID")
	}
	c := a
	c.Plate = "AB12CE"
	if a.Fingerprint() == c.Fingerprint() {
		t.Fatal("fingerprint ignores the plate")
	}
	// The country is part of what a start asks; none and NL ask the same.
	de, nl := a, a
	de.Country, nl.Country = "DE", "NL"
	if a.Fingerprint() == de.Fingerprint() {
		t.Fatal("fingerprint ignores the country")
	}
	if a.Fingerprint() != nl.Fingerprint() {
		t.Fatal("no country and NL, the default, fingerprint differently")
	}
	// Field boundaries matter: ("1","2AB") is not ("12","AB").
	d1 := SessionStart{PermitID: "1", Plate: "2AB"}
	d2 := SessionStart{PermitID: "12", Plate: "AB"}
	if d1.Fingerprint() == d2.Fingerprint() {
		t.Fatal("fingerprint confuses field boundaries")
	}
}

func TestAutoStopTaskIDIsDeterministic(t *testing.T) {
	end := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	if AutoStopTaskID("5", end) != AutoStopTaskID("5", end.In(time.FixedZone("Y", 7200))) {
		t.Fatal("task ID depends on the time zone of the instant")
	}
	if AutoStopTaskID("5", end) == AutoStopTaskID("5", end.Add(-time.Minute)) {
		t.Fatal("a moved end must get a new task ID")
	}
}
