package intake_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

type outcome struct {
	RequestID string `json:"request_id"`
	Status    string `json:"status"`
	Error     *struct{ Code, Message string }
	Result    json.RawMessage `json:"result"`
}

// A request whose task was archived (asynqmon's "Archive", or the state a task
// reaches after its retries) is run again when the client retries it; before,
// the retry found the task ID taken, answered 202, and nothing ever ran it.
func TestArchivedRequestIsRunAgainOnRetry(t *testing.T) {
	e := setup(t, options{})
	r := e.resident(2)
	e.worker.Shutdown() // the intake alone
	const key = "field-arch-1"
	path := "/v1/permits/" + r.permit + "/sessions"
	body := map[string]any{"plate": "AR-12-CH"}
	e.mustDo("POST", path+"?wait=0", r.token, body, http.StatusAccepted, nil, "Idempotency-Key", key)
	insp := asynq.NewInspectorFromRedisClient(e.rdb)
	if err := insp.ArchiveTask(jobs.QueueCritical, jobs.RequestTaskID(key)); err != nil {
		t.Fatal(err)
	}
	e.start()
	time.Sleep(300 * time.Millisecond) // a worker looks: nothing runs an archived task
	var out outcome
	e.mustDo("GET", "/v1/requests/"+key, r.token, nil, http.StatusOK, &out)
	if out.Status != repo.RequestPending {
		t.Fatalf("before the retry: %+v", out)
	}
	var s jobs.Session
	e.mustDo("POST", path+"?wait=10s", r.token, body, http.StatusCreated, &s, "Idempotency-Key", key)
	if s.Plate != "AR12CH" {
		t.Fatalf("session %+v", s)
	}
	e.mustDo("GET", "/v1/requests/"+key, r.token, nil, http.StatusOK, &out)
	if out.Status != repo.RequestApplied {
		t.Fatalf("after the retry: %+v", out)
	}
}

// An Idempotency-Key equal to a live auto-stop's task ID is a request like any
// other: applied, and the auto-stop is still there. Before, asynq's "task ID
// already exists" was taken for "already queued": 202, never applied.
func TestIdempotencyKeyOfAnAutoStopIsApplied(t *testing.T) {
	// Its auto-stop in Redis from the start, whenever its end.
	e := setup(t, options{scheduleHorizon: 48 * time.Hour})
	a, b := e.resident(5), e.resident(5)
	s := e.startSession(a, "AU-70-ST", nil)
	key := jobs.AutoStopTaskID(s.ID, s.PlannedEndAt) // autostop:{session}:{unix}
	var got jobs.Session
	e.mustDo("POST", "/v1/permits/"+b.permit+"/sessions?wait=5s", b.token, map[string]any{"plate": "KE-45-YY"},
		http.StatusCreated, &got, "Idempotency-Key", key)
	if got.Plate != "KE45YY" {
		t.Fatalf("session %+v", got)
	}
	info, err := asynq.NewInspectorFromRedisClient(e.rdb).GetTaskInfo(jobs.QueueCritical, key)
	if err != nil || info.Type != jobs.TypeSessionAutoStop || info.State != asynq.TaskStateScheduled {
		t.Fatalf("the auto-stop: %v %v", info, err)
	}
	// A stop under that key too: applied, and the auto-stop of the session it
	// stops is the one forgotten, not a request's task.
	e.mustDo("POST", "/v1/sessions/"+got.ID+"/stop?wait=5s", b.token, nil, http.StatusOK, nil,
		"Idempotency-Key", jobs.AutoStopTaskID(got.ID, got.PlannedEndAt))
}
