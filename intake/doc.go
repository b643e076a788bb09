// Package intake is parkd's HTTP front door: it validates requests, enqueues them
// through package jobs, waits briefly for their outcome, and answers reads and
// enforcement questions straight from Postgres.
//
// Server.Handler serves the API of CONTRACT.md (described for machines in
// openapi.yaml, served at /v1/openapi.yaml). Bearer tokens (HS256, MintToken)
// carry the caller's role; writes are registered as pending requests, enqueued
// under their request ID and awaited through a Listener on Postgres
// LISTEN/NOTIFY; every error becomes an answer in one place (writeError).
package intake
