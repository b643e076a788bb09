package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/parkd/parkd/domain"
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
	was := clock
	clock = clockwork.NewFakeClockAt(fixed)
	defer func() { clock = was }()
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

// A change's fingerprint is its session, its end and its plate: no plate and
// an empty plate ask different things, and so do no end and an end.
func TestChangeFingerprint(t *testing.T) {
	end := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	empty, plate := "", "AB12CD"
	base := SessionChange{RequestID: "r", SessionID: "5", ReceivedAt: end.Add(-time.Hour)}
	variants := map[string]SessionChange{"nothing": base}
	withEnd, withEmpty, withPlate, other := base, base, base, base
	withEnd.EndAt, withEmpty.Plate, withPlate.Plate, other.SessionID = &end, &empty, &plate, "6"
	variants["end"], variants["empty plate"], variants["plate"], variants["other session"] = withEnd, withEmpty, withPlate, other
	seen := map[string]string{}
	for name, v := range variants {
		if prior, ok := seen[v.Fingerprint()]; ok {
			t.Fatalf("%s and %s fingerprint alike", name, prior)
		}
		seen[v.Fingerprint()] = name
	}
	again := withPlate
	again.RequestID, again.ReceivedAt = "other", end.Add(-time.Minute)
	if again.Fingerprint() != withPlate.Fingerprint() {
		t.Fatal("a change's fingerprint depends on its request ID or receipt")
	}
	task, err := NewSessionChange(withEnd)
	if err != nil {
		t.Fatal(err)
	}
	if q, ok := RequestQueue(task.Type()); !ok || q != QueueCritical {
		t.Fatalf("session:change queue %q %v, want critical", q, ok)
	}
	if _, err := NewSessionChange(SessionChange{RequestID: "r"}); err == nil {
		t.Fatal("a change without session_id was accepted")
	}
}

// An auto-stop carries the planned end it was scheduled for, so that the one
// of an end a change moved does nothing.
func TestAutoStopCarriesItsEnd(t *testing.T) {
	end := time.Date(2026, 11, 24, 15, 0, 0, 123000, time.FixedZone("X", 3600))
	var p SessionAutoStop
	if err := json.Unmarshal(NewSessionAutoStop("5", end).Payload(), &p); err != nil {
		t.Fatal(err)
	}
	if p.SessionID != "5" || p.PlannedEndAt == nil || !p.PlannedEndAt.Equal(end) {
		t.Fatalf("payload %+v, want session 5 and planned end %s", p, end)
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

// Instants outside the years 2000-2199 are refused by every constructor with a
// bad_request naming the field, so that an upstream app learns it at once; the
// worker refuses them again when a payload comes from elsewhere.
func TestConstructorsRefuseInstantsOutsideTheYears(t *testing.T) {
	year1 := time.Time{}
	y9999 := time.Date(9999, 12, 31, 23, 59, 59, 0, time.FixedZone("-12", -12*3600))
	y2200 := time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
	ok := time.Date(2199, 12, 31, 23, 59, 59, 0, time.UTC)
	newTask := func(r Request) (err error) {
		switch p := r.(type) {
		case SessionStart:
			_, err = NewSessionStart(p)
		case SessionStop:
			_, err = NewSessionStop(p)
		case SessionChange:
			_, err = NewSessionChange(p)
		case PermitEnd:
			_, err = NewPermitEnd(p)
		case PermitIssue:
			_, err = NewPermitIssue(p)
		case PermitTopup:
			_, err = NewPermitTopup(p)
		}
		return err
	}
	cases := []struct {
		name  string
		req   Request
		field string
	}{
		{"start_at year 1", SessionStart{RequestID: "r", PermitID: "1", StartAt: &year1}, "start_at"},
		{"start_at 9999-12-31T23:59:59-12:00", SessionStart{RequestID: "r", PermitID: "1", StartAt: &y9999}, "start_at"},
		{"end_at 2200", SessionStart{RequestID: "r", PermitID: "1", EndAt: &y2200}, "end_at"},
		{"received_at 2200", SessionStart{RequestID: "r", PermitID: "1", ReceivedAt: y2200}, "received_at"},
		{"stop at year 1", SessionStop{RequestID: "r", SessionID: "1", At: &year1}, "at"},
		{"change end_at 2200", SessionChange{RequestID: "r", SessionID: "1", EndAt: &y2200}, "end_at"},
		{"permit end at 2200", PermitEnd{RequestID: "r", PermitID: "1", At: &y2200}, "at"},
		{"issue received 2200", PermitIssue{RequestID: "r", ResidentID: "R", AddressID: "A", ReceivedAt: y2200}, "received_at"},
		{"top-up received 2200", PermitTopup{RequestID: "r", PermitID: "1", ReceivedAt: y2200}, "received_at"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := newTask(c.req)
			rule, isRule := domain.AsRule(err)
			if !isRule || rule.Code != domain.CodeBadRequest || !strings.Contains(rule.Message, c.field) {
				t.Fatalf("error %v, want a %s naming %s", err, domain.CodeBadRequest, c.field)
			}
		})
	}
	if _, err := NewSessionStart(SessionStart{RequestID: "r", PermitID: "1", StartAt: &ok, EndAt: &ok}); err != nil {
		t.Fatalf("the last second of 2199 was refused: %v", err)
	}
}
