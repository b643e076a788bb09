package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hibiken/asynq"
)

// PlateTask is a task in Redis whose payload names a plate (DOMAIN.md
// "Privacy"): a session:start, or a session:change correcting the plate.
// What else its payload names says whose it is.
type PlateTask struct {
	Queue, State string // State: pending, scheduled, retry, archived or completed
	Info         *asynq.TaskInfo
	RequestID    string
	PermitID     string // of a start
	SessionID    string // of a change
}

// plateTaskPageSize is how many tasks one Inspector call lists.
const plateTaskPageSize = 1000

// ListPlateTasks lists every task of every queue, in every state but active
// (a task being handled cannot be deleted; its plate is still being used),
// whose payload names a plate.
func ListPlateTasks(ctx context.Context, ins *asynq.Inspector) ([]PlateTask, error) {
	queues, err := ins.Queues()
	if err != nil {
		return nil, fmt.Errorf("list queues: %w", err)
	}
	type lister func(queue string, opts ...asynq.ListOption) ([]*asynq.TaskInfo, error)
	states := []struct {
		name string
		list lister
	}{
		{"pending", ins.ListPendingTasks}, {"scheduled", ins.ListScheduledTasks}, {"retry", ins.ListRetryTasks},
		{"archived", ins.ListArchivedTasks}, {"completed", ins.ListCompletedTasks},
	}
	var out []PlateTask
	for _, q := range queues {
		for _, st := range states {
			for page := 1; ; page++ {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				infos, err := st.list(q, asynq.PageSize(plateTaskPageSize), asynq.Page(page))
				if err != nil {
					return nil, fmt.Errorf("list %s tasks of %s: %w", st.name, q, err)
				}
				for _, t := range infos {
					if pt, ok := plateTask(t); ok {
						pt.Queue, pt.State = q, st.name
						out = append(out, pt)
					}
				}
				if len(infos) < plateTaskPageSize {
					break
				}
			}
		}
	}
	return out, nil
}

func plateTask(t *asynq.TaskInfo) (PlateTask, bool) {
	switch t.Type {
	case TypeSessionStart:
		var p SessionStart
		_ = json.Unmarshal(t.Payload, &p) // a payload that does not decode still names a plate, maybe
		return PlateTask{Info: t, RequestID: p.RequestID, PermitID: p.PermitID}, true
	case TypeSessionChange:
		var p SessionChange
		if err := json.Unmarshal(t.Payload, &p); err == nil && p.Plate == nil {
			return PlateTask{}, false
		}
		return PlateTask{Info: t, RequestID: p.RequestID, SessionID: p.SessionID}, true
	}
	return PlateTask{}, false
}

// DeletePlateTasks deletes tasks listed by ListPlateTasks and returns how many
// it deleted; one already gone (run, or deleted by another run) is skipped.
func DeletePlateTasks(ins *asynq.Inspector, tasks []PlateTask) (int64, error) {
	var n int64
	for _, t := range tasks {
		err := ins.DeleteTask(t.Queue, t.Info.ID)
		switch {
		case err == nil:
			n++
		case errors.Is(err, asynq.ErrTaskNotFound):
		default:
			return n, fmt.Errorf("delete %s task %s of %s: %w", t.State, t.Info.ID, t.Queue, err)
		}
	}
	return n, nil
}
