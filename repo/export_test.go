package repo

import "time"

// RightsQuery is the statement RightsLookup sends, for the test that EXPLAINs it.
func RightsQuery(plate, code string, at time.Time) (string, []any) {
	return rightsQuery(plate, code, at)
}

// Waiting is how many request IDs have waiters (tests check cleanup).
func (l *Listener) Waiting() int { return l.waiting() }
