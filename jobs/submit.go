package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// Submitted says where a request's task stands after Submit.
type Submitted int

const (
	// Enqueued: the task was queued now.
	Enqueued Submitted = iota
	// Queued: the request's task was already there, waiting (pending or
	// scheduled), running, or waiting for a retry: its outcome is coming.
	Queued
	// Rerun: the request's task was archived (its retries spent, or archived by
	// an operator), where nothing ever runs it; it has been queued again.
	Rerun
	// Finished: the request's task has run and is gone (or kept as completed):
	// its outcome is recorded, read it (GET /v1/requests/{request_id}). Should it
	// still be pending, the task that ran was another request under the same
	// ID, and submitting again queues this one.
	Finished
)

func (s Submitted) String() string {
	switch s {
	case Enqueued:
		return "enqueued"
	case Queued:
		return "queued"
	case Rerun:
		return "rerun"
	case Finished:
		return "finished"
	}
	return fmt.Sprintf("Submitted(%d)", int(s))
}

// Submit enqueues a request task built by one of this package's constructors
// (NewSessionStart…), under its request's task ID. A request ID already
// taken (asynq.ErrTaskIDConflict) is not taken to mean "queued, all is well":
// the task holding it is looked at with the Inspector, because an archived
// task never runs again by itself and a request answered "queued" for it would
// stay pending forever. An archived task is run again (the request is
// idempotent, so that is always safe); one that is waiting, running or
// retrying is left to finish; one that has finished is reported as such.
//
// The error is Redis's (unreachable, or refusing): the task may or may not be
// queued, and submitting again is safe.
func Submit(ctx context.Context, c *asynq.Client, in *asynq.Inspector, task *asynq.Task) (Submitted, error) {
	queue, ok := RequestQueue(task.Type())
	if !ok {
		return 0, fmt.Errorf("jobs: submit %s: not a request type", task.Type())
	}
	var p struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(task.Payload(), &p); err != nil || !ValidRequestID(p.RequestID) {
		return 0, fmt.Errorf("jobs: submit %s: the payload has no valid request_id", task.Type())
	}
	id := RequestTaskID(p.RequestID)
	_, err := c.EnqueueContext(ctx, task)
	if err == nil {
		return Enqueued, nil
	}
	if !errors.Is(err, asynq.ErrTaskIDConflict) {
		return 0, fmt.Errorf("jobs: enqueue %s %s: %w", task.Type(), id, err)
	}
	state, err := taskState(in, queue, id)
	if err != nil || state != asynq.TaskStateArchived {
		return submitted(state), err
	}
	if err := in.RunTask(queue, id); err != nil {
		// Run by someone else (an operator, another intake) or finished since
		// the look: whatever it is now says what to do.
		if state, serr := taskState(in, queue, id); serr == nil && state != asynq.TaskStateArchived {
			return submitted(state), nil
		}
		return 0, fmt.Errorf("jobs: run archived task %s again: %w", id, err)
	}
	return Rerun, nil
}

// taskState is the state of the task id in queue; TaskStateCompleted for one
// that is gone (it ran and was deleted: asynq keeps no finished task unless
// told to).
func taskState(in *asynq.Inspector, queue, id string) (asynq.TaskState, error) {
	info, err := in.GetTaskInfo(queue, id)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return asynq.TaskStateCompleted, nil
	case err != nil:
		return 0, fmt.Errorf("jobs: look at task %s: %w", id, err)
	}
	return info.State, nil
}

func submitted(state asynq.TaskState) Submitted {
	if state == asynq.TaskStateCompleted {
		return Finished
	}
	return Queued
}

// HeldTask reads the task that holds the request task ID of task (after
// Submit said Queued or Rerun: an earlier attempt's task, or another
// request's under the same ID) and returns its payload when it is the same
// request as task (its type and Fingerprint), whatever its receipt: the
// request as first accepted, which a 202 must record rather than a repeat's
// later receipt (a backed-up queue must not move anyone's parking right).
// same is false for another request, or a task no longer there.
func HeldTask(in *asynq.Inspector, task *asynq.Task) (payload []byte, same bool, err error) {
	queue, ok := RequestQueue(task.Type())
	if !ok {
		return nil, false, fmt.Errorf("jobs: held task of %s: not a request type", task.Type())
	}
	mine, err := DecodeRequest(task.Type(), task.Payload())
	if err != nil {
		return nil, false, err
	}
	info, err := in.GetTaskInfo(queue, RequestTaskID(mine.ID()))
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("jobs: look at task %s: %w", RequestTaskID(mine.ID()), err)
	}
	if info.Type != task.Type() {
		return nil, false, nil
	}
	held, err := DecodeRequest(info.Type, info.Payload)
	if err != nil || held.ID() != mine.ID() || held.Fingerprint() != mine.Fingerprint() {
		return nil, false, nil
	}
	return info.Payload, true, nil
}

// DecodeRequest reads the payload of a request task of type typ.
func DecodeRequest(typ string, payload []byte) (Request, error) {
	decode, ok := requestDecoders[typ]
	if !ok {
		return nil, fmt.Errorf("jobs: %s is not a request type", typ)
	}
	r, err := decode(payload)
	if err != nil {
		return nil, fmt.Errorf("jobs: %s payload: %w", typ, err)
	}
	return r, nil
}

var requestDecoders = map[string]func([]byte) (Request, error){
	TypeSessionStart:  decodeAs[SessionStart],
	TypeSessionStop:   decodeAs[SessionStop],
	TypeSessionChange: decodeAs[SessionChange],
	TypePermitIssue:   decodeAs[PermitIssue],
	TypePermitTopup:   decodeAs[PermitTopup],
	TypePermitEnd:     decodeAs[PermitEnd],
}

func decodeAs[T Request](payload []byte) (Request, error) {
	var p T
	err := json.Unmarshal(payload, &p)
	return p, err
}
