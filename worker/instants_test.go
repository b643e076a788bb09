package worker_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// Instants outside the years 2000-2199 in a task's payload, however it reached
// the queue (an upstream app's own JSON, a year no JSON encoder of Go writes),
// are a recorded bad_request: the handler ends the task (no retry), the request
// is rejected with a message naming the field, and nothing else is written.
func TestOutOfRangeInstantsInTasksAreRejectedAsBadRequests(t *testing.T) {
	e := setup(t)
	pid := e.permit(10)
	var s jobs.Session
	task, _ := e.startTask(pid, "RANGE1", nil, nil)
	e.run(task, e.h.SessionStart, &s)
	before := e.permitRow(pid)

	cases := []struct {
		name, typ string
		payload   map[string]any
		field     string
	}{
		{"start_at in year 1", jobs.TypeSessionStart, map[string]any{"permit_id": pid, "plate": "Y1", "start_at": "0001-01-01T00:00:00Z"}, "start_at"},
		{"start_at 9999-12-31T23:59:59-12:00", jobs.TypeSessionStart, map[string]any{"permit_id": pid, "plate": "Y9", "start_at": "9999-12-31T23:59:59-12:00"}, "start_at"},
		{"end_at in 1999", jobs.TypeSessionStart, map[string]any{"permit_id": pid, "plate": "Y2", "end_at": "1999-12-31T23:59:59Z"}, "end_at"},
		{"end_at in 2200", jobs.TypeSessionStart, map[string]any{"permit_id": pid, "plate": "Y3", "end_at": "2200-01-01T00:00:00Z"}, "end_at"},
		{"end_at in year 10000 (unreadable)", jobs.TypeSessionStart, map[string]any{"permit_id": pid, "plate": "Y4", "end_at": "10000-01-01T00:00:00Z"}, "end_at"},
		{"received_at in 1970", jobs.TypeSessionStart, map[string]any{"permit_id": pid, "plate": "Y5", "received_at": "1970-01-01T00:00:00Z"}, "received_at"},
		{"stop at in year 1", jobs.TypeSessionStop, map[string]any{"session_id": s.ID, "at": "0001-01-01T00:00:00Z"}, "at"},
		{"permit end at in 2200", jobs.TypePermitEnd, map[string]any{"permit_id": pid, "reason": "moved", "at": "2200-01-01T00:00:00Z"}, "at"},
		{"issue received in 1500", jobs.TypePermitIssue, map[string]any{"resident_id": "R", "address_id": "A", "received_at": "1500-06-01T00:00:00Z"}, "received_at"},
		{"top-up received in 2300", jobs.TypePermitTopup, map[string]any{"permit_id": pid, "hours": 1, "payment_ref": "p", "received_at": "2300-06-01T00:00:00Z"}, "received_at"},
		// Not instants, the same kind: what cannot be stored is refused before
		// any rule, naming the field, not left to the database (request_failed).
		{"NUL in a payment reference", jobs.TypePermitTopup, map[string]any{"permit_id": pid, "hours": 1, "payment_ref": "a\x00b"}, "payment_ref"},
		{"NUL in a resident ID", jobs.TypePermitIssue, map[string]any{"resident_id": "R\x00X", "address_id": "A"}, "resident_id"},
		{"NUL in an end reason", jobs.TypePermitEnd, map[string]any{"permit_id": pid, "reason": "x\x00y"}, "reason"},
	}
	handlers := map[string]func(*asynq.Task) error{
		jobs.TypeSessionStart: func(t *asynq.Task) error { return e.h.SessionStart(e.ctx, t) },
		jobs.TypeSessionStop:  func(t *asynq.Task) error { return e.h.SessionStop(e.ctx, t) },
		jobs.TypePermitEnd:    func(t *asynq.Task) error { return e.h.PermitEnd(e.ctx, t) },
		jobs.TypePermitIssue:  func(t *asynq.Task) error { return e.h.PermitIssue(e.ctx, t) },
		jobs.TypePermitTopup:  func(t *asynq.Task) error { return e.h.PermitTopup(e.ctx, t) },
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := rid("range")
			c.payload["request_id"] = id
			b, err := json.Marshal(c.payload)
			if err != nil {
				t.Fatal(err)
			}
			if err := handlers[c.typ](asynq.NewTask(c.typ, b)); err != nil {
				t.Fatalf("handler: %v, want the rejection recorded and the task done", err)
			}
			r := e.outcome(id, nil)
			var ro jobs.Rejection
			if r.Status != repo.RequestRejected || json.Unmarshal(r.Error, &ro) != nil || ro.Code != string(domain.CodeBadRequest) {
				t.Fatalf("outcome %s %s, want rejected %s", r.Status, r.Error, domain.CodeBadRequest)
			}
			if !strings.Contains(ro.Message, c.field) {
				t.Fatalf("message %q does not name %s", ro.Message, c.field)
			}
		})
	}
	after := e.permitRow(pid)
	if after.BalanceMinutes != before.BalanceMinutes || after.ReservedMinutes != before.ReservedMinutes || after.Status != domain.PermitActive {
		t.Fatalf("permit changed by rejected requests: %+v, was %+v", after, before)
	}
	if st := e.session(s.ID); st.State != domain.StateOpen {
		t.Fatalf("session %s is %s after a rejected stop", s.ID, st.State)
	}

	// Through the real queue: the worker records the rejection once and the
	// task is not retried.
	e.start()
	id := rid("range-queued")
	b, _ := json.Marshal(map[string]any{"request_id": id, "permit_id": pid, "plate": "Q1", "start_at": "0001-01-01T00:00:00Z"})
	e.enqueue(asynq.NewTask(jobs.TypeSessionStart, b, asynq.Queue(jobs.QueueCritical), asynq.TaskID(id), asynq.Retention(time.Hour)))
	if r := e.await(id, nil); r.Status != repo.RequestRejected {
		t.Fatalf("queued: %s %s", r.Status, r.Error)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		info, err := e.inspector.GetTaskInfo(jobs.QueueCritical, id)
		if err == nil && info.State == asynq.TaskStateCompleted {
			break
		}
		if err == nil && info.Retried > 0 {
			t.Fatalf("task retried %d times: %s", info.Retried, info.LastErr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("task not completed after 5s: %+v %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.checkInvariants()
}
