package jobs_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo/repotest"
)

func queues(t *testing.T) (*asynq.Client, *asynq.Inspector) {
	t.Helper()
	_, idx := repotest.NewRedis(t)
	opt := asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx}
	c, in := asynq.NewClient(opt), asynq.NewInspector(opt)
	t.Cleanup(func() { c.Close(); in.Close() })
	return c, in
}

// Every request task is queued under "request:" + its request ID, in its
// type's queue; no task parkd makes itself has an ID in that namespace, so no
// request ID, whatever the caller picks, can collide with one.
func TestRequestTaskIDsHaveANamespaceOfTheirOwn(t *testing.T) {
	c, _ := queues(t)
	const id = "autostop:7:1790000000" // a caller may pick what looks like one of parkd's own
	build := map[string]func() (*asynq.Task, error){
		jobs.QueueCritical + " start": func() (*asynq.Task, error) {
			return jobs.NewSessionStart(jobs.SessionStart{RequestID: id, PermitID: "1", Plate: "AB12CD"})
		},
		jobs.QueueCritical + " stop": func() (*asynq.Task, error) {
			return jobs.NewSessionStop(jobs.SessionStop{RequestID: id + "s", SessionID: "1"})
		},
		jobs.QueueCritical + " change": func() (*asynq.Task, error) {
			return jobs.NewSessionChange(jobs.SessionChange{RequestID: id + "c", SessionID: "1", Plate: new(string)})
		},
		jobs.QueueDefault + " issue": func() (*asynq.Task, error) {
			return jobs.NewPermitIssue(jobs.PermitIssue{RequestID: id, ResidentID: "R", AddressID: "A"})
		},
		jobs.QueueDefault + " topup": func() (*asynq.Task, error) {
			return jobs.NewPermitTopup(jobs.PermitTopup{RequestID: id + "t", PermitID: "1", Hours: 1, PaymentRef: "P"})
		},
		jobs.QueueDefault + " end": func() (*asynq.Task, error) {
			return jobs.NewPermitEnd(jobs.PermitEnd{RequestID: id + "e", PermitID: "1", Reason: "moved"})
		},
	}
	for name, b := range build {
		task, err := b()
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.Enqueue(task)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var p struct {
			RequestID string `json:"request_id"`
		}
		_ = json.Unmarshal(task.Payload(), &p)
		if info.ID != jobs.RequestTaskID(p.RequestID) || !strings.HasPrefix(info.ID, jobs.RequestTaskPrefix) {
			t.Errorf("%s: task ID %q, want %q", name, info.ID, jobs.RequestTaskPrefix+p.RequestID)
		}
		if q, _ := jobs.RequestQueue(task.Type()); info.Queue != q || !strings.HasPrefix(name, q) {
			t.Errorf("%s: queue %s, RequestQueue says %s", name, info.Queue, q)
		}
	}
	now := time.Now()
	for _, task := range []*asynq.Task{jobs.NewSessionAutoStop("7", now.Add(time.Hour)), jobs.NewPermitRollover(now), jobs.NewSessionReconcile()} {
		info, err := c.Enqueue(task)
		if err != nil {
			t.Fatalf("%s: %v", task.Type(), err)
		}
		if strings.HasPrefix(info.ID, jobs.RequestTaskPrefix) {
			t.Errorf("%s: parkd's own task has the ID %q, in the requests' namespace", task.Type(), info.ID)
		}
	}
}

// A request whose ID is an auto-stop's task ID is queued beside the auto-stop,
// not answered "already queued" (the old intake answered 202 and never
// applied it).
func TestSubmitBesideAnAutoStopOfTheSameName(t *testing.T) {
	c, in := queues(t)
	end := time.Now().Add(time.Hour)
	if _, err := c.Enqueue(jobs.NewSessionAutoStop("9", end)); err != nil {
		t.Fatal(err)
	}
	id := jobs.AutoStopTaskID("9", end)
	task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: id, PermitID: "1", Plate: "AB12CD"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := jobs.Submit(context.Background(), c, in, task)
	if err != nil || got != jobs.Enqueued {
		t.Fatalf("Submit = %v, %v; want enqueued", got, err)
	}
	for _, tid := range []string{id, jobs.RequestTaskID(id)} {
		if _, err := in.GetTaskInfo(jobs.QueueCritical, tid); err != nil {
			t.Errorf("task %s: %v", tid, err)
		}
	}
}

