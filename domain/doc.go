// Package domain holds the rules of parkd's rule book (shared/DOMAIN.md) as pure
// functions and values: plates, zones and their local-time regimes, permit years
// and their rollover, session planning, quotes, changes, stopping and settlement
// arithmetic, favourites, when a session's ending notice is due, and the
// enforcement answer.
//
// Nothing here touches a database, Redis, HTTP or the clock: every function that
// depends on "now" takes it as an argument, so each rule is testable on the awkward
// days (DST changes, invalid weekdays, midnight) with plain table tests.
package domain
