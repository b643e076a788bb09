package chaos

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/load"
	"github.com/parkd/parkd/tools/npr"
	"github.com/parkd/parkd/tools/receiver"
)

var v0 = time.Date(2026, 11, 30, 13, 0, 0, 0, time.UTC)

// registered is a settled, registered session as the database holds it.
func registered(id int64, state domain.State, version int) repo.Session {
	end := v0.Add(40 * time.Minute)
	if state == domain.StateCancelled {
		end = v0
	}
	codes := load.LabRegistration
	return repo.Session{ID: id, Plate: "AB12CD", Country: "NL", State: state, StartAt: v0, PlannedEndAt: v0.Add(time.Hour),
		EndAt: &end, Registration: &codes, RightVersion: version, RightRegisteredVersion: version}
}

// The register's rights are held to parkd's sessions: as they are, they
// pass; each planted difference (a right missing, an older version, another
// end, status, plate or area, a right of no session) fails, naming it.
func TestRightsVerdict(t *testing.T) {
	sessions := []repo.Session{registered(1, domain.StateStopped, 2), registered(2, domain.StateCancelled, 2), registered(3, domain.StateStopped, 3)}
	held := func() map[string]npr.Right {
		m := map[string]npr.Right{}
		for _, s := range sessions {
			r := load.RightOf("parkd", s)
			m[r.RightID] = r
		}
		return m
	}
	if r := held(); r["parkd-1"].Status != "ended" || !r["parkd-1"].EndAt.Equal(v0.Add(40*time.Minute)) || r["parkd-2"].Status != "cancelled" ||
		r["parkd-3"].Version != 3 || r["parkd-1"].AreaID != load.LabRegistration.AreaID {
		t.Fatalf("RightOf: %+v", r)
	}
	if ch := rightsVerdict("parkd", sessions, held()); !ch.OK {
		t.Fatalf("the register as parkd: %+v", ch)
	}
	for _, c := range []struct {
		name  string
		plant func(map[string]npr.Right)
		want  string
	}{
		{"a right missing", func(m map[string]npr.Right) { delete(m, "parkd-2") }, "session 2: the register holds no right parkd-2"},
		{"an older version", func(m map[string]npr.Right) { r := m["parkd-3"]; r.Version = 2; m["parkd-3"] = r }, "version 2, parkd's newest is 3"},
		{"another end", func(m map[string]npr.Right) { r := m["parkd-1"]; r.EndAt = r.EndAt.Add(time.Second); m["parkd-1"] = r }, "end 2026-11-30T13:40:01Z"},
		{"still active", func(m map[string]npr.Right) { r := m["parkd-1"]; r.Status = "active"; m["parkd-1"] = r }, "status active, parkd has ended"},
		{"another plate", func(m map[string]npr.Right) { r := m["parkd-1"]; r.Plate = "ZZ99ZZ"; m["parkd-1"] = r }, "another plate"},
		{"another area", func(m map[string]npr.Right) { r := m["parkd-2"]; r.AreaID = "OTHER"; m["parkd-2"] = r }, "codes parkd/363/OTHER/BEZOEKP"},
		{"another start", func(m map[string]npr.Right) {
			r := m["parkd-2"]
			r.StartAt = r.StartAt.Add(-time.Minute)
			m["parkd-2"] = r
		}, "start 2026-11-30T12:59:00Z"},
		{"a right of no session", func(m map[string]npr.Right) {
			m["parkd-9"] = npr.Right{RightID: "parkd-9", Version: 1, Status: "active"}
		}, "holds right parkd-9"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := held()
			c.plant(m)
			ch := rightsVerdict("parkd", sessions, m)
			if ch.OK || len(ch.Violations) != 1 || !strings.Contains(ch.Violations[0], c.want) {
				t.Fatalf("%+v; want one violation saying %q", ch, c.want)
			}
			if strings.Contains(strings.Join(ch.Violations, " "), "ZZ99ZZ") {
				t.Errorf("a violation shows a plate: %v", ch.Violations)
			}
		})
	}
	pending := registered(4, domain.StateStopped, 3)
	pending.RightRegisteredVersion = 2
	if ch := acknowledgedVerdict(append(sessions, pending)); ch.OK || len(ch.Violations) != 1 || !strings.Contains(ch.Violations[0], "session 4: right version 3 is pending") {
		t.Fatalf("a right parkd has not seen acknowledged: %+v", ch)
	}
}

func event(id string, seq int64, typ string, session int64) repo.Event {
	s, p := session, int64(7)
	return repo.Event{ID: id, Sequence: &seq, Type: typ, SessionID: &s, PermitID: &p, OccurredAt: v0, Data: json.RawMessage(`{}`)}
}

func receipt(e repo.Event) receiver.Receipt {
	s, p := repo.FormatID(*e.SessionID), repo.FormatID(*e.PermitID)
	return receiver.Receipt{Event: receiver.Event{ID: e.ID, Sequence: *e.Sequence, Type: e.Type, OccurredAt: e.OccurredAt,
		SessionID: &s, PermitID: &p, Data: e.Data}, FirstAt: v0.Add(time.Second), Count: 1}
}

