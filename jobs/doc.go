// Package jobs is parkd's task catalogue: the asynq task type names, their JSON
// payloads, and constructors that set each task's queue, ID, timeout and retry
// policy. Upstream Go apps import it to enqueue requests directly:
//
//	task, err := jobs.NewSessionStart(jobs.SessionStart{
//		RequestID: "app-42:start:7", PermitID: "17", Plate: "AB-12-CD",
//	})
//	if err != nil { ... }
//	_, err = jobs.Submit(ctx, client, inspector, task)
//
// A request's task ID is its request ID in a namespace of its own
// (RequestTaskID: "request:app-42:start:7"), so that no request ID can collide
// with a task parkd makes itself. Submit, not a bare client.Enqueue, is how to
// send one: a task ID already taken may belong to an archived task, which
// nothing runs again unless someone does, and Submit does.
//
// The outcome of every request lands in Postgres, readable at
// GET /v1/requests/{request_id} as an Outcome, whose Result is a Session or a
// Permit and whose Error a Rejection: the answers (answers.go) are the types
// the HTTP API answers with, declared here so that an upstream app reads them
// with the same package it enqueues with.
package jobs
