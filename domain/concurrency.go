package domain

import (
	"slices"
	"time"
)

// Interval is a session's span of time, [Start, End): for an open session its
// start and planned end, for a stopped one its start and actual end.
type Interval struct {
	Start time.Time
	End   time.Time
}

// CheckConcurrentSessions applies the zone's max_concurrent_sessions (DOMAIN.md
// "Visitors at once") to a session that is to run over iv: at no instant may
// more than that many of the permit's sessions run at once, this one included.
// others are the permit's other sessions (never the one being changed itself):
// open ones with their planned end, stopped ones with their actual end;
// cancelled ones never ran and are left out. Any superset will do: sessions
// that do not overlap iv are ignored. Without a cap nothing is checked.
//
// The cap counts sessions at one instant, not sessions that touch iv: a visitor
// from 10:00 to 11:00 and another from 11:00 to 12:00 are one at a time, so a
// third from 10:00 to 12:00 makes two at once, not three.
func CheckConcurrentSessions(z *Zone, iv Interval, others []Interval) error {
	if z.MaxConcurrentSessions < 1 {
		return nil
	}
	if n := 1 + maxOverlapping(iv, others); n > z.MaxConcurrentSessions {
		return Reject(CodeTooManySessions, "%d of the permit's sessions would run at once between %s and %s; zone %s allows %d",
			n, rfc(iv.Start), rfc(iv.End), z.Code, z.MaxConcurrentSessions)
	}
	return nil
}

// maxOverlapping is the largest number of others that run at one instant
// inside iv. Intervals are half open: one ending where another starts does not
// overlap it.
func maxOverlapping(iv Interval, others []Interval) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, o := range others {
		if !iv.Overlaps(o) {
			continue
		}
		edges = append(edges, edge{latest(o.Start, iv.Start), +1}, edge{o.End, -1})
	}
	// At one instant ends come before starts: [a, b) and [b, c) never meet.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// Overlaps reports whether the half-open intervals [a.Start, a.End) and
// [b.Start, b.End) share an instant.
func (a Interval) Overlaps(b Interval) bool {
	return a.Start.Before(b.End) && b.Start.Before(a.End)
}

// Window is an interval every session PlanSession could plan for req lies in:
// from its start (start_at, or the receipt) to the zone's maximum duration
// after it. The permit's sessions overlapping it are a superset of those the
// concurrency rule needs (StartRequest.PermitSessions).
func (req StartRequest) Window(z *Zone) Interval {
	start := req.ReceivedAt
	if req.StartAt != nil {
		start = *req.StartAt
	}
	return Interval{Start: start, End: z.maxEnd(start)}
}

// Window is the interval every end PlanChange could give s lies in: from its
// start to the latest end a change may name.
func (s GrantedSession) Window(z *Zone) Interval {
	return Interval{Start: s.StartAt, End: latest(z.maxEnd(s.StartAt), s.PlannedEndAt)}
}
