// Package jobs is parkd's task catalogue: the asynq task type names, their JSON
// payloads, and constructors that set each task's queue, ID, timeout and retry
// policy. Upstream Go apps import it to enqueue requests directly:
//
//	task, err := jobs.NewSessionStart(jobs.SessionStart{
//		RequestID: "app-42:start:7", PermitID: "17", Plate: "AB-12-CD",
//	})
//	if err != nil { ... }
//	_, err = client.Enqueue(task) // asynq.ErrTaskIDConflict: already enqueued
//
// The outcome of every request lands in Postgres, readable at
// GET /v1/requests/{request_id}.
package jobs
