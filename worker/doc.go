// Package worker holds parkd's asynq handlers and background loops: each handler
// turns a task into a domain decision, writes it in one Postgres transaction with
// the permit row locked, records the request's outcome, and hands follow-up tasks
// (auto-stops) to Redis through the transactional outbox.
package worker
