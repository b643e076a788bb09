package domain

import "time"

// SessionEndingAt is when the session.ending event of a session is due
// (DOMAIN.md "Events"): the zone's ending_notice_minutes before its planned end,
// counted in real time like every duration (on a DST night the wall clock may
// read more or less than that). It is never before the session's start nor
// before receivedAt, the receipt of the start or change that set this planned
// end: a session shorter than the notice is told it is ending when it begins,
// and a change that leaves less than the notice is told at once, rather than
// never. ok is false when that leaves no instant before the planned end (a
// start 5 minutes back with a minute of balance has ended on receipt): then no
// session.ending is sent, the session.stopped event follows.
//
// After a change the old notice is void: the event is sent only for a session
// still open with the planned end it was computed for.
func SessionEndingAt(z *Zone, start, plannedEnd, receivedAt time.Time) (at time.Time, ok bool) {
	at = plannedEnd.Add(-time.Duration(z.EndingNoticeMinutes) * time.Minute)
	at = latest(latest(at, start), receivedAt)
	return at, at.Before(plannedEnd)
}
