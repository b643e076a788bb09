package domain

import "time"

// The instants parkd accepts (DOMAIN.md "Money and time, precisely"): the years
// 2000–2199, counted in UTC, as every instant is stored. Outside them an instant
// is a mistake (a zero value, a year typed wrong), and some of them cannot even
// be stored or written as RFC 3339.
var (
	firstInstant = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)
	pastInstants = time.Date(2200, time.January, 1, 0, 0, 0, 0, time.UTC)
)

// InstantRange names the accepted years in messages.
const InstantRange = "the years 2000-2199 (UTC)"

// InstantInRange reports whether t lies in the years parkd accepts.
func InstantInRange(t time.Time) bool {
	return !t.Before(firstInstant) && t.Before(pastInstants)
}

// CheckInstant rejects an instant a request names in field when it lies outside
// the years parkd accepts: a bad_request, the request's form being at fault.
func CheckInstant(field string, t time.Time) error {
	if InstantInRange(t) {
		return nil
	}
	return Reject(CodeBadRequest, "%s %s is outside %s", field, t.UTC().Format(time.RFC3339Nano), InstantRange)
}
