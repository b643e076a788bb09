// Package intake is parkd's HTTP front door: it validates requests, enqueues them
// through package jobs, waits briefly for their outcome, and answers reads and
// enforcement questions straight from Postgres.
package intake
