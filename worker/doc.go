// Package worker holds parkd's asynq handlers and background loops: each handler
// turns a task into a domain decision, writes it in one Postgres transaction with
// the permit row locked, records the request's outcome, and hands follow-up tasks
// (auto-stops) to Redis through the transactional outbox.
//
// Where things are: handlers.go (the Handlers and their mux), middleware.go
// (what every task runs through: its logger, no retries of what cannot pass),
// request.go (the idempotent-request frame: claim the request ID, decide,
// record the outcome), outbox.go (the hand-over of follow-up tasks after
// commit), sessions.go, permits.go and rollover.go (the handlers), and the
// repairs that run beside them: reconcile.go (overdue sessions, a Redis that
// lost its data) and relay.go (outbox rows the hand-over missed).
package worker
