package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// ReconcileGrace is how long past its planned end a session may stay open before
// the reconciler settles it itself: long enough for the normal auto-stop (due
// within about a second) to win, short enough that Redis losing a task costs at
// most a minute and a bit of lateness. The charge is the same either way.
const ReconcileGrace = 15 * time.Second

// EpochKey is a key parkd keeps in Redis to notice when Redis lost its data
// (FLUSHALL, a restart without persistence, a failover to an empty replica):
// scheduled auto-stops live only in Redis, so then they must all be queued again.
//
// Its value is the instant it was set and the run ID of the primary that
// held it (every primary's, in a Cluster). A primary that is not the one
// named may have lost some of the data without losing the key: a replica
// promoted by Sentinel had not been sent the old primary's last writes
// (replication is asynchronous), a restart from an AOF synced every second
// lacks up to a second of them. So a key naming another primary counts as a
// loss too, and everything is queued again once (deterministic task IDs make
// that harmless for what survived).
const EpochKey = "parkd:epoch"

// ReconcileReport says what one reconciliation did.
type ReconcileReport struct {
	Settled  int // overdue sessions settled by the reconciler
	Requeued int // auto-stops queued again because Redis had lost its data
	Endings  int // ending notices queued again, likewise
	Failed   int // overdue sessions the database refused to settle, for good
	// RedisEmpty: the epoch was missing, or named another primary (then
	// RedisReplaced too), and what Redis holds for parkd was queued again.
	RedisEmpty    bool
	RedisReplaced bool
	// RightsRequeued: right:register tasks of pending rights queued again
	// (their task was gone: Redis lost it, or a worker died with it).
	RightsRequeued int
	// DeliveriesRequeued: event:deliver tasks of pending webhook deliveries
	// queued again because Redis had lost its data.
	DeliveriesRequeued int
	// RequestsRequeued: tasks of requests answered 202 and still pending
	// queued again (their task was gone: Redis lost it).
	RequestsRequeued int
	// Scheduled: auto-stops and ending notices handed to Redis as they
	// came within the schedule horizon (schedule.go); routine, not a repair.
	Scheduled int
}

// RequestRequeueAfter is how long a request answered 202 may be pending
// before the reconciler queues its task again from its record (the same
// reasoning as RightRequeueAfter: a task still in Redis holds its ID, and the
// requeue is refused harmlessly).
const RequestRequeueAfter = 30 * time.Second

// RequestRequeueLimit bounds the requests one reconciliation queues again.
const RequestRequeueLimit = 1000

// RightRequeueAfter is how long a right may be pending before the reconciler
// queues its task again: longer than the hand-over after commit and the
// relay (5 s) take, so that a task on its way is not raced for nothing. A
// task still in Redis (waiting, running or between retries) holds its ID, and
// the requeue is refused harmlessly.
const RightRequeueAfter = 30 * time.Second

// RightRequeueLimit bounds the rights one reconciliation queues again; the
// next run, a minute later, takes the next ones.
const RightRequeueLimit = 1000

// SessionReconcile handles session:reconcile.
func (h *Handlers) SessionReconcile(ctx context.Context, _ *asynq.Task) error {
	rep, err := h.Reconcile(ctx)
	h.observer().Reconciled(rep.Settled, rep.Requeued)
	if rep.Settled > 0 || rep.Requeued > 0 || rep.Failed > 0 || rep.RightsRequeued > 0 || rep.Endings > 0 ||
		rep.DeliveriesRequeued > 0 || rep.RequestsRequeued > 0 || rep.RedisReplaced {
		h.logger(ctx).Warn("reconciler repaired", "settled", rep.Settled, "requeued", rep.Requeued, "endings", rep.Endings,
			"failed", rep.Failed, "rights_requeued", rep.RightsRequeued, "deliveries_requeued", rep.DeliveriesRequeued,
			"requests_requeued", rep.RequestsRequeued, "redis_lost_data", rep.RedisEmpty, "redis_primary_changed", rep.RedisReplaced)
	}
	return err
}

// Reconcile settles every open session past its planned end (plus the grace),
// and, when Redis has lost its data, queues every open session's auto-stop again.
// Both are idempotent: several reconcilers may run at once.
func (h *Handlers) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	if h.Redis != nil && h.Client != nil {
		n, lost, err := h.requeueIfRedisLost(ctx, &rep)
		rep.Requeued, rep.RedisEmpty = n, lost
		if err != nil {
			return rep, err
		}
	}
	if h.Client != nil {
		n, err := h.requeuePendingRights(ctx)
		rep.RightsRequeued = n
		if err != nil {
			return rep, err
		}
		if rep.RequestsRequeued, err = h.requeueStrandedRequests(ctx); err != nil {
			return rep, err
		}
		if rep.Scheduled, err = h.scheduleDueSoon(ctx); err != nil {
			return rep, err
		}
	}
	grace := h.ReconcileGrace
	if grace == 0 {
		grace = ReconcileGrace
	}
	var failed []int64
	for {
		ids, err := repo.OverdueSessions(ctx, h.Store.DB, h.now().Add(-grace), failed, 500)
		if err != nil {
			return rep, err
		}
		for _, id := range ids {
			settled, err := h.autoStop(ctx, id, nil, SettledReconciled)
			if _, final := finalFailure(ctx, err); final {
				// A session the database refuses to settle must not keep
				// every session behind it open: it stays open for an
				// operator (`parkd check` lists it) and the others go on.
				h.logger(ctx).Error("overdue session cannot be settled: left open", "session_id", id, "err", err)
				failed = append(failed, id)
				rep.Failed++
				continue
			}
			if err != nil {
				return rep, err
			}
			if settled {
				rep.Settled++
			}
		}
		if len(ids) < 500 {
			return rep, nil
		}
	}
}