// A task ID already taken is looked at: a waiting or retrying task is left to
// finish, an archived one is run again, one that is gone is queued anew.
func TestSubmitLooksAtTheTaskThatHoldsTheID(t *testing.T) {
	c, in := queues(t)
	ctx := context.Background()
	task := func(id string) *asynq.Task {
		t.Helper()
		tk, err := jobs.NewPermitTopup(jobs.PermitTopup{RequestID: id, PermitID: "1", Hours: 1, PaymentRef: "P-" + id})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	state := func(id string) asynq.TaskState {
		t.Helper()
		info, err := in.GetTaskInfo(jobs.QueueDefault, jobs.RequestTaskID(id))
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		return info.State
	}
	submit := func(id string, want jobs.Submitted) {
		t.Helper()
		got, err := jobs.Submit(ctx, c, in, task(id))
		if err != nil || got != want {
			t.Fatalf("%s: Submit = %v, %v; want %v", id, got, err, want)
		}
	}

	submit("a", jobs.Enqueued)
	submit("a", jobs.Queued) // pending: its outcome is coming
	if st := state("a"); st != asynq.TaskStatePending {
		t.Fatalf("a: %v, want pending", st)
	}

	submit("b", jobs.Enqueued)
	if err := in.ArchiveTask(jobs.QueueDefault, jobs.RequestTaskID("b")); err != nil {
		t.Fatal(err)
	}
	submit("b", jobs.Rerun)
	if st := state("b"); st != asynq.TaskStatePending {
		t.Fatalf("b after Submit: %v, want pending (run again)", st)
	}

	// A scheduled task (how a retry waits) is left alone.
	if _, err := c.Enqueue(task("c"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	submit("c", jobs.Queued)
	if st := state("c"); st != asynq.TaskStateScheduled {
		t.Fatalf("c: %v, want still scheduled", st)
	}

	submit("d", jobs.Enqueued)
	if err := in.DeleteTask(jobs.QueueDefault, jobs.RequestTaskID("d")); err != nil {
		t.Fatal(err)
	}
	submit("d", jobs.Enqueued)

	if _, err := jobs.Submit(ctx, c, in, jobs.NewSessionReconcile()); err == nil {
		t.Fatal("Submit took a task that is no request")
	}
}

// DecodeRequest reads every request type's payload as the request it is, and
// refuses a type that is no request and a payload that cannot be read.
func TestDecodeRequest(t *testing.T) {
	for _, c := range []struct {
		typ, payload string
		wantID       string
		wantErr      bool
	}{
		{jobs.TypeSessionStart, `{"request_id":"a","permit_id":"1","plate":"AB12CD"}`, "a", false},
		{jobs.TypeSessionStop, `{"request_id":"b","session_id":"2"}`, "b", false},
		{jobs.TypeSessionChange, `{"request_id":"c","session_id":"2"}`, "c", false},
		{jobs.TypePermitIssue, `{"request_id":"d"}`, "d", false},
		{jobs.TypePermitTopup, `{"request_id":"e","permit_id":"1"}`, "e", false},
		{jobs.TypePermitEnd, `{"request_id":"f","permit_id":"1"}`, "f", false},
		{jobs.TypeSessionAutoStop, `{"session_id":"2"}`, "", true},
		{jobs.TypeSessionStart, `{"request_id":`, "", true},
	} {
		r, err := jobs.DecodeRequest(c.typ, []byte(c.payload))
		if (err != nil) != c.wantErr || (err == nil && r.ID() != c.wantID) {
			t.Errorf("%s %s: %v %v", c.typ, c.payload, r, err)
		}
	}
}
