// Package repo is parkd's only door to Postgres: the schema (embedded SQL
// migrations), the bun models, and the statements that write each domain decision
// inside the caller's transaction. Nothing outside this package speaks SQL.
//
// Each file holds a table or a concept: a row type and its statements
// (permits.go, sessions.go, ledger.go, zones.go...), a request's whole life
// (requests.go) and its announcement to waiting intakes (notify.go: the NOTIFY
// and the LISTEN client), how a transaction locks (locks.go: Tx and its
// LockPolicy) and how several share one (coalesce.go). The answers clients read
// are package jobs' types; the rows fill them (Session.View, Permit.View,
// LedgerEntry.View), so that the import runs one way: repo, then jobs, then
// domain.
package repo