func (h *Handlers) requeueIfRedisLost(ctx context.Context, rep *ReconcileReport) (int, bool, error) {
	// The primary is named before the key is read: should it change in
	// between, the epoch set below names the old one, and the next run
	// queues everything again, which is harmless.
	primary, err := redisPrimary(ctx, h.Redis)
	if err != nil {
		return 0, false, fmt.Errorf("name the Redis primary: %w", err)
	}
	epoch, err := h.Redis.Get(ctx, EpochKey).Result()
	switch {
	case err == nil:
		if _, held, _ := strings.Cut(epoch, " "); held == primary {
			return 0, false, nil
		}
		rep.RedisReplaced = true
	case !errors.Is(err, redis.Nil):
		return 0, false, fmt.Errorf("read %s: %w", EpochKey, err)
	}
	// Redis has no epoch, or another primary set it: it is new, lost its
	// data, or may have lost its last writes. Queue every open session's
	// auto-stop and ending notice due within the schedule horizon (later
	// ones are scheduleDueSoon's, as they come within it: schedule.go), and
	// every pending webhook delivery (deterministic task IDs make repeats
	// harmless), then set the epoch. Dying half-way leaves the epoch as it
	// was, so the next run starts over.
	n := 0
	until := h.now().Add(h.horizon())
	var after int64
	for {
		rows, err := repo.OpenSessionEnds(ctx, h.Store.DB, after, 1000)
		if err != nil {
			return n, true, err
		}
		for i := range rows {
			after = rows[i].ID
			if rows[i].PlannedEndAt.After(until) {
				continue
			}
			sid := repo.FormatID(rows[i].ID)
			queued, err := enqueueNew(ctx, h.Client, jobs.NewSessionAutoStop(sid, rows[i].PlannedEndAt))
			if err != nil {
				return n, true, fmt.Errorf("requeue auto-stop of session %s: %w", sid, err)
			}
			if queued {
				n++
			}
		}
		if len(rows) < 1000 {
			break
		}
	}
	endings, err := h.requeueEndings(ctx)
	rep.Endings = endings
	if err != nil {
		return n, true, err
	}
	deliveries, err := h.requeueDeliveries(ctx)
	rep.DeliveriesRequeued = deliveries
	if err != nil {
		return n, true, err
	}
	if err := h.Redis.Set(ctx, EpochKey, h.now().Format(time.RFC3339Nano)+" "+primary, 0).Err(); err != nil {
		return n, true, fmt.Errorf("set %s: %w", EpochKey, err)
	}
	return n, true, nil
}

// redisPrimary names the Redis primary parkd's client writes to by its run
// ID (INFO server), which is new at every start of a server and differs
// between a primary and the replica promoted in its place; for a Cluster,
// every primary's, sorted and comma-separated.
func redisPrimary(ctx context.Context, rc redis.UniversalClient) (string, error) {
	cc, ok := rc.(*redis.ClusterClient)
	if !ok {
		return runID(ctx, rc)
	}
	var mu sync.Mutex
	var ids []string
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		id, err := runID(ctx, c)
		mu.Lock()
		ids = append(ids, id)
		mu.Unlock()
		return err
	})
	slices.Sort(ids)
	return strings.Join(ids, ","), err
}

func runID(ctx context.Context, c redis.Cmdable) (string, error) {
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return "", err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "run_id:"); ok && v != "" {
			return v, nil
		}
	}
	return "", errors.New("INFO server has no run_id")
}

// requeuePendingRights queues again the right:register task of the newest
// version of every right pending for more than RightRequeueAfter (at most
// RightRequeueLimit, oldest first). Task IDs are per session and version, so
// a task still in Redis refuses the copy: only a lost one is replaced. This is
// what makes registration survive Redis losing its data and a worker killed
// with a task in hand (DOMAIN.md "Registration").
func (h *Handlers) requeuePendingRights(ctx context.Context) (int, error) {
	rows, err := repo.PendingRights(ctx, h.Store.DB, h.now().Add(-RightRequeueAfter), RightRequeueLimit)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range rows {
		sid := repo.FormatID(r.SessionID)
		queued, err := enqueueNew(ctx, h.Client, jobs.NewRightRegister(sid, r.Version))
		if err != nil {
			return n, fmt.Errorf("requeue right of session %s version %d: %w", sid, r.Version, err)
		}
		if queued {
			n++
		}
	}
	return n, nil
}

// requeueStrandedRequests queues again the task of every request the intake
// answered 202 that is still pending RequestRequeueAfter after (from the
// payload its record keeps, repo.StrandedRequests), whatever the epoch says:
// a failover to a replica that had not yet received a task loses it and
// keeps the epoch. A task still in Redis (waiting, running, retrying, or
// archived for an operator) holds its ID and is left as it is; the request
// claim makes a second run of one that did run harmless.
func (h *Handlers) requeueStrandedRequests(ctx context.Context) (int, error) {
	rows, err := repo.StrandedRequests(ctx, h.Store.DB, RequestRequeueAfter, RequestRequeueLimit)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range rows {
		subject := ""
		if r.Subject != nil {
			subject = *r.Subject
		}
		t, err := jobs.RebuildRequest(r.Type, r.TaskPayload, subject)
		if err != nil {
			// Recorded by the intake from a task it built: never unreadable
			// unless the row was tampered with. `parkd check` lists it.
			h.logger(ctx).Error("pending request's recorded task cannot be rebuilt", "request_id", r.RequestID, "err", err)
			continue
		}
		queued, err := enqueueNew(ctx, h.Client, t)
		if err != nil {
			return n, fmt.Errorf("requeue request %s: %w", r.RequestID, err)
		}
		if queued {
			n++
		}
	}
	return n, nil
}