// Every numbered event must have reached the receiver, and the receiver must
// have nothing parkd does not have: a missing event, an unnumbered one, an
// event the database does not have, one received as another sequence, a
// changed duplicate and a refused signature each fail.
func TestDeliveryVerdicts(t *testing.T) {
	events := []repo.Event{event("e1", 1, "session.started", 10), event("e2", 2, "session.stopped", 10), event("e3", 3, "permit.topped_up", 0)}
	all := func() receiver.Snapshot {
		s := receiver.Snapshot{Events: map[string]receiver.Receipt{}}
		for _, e := range events {
			s.Events[e.ID] = receipt(e)
		}
		return s
	}
	if ch := deliveredVerdict(events, 0, all().Events); !ch.OK {
		t.Fatalf("every event received: %+v", ch)
	}
	if ch := nothingElseVerdict(events, all()); !ch.OK {
		t.Fatalf("nothing else received: %+v", ch)
	}

	missing := all()
	delete(missing.Events, "e2")
	if ch := deliveredVerdict(events, 0, missing.Events); ch.OK || len(ch.Violations) != 1 || !strings.Contains(ch.Violations[0], "event e2 (sequence 2, session.stopped, session 10) never reached") {
		t.Fatalf("e2 never received: %+v", ch)
	}
	if ch := deliveredVerdict(events, 2, all().Events); ch.OK || !strings.Contains(ch.Violations[0], "2 events were never numbered") {
		t.Fatalf("unnumbered events: %+v", ch)
	}

	for _, c := range []struct {
		name  string
		plant func(*receiver.Snapshot)
		want  string
	}{
		{"an event parkd does not have", func(s *receiver.Snapshot) { s.Events["e9"] = receipt(event("e9", 9, "session.started", 11)) }, "event e9 (sequence 9, session.started) was received, and parkd has no such"},
		{"another sequence", func(s *receiver.Snapshot) { r := s.Events["e1"]; r.Sequence = 5; s.Events["e1"] = r }, "event e1 was received as sequence 5"},
		{"another session", func(s *receiver.Snapshot) { r := s.Events["e1"]; x := "11"; r.SessionID = &x; s.Events["e1"] = r }, "(session 11, permit 7); parkd has sequence 1 session.started (session 10"},
		{"a changed duplicate", func(s *receiver.Snapshot) { s.Changed = []string{"event e1: first received as sequence 1 …"} }, "event e1: first received"},
		{"a refused signature", func(s *receiver.Snapshot) { s.Refused = []string{`event "e2": no matching signature found`} }, "delivery refused by the receiver"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := all()
			c.plant(&s)
			ch := nothingElseVerdict(events, s)
			if ch.OK || len(ch.Violations) != 1 || !strings.Contains(ch.Violations[0], c.want) {
				t.Fatalf("%+v; want one violation saying %q", ch, c.want)
			}
		})
	}
}

// The feed must give every numbered event once, in strictly increasing
// sequence, as parkd has it.
func TestFeedVerdict(t *testing.T) {
	events := []repo.Event{event("e1", 1, "session.started", 10), event("e2", 2, "session.stopped", 10), event("e3", 3, "permit.topped_up", 0)}
	item := func(e repo.Event) receiver.Event { return receipt(e).Event }
	good := []receiver.Event{item(events[0]), item(events[1]), item(events[2])}
	if ch := feedVerdict(events, good, 1); !ch.OK {
		t.Fatalf("the feed as parkd: %+v", ch)
	}
	other := item(event("e9", 4, "session.started", 11))
	changed := item(events[2])
	changed.Type = "permit.ended"
	for _, c := range []struct {
		name string
		feed []receiver.Event
		want []string
	}{
		{"an event missing", []receiver.Event{good[0], good[2]}, []string{"event e2 (sequence 2, session.stopped) missing from the feed"}},
		{"an event twice", []receiver.Event{good[0], good[1], good[1], good[2]}, []string{"sequence 2 after 2", "event e2 (sequence 2) in the feed more than once"}},
		{"out of order", []receiver.Event{good[1], good[0], good[2]}, []string{"item 1: sequence 1 after 2"}},
		{"an event parkd does not have", append(good[:3:3], other), []string{"event e9 (sequence 4, session.started) in the feed, not among"}},
		{"another type", []receiver.Event{good[0], good[1], changed}, []string{"event e3 in the feed as sequence 3 permit.ended; parkd has sequence 3 permit.topped_up"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := feedVerdict(events, c.feed, 1)
			if ch.OK || len(ch.Violations) != len(c.want) {
				t.Fatalf("%+v; want %d violations: %q", ch, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(ch.Violations[i], w) {
					t.Errorf("violation %d: %q; want it to say %q", i, ch.Violations[i], w)
				}
			}
		})
	}
}
