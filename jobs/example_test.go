package jobs_test

import (
	"fmt"
	"log"
	"time"

	"github.com/parkd/parkd/jobs"
)

// An upstream app starts a visitor session by enqueueing session:start. The
// request ID is the app's own: enqueueing it twice has one effect, and the
// outcome is readable at GET /v1/requests/{request_id}.
func ExampleNewSessionStart() {
	end := time.Date(2026, 11, 24, 15, 0, 0, 0, time.UTC)
	task, err := jobs.NewSessionStart(jobs.SessionStart{
		RequestID: "portal-7731:start",
		PermitID:  "17",
		Plate:     "ab-12-cd",
		EndAt:     &end, // nil: the longest session the zone allows
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Type(), jobs.RequestTaskID("portal-7731:start"))

	// With a real Redis: Submit enqueues it, or, when a task holds its ID
	// already, looks at that task (and runs it again if it was archived).
	//
	//	opt := asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}
	//	client, inspector := asynq.NewClient(opt), asynq.NewInspector(opt)
	//	defer client.Close()
	//	defer inspector.Close()
	//	if _, err := jobs.Submit(ctx, client, inspector, task); err != nil {
	//		log.Fatal(err) // Redis refused: submitting again is safe
	//	}

	// Output: session:start request:portal-7731:start
}

// A request ID must be 1-64 characters of [A-Za-z0-9_.:-]; the constructor says
// so before anything reaches Redis.
func ExampleNewSessionStop() {
	_, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: "stop me please!", SessionID: "5"})
	fmt.Println(err)

	task, _ := jobs.NewSessionStop(jobs.SessionStop{RequestID: "portal-7731:stop", SessionID: "5"})
	fmt.Println(task.Type())
	// Output:
	// jobs: request_id "stop me please!" must be 1-64 characters of A-Z a-z 0-9 _ . : -
	// session:stop
}

// An upstream app extends a session (the visitor stays longer) and corrects a
// plate typed wrong, in one session:change: either field alone is a change too.
// The rules cut the new end as a start's end is cut (balance, usage cap, an
// invalid day), with a notice in the session the outcome holds.
func ExampleNewSessionChange() {
	end := time.Date(2026, 11, 24, 16, 0, 0, 0, time.UTC)
	plate := "AB-12-CE"
	task, err := jobs.NewSessionChange(jobs.SessionChange{
		RequestID: "portal-7731:change-1",
		SessionID: "5",
		EndAt:     &end,
		Plate:     &plate, // nil: the plate stays
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(task.Type(), jobs.RequestTaskID("portal-7731:change-1"))

	_, err = jobs.NewSessionChange(jobs.SessionChange{RequestID: "change 2", SessionID: "5", EndAt: &end})
	fmt.Println(err)
	// Output:
	// session:change request:portal-7731:change-1
	// jobs: request_id "change 2" must be 1-64 characters of A-Z a-z 0-9 _ . : -
}
