package repo

import "time"

// RightsQuery is the statement RightsLookup sends, for the test that EXPLAINs it.
func RightsQuery(plate, code string, at time.Time) (string, []any) {
	return rightsQuery(plate, code, at)
}

// ErasePlatesQuery is the statement one batch of ErasePlates sends, for the
// test that EXPLAINs it.
func ErasePlatesQuery(cutoff time.Time, batch int) (string, []any) {
	where, args := dueWhere(cutoff)
	return erasePlatesQuery(batch, where, args...)
}

// Waiting is how many request IDs have waiters (tests check cleanup).
func (l *Listener) Waiting() int { return l.waiting() }
