package chaos

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/tools/load"
	"github.com/parkd/parkd/tools/npr"
	"github.com/parkd/parkd/tools/receiver"
)

// The verdict on what parkd told others (issue 13's proof): the register
// emulator's final state against parkd's sessions, the webhook receiver's
// events and the feed against parkd's events table. Pure functions of what
// was read, so that each can be shown to fail on planted data.

// rightsVerdict holds the register to parkd: every registered session's right
// stands there as the session is now (plate, country, codes, start, end,
// status, at the session's newest version), and the register holds nothing
// else.
func rightsVerdict(issuer string, sessions []repo.Session, rights map[string]npr.Right) Check {
	var bad []string
	known := map[string]bool{}
	for _, s := range sessions {
		want := load.RightOf(issuer, s)
		known[want.RightID] = true
		got, ok := rights[want.RightID]
		if !ok {
			bad = append(bad, fmt.Sprintf("session %d: the register holds no right %s (parkd's version %d)", s.ID, want.RightID, want.Version))
			continue
		}
		if diff := rightDiff(want, got); diff != "" {
			bad = append(bad, fmt.Sprintf("session %d, right %s: %s", s.ID, want.RightID, diff))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(rights)) {
		if !known[id] {
			bad = append(bad, fmt.Sprintf("the register holds right %s (version %d, %s), of no registered session of parkd's", id, rights[id].Version, rights[id].Status))
		}
	}
	return passIf("the register's final state of every right equals parkd's session (plate, country, codes, start, end, status, newest version), and it holds no other",
		fmt.Sprintf("%d registered sessions, %d rights in the register", len(sessions), len(rights)), bad)
}

// rightDiff says how the right a register holds differs from the one parkd's
// session makes, or "" when it does not. Plates are never printed: only that
// they differ.
func rightDiff(want, got npr.Right) string {
	var d []string
	if got.Version != want.Version {
		d = append(d, fmt.Sprintf("version %d, parkd's newest is %d", got.Version, want.Version))
	}
	if got.Plate != want.Plate {
		d = append(d, "another plate")
	}
	if got.Country != want.Country {
		d = append(d, fmt.Sprintf("country %s, parkd has %s", got.Country, want.Country))
	}
	if got.Issuer != want.Issuer || got.AreaManagerID != want.AreaManagerID || got.AreaID != want.AreaID || got.UsageID != want.UsageID {
		d = append(d, fmt.Sprintf("codes %s/%s/%s/%s, parkd has %s/%s/%s/%s", got.Issuer, got.AreaManagerID, got.AreaID, got.UsageID,
			want.Issuer, want.AreaManagerID, want.AreaID, want.UsageID))
	}
	if !got.StartAt.Equal(want.StartAt) {
		d = append(d, fmt.Sprintf("start %s, parkd has %s", got.StartAt.UTC().Format(time.RFC3339Nano), want.StartAt.Format(time.RFC3339Nano)))
	}
	if !got.EndAt.Equal(want.EndAt) {
		d = append(d, fmt.Sprintf("end %s, parkd has %s", got.EndAt.UTC().Format(time.RFC3339Nano), want.EndAt.Format(time.RFC3339Nano)))
	}
	if got.Status != want.Status {
		d = append(d, fmt.Sprintf("status %s, parkd has %s", got.Status, want.Status))
	}
	return strings.Join(d, "; ")
}

// acknowledgedVerdict: parkd's own records say the registrar took every
// right's newest version (registration.status registered), none refused.
func acknowledgedVerdict(sessions []repo.Session) Check {
	var bad []string
	for _, s := range sessions {
		if v := s.RegistrationView(); v.Status != jobs.RegistrationRegistered {
			bad = append(bad, fmt.Sprintf("session %d: right version %d is %s (acknowledged %d, refused %d)", s.ID, s.RightVersion, v.Status,
				s.RightRegisteredVersion, s.RightRejectedVersion))
		}
	}
	return passIf("parkd records every right's newest version as acknowledged by the register", fmt.Sprintf("%d registered sessions", len(sessions)), bad)
}

// deliveredVerdict: every event parkd numbered reached the receiver, with a
// valid signature (the receiver records only those), and none stayed
// unnumbered.
func deliveredVerdict(events []repo.Event, unnumbered int64, got map[string]receiver.Receipt) Check {
	var bad []string
	if unnumbered > 0 {
		bad = append(bad, fmt.Sprintf("%d events were never numbered, so never delivered", unnumbered))
	}
	for _, e := range events {
		if _, ok := got[e.ID]; !ok {
			bad = append(bad, fmt.Sprintf("event %s (sequence %d, %s%s) never reached the receiver", e.ID, seqOf(e), e.Type, sessionOf(e)))
		}
	}
	return passIf("every event in parkd's events table reached the receiver at least once, with a valid Standard Webhooks signature",
		fmt.Sprintf("%d events numbered", len(events)), bad)
}

// nothingElseVerdict: the receiver got nothing parkd does not have (no event
// of a change that rolled back): every event received exists in parkd's
// events table with the same sequence, type, session and permit; every
// duplicate was the same event; and no delivery failed its signature.
func nothingElseVerdict(events []repo.Event, snap receiver.Snapshot) Check {
	byID := make(map[string]repo.Event, len(events))
	for _, e := range events {
		byID[e.ID] = e
	}
	var bad []string
	for _, id := range slices.Sorted(maps.Keys(snap.Events)) {
		r := snap.Events[id]
		e, ok := byID[id]
		if !ok {
			bad = append(bad, fmt.Sprintf("event %s (sequence %d, %s) was received, and parkd has no such numbered event", id, r.Sequence, r.Type))
			continue
		}
		if r.Sequence != seqOf(e) || r.Type != e.Type || !sameID(r.SessionID, e.SessionID) || !sameID(r.PermitID, e.PermitID) {
			bad = append(bad, fmt.Sprintf("event %s was received as sequence %d %s (session %s, permit %s); parkd has sequence %d %s (session %s, permit %s)",
				id, r.Sequence, r.Type, deref(r.SessionID), deref(r.PermitID), seqOf(e), e.Type, idText(e.SessionID), idText(e.PermitID)))
		}
	}
	bad = append(bad, snap.Changed...)
	for _, r := range snap.Refused {
		bad = append(bad, "delivery refused by the receiver: "+r)
	}
	return passIf("the receiver got nothing parkd does not have: every event received is in parkd's events table as received, every delivery signed",
		fmt.Sprintf("%d distinct events received, %d deliveries accepted, %d duplicates", len(snap.Events), snap.Stats.Accepted, snap.Stats.Duplicates), bad)
}

// feedVerdict: GET /v1/events paged from after=0 gave every numbered event
// exactly once, in strictly increasing sequence, each as parkd has it.
func feedVerdict(events []repo.Event, feed []receiver.Event, pages int) Check {
	byID := make(map[string]repo.Event, len(events))
	for _, e := range events {
		byID[e.ID] = e
	}
	var bad []string
	seen := map[string]bool{}
	var last int64
	for i, f := range feed {
		if i > 0 && f.Sequence <= last {
			bad = append(bad, fmt.Sprintf("item %d: sequence %d after %d (not strictly increasing)", i, f.Sequence, last))
		}
		last = f.Sequence
		if seen[f.ID] {
			bad = append(bad, fmt.Sprintf("event %s (sequence %d) in the feed more than once", f.ID, f.Sequence))
		}
		seen[f.ID] = true
		e, ok := byID[f.ID]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("event %s (sequence %d, %s) in the feed, not among parkd's numbered events", f.ID, f.Sequence, f.Type))
		case f.Sequence != seqOf(e) || f.Type != e.Type:
			bad = append(bad, fmt.Sprintf("event %s in the feed as sequence %d %s; parkd has sequence %d %s", f.ID, f.Sequence, f.Type, seqOf(e), e.Type))
		}
	}
	for _, e := range events {
		if !seen[e.ID] {
			bad = append(bad, fmt.Sprintf("event %s (sequence %d, %s) missing from the feed", e.ID, seqOf(e), e.Type))
		}
	}
	return passIf("GET /v1/events paged from after=0 returns every event exactly once, in strictly increasing sequence",
		fmt.Sprintf("%d events in %d pages of up to %d", len(feed), pages, load.FeedPage), bad)
}

func seqOf(e repo.Event) int64 {
	if e.Sequence == nil {
		return 0
	}
	return *e.Sequence
}

func sessionOf(e repo.Event) string {
	if e.SessionID == nil {
		return ""
	}
	return fmt.Sprintf(", session %d", *e.SessionID)
}

func sameID(s *string, id *int64) bool {
	if s == nil || id == nil {
		return s == nil && id == nil
	}
	return *s == repo.FormatID(*id)
}

func deref(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}

func idText(id *int64) string {
	if id == nil {
		return "-"
	}
	return repo.FormatID(*id)
}
