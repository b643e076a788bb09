// Package chaos is `parkdlab chaos`: parkd's split topology on a private
// Postgres and Redis (see package faults) under a closed-loop load that
// behaves as a correct upstream app must (every write under an
// Idempotency-Key, sent again until definitively answered). Run goes through
// named phases: a directory, the servers, parkd, the municipality, the load
// with each fault injected in turn (and parkd's recovery and audit after
// each), then the verdict that holds the database to every answer the client
// was given, parkd's stop, and the report.
package chaos
