package worker_test

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/parkd/parkd/domain"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

// redisDump is every key of the test's Redis index with every value under it,
// read as its type asks, and its DUMP (serialised) form.
func redisDump(t *testing.T, rdb *redis.Client) string {
	t.Helper()
	ctx := t.Context()
	var b strings.Builder
	iter := rdb.Scan(ctx, 0, "*", 500).Iterator()
	for iter.Next(ctx) {
		key := iter.Val()
		b.WriteString(key + "\n")
		typ, err := rdb.Type(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		var vals []string
		switch typ {
		case "string":
			v, _ := rdb.Get(ctx, key).Result()
			vals = []string{v}
		case "hash":
			m, _ := rdb.HGetAll(ctx, key).Result()
			for k, v := range m {
				vals = append(vals, k, v)
			}
		case "list":
			vals, _ = rdb.LRange(ctx, key, 0, -1).Result()
		case "set":
			vals, _ = rdb.SMembers(ctx, key).Result()
		case "zset":
			vals, _ = rdb.ZRange(ctx, key, 0, -1).Result()
		case "stream":
			msgs, _ := rdb.XRange(ctx, key, "-", "+").Result()
			for _, m := range msgs {
				for k, v := range m.Values {
					vals = append(vals, k, strings.TrimSpace(strings.ReplaceAll(strings.Repeat(" ", 0)+toString(v), "\n", " ")))
				}
			}
		}
		for _, v := range vals {
			b.WriteString(v + "\n")
		}
		d, _ := rdb.Dump(ctx, key).Result()
		b.WriteString(d + "\n")
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func toString(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return ""
}

// pgDump is `pg_dump --data-only` of the test's database.
func pgDump(t *testing.T, e *harness) string {
	t.Helper()
	var db string
	if err := e.store.DB.NewRaw("SELECT current_database()").Scan(e.ctx, &db); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(e.ctx, "pg_dump", "-h", "127.0.0.1", "-U", "postgres", "--data-only", db).CombinedOutput()
	if err != nil {
		t.Fatalf("pg_dump: %v: %s", err, out)
	}
	return string(out)
}

// eventsOf is the events table's part of a pg_dump.
func eventsOf(dump string) string {
	start := strings.Index(dump, "COPY public.events ")
	if start < 0 {
		return ""
	}
	end := strings.Index(dump[start:], "\\.\n")
	if end < 0 {
		return dump[start:]
	}
	return dump[start : start+end]
}

// maskedPlateJSON is how an event's data shows a plate in a dump of jsonb.
func maskedPlateJSON(plate string) string {
	return `"plate": "` + domain.MaskPlate(plate) + `"`
}

// The proof (DOMAIN.md "Privacy"): with the plate retention at an
// hour, sessions with distinctive plates are started and stopped, the clock
// passes the retention, and retention runs; then neither a pg_dump of the
// database nor any key or value in Redis holds those plates, sessions younger
// than the retention and open ones keep theirs, balances still equal ledgers
// and the audit of `parkd check` holds.
func TestRetentionErasesPlatesFromPostgresAndRedis(t *testing.T) {
	l := withClock(setup(t), time.Now())
	l.h.PlateRetention = time.Hour
	permit := l.permit(10)
	// Tasks received at the test's clock, which the rules measure from.
	startTask := func(plate string, end *time.Time) (*asynq.Task, string) {
		id := rid("start")
		task, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: id, PermitID: permit, Plate: plate, EndAt: end, ReceivedAt: l.clk.now()})
		if err != nil {
			t.Fatal(err)
		}
		return task, id
	}
	stopTask := func(session string) *asynq.Task {
		task, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: rid("stop"), SessionID: session, ReceivedAt: l.clk.now()})
		if err != nil {
			t.Fatal(err)
		}
		return task
	}
	old := []string{"ZQXOLD1", "ZQXOLD2", "ZQXOLD3"}
	var oldSessions []string
	for i, plate := range old {
		task, id := startTask(plate, ptr(l.clk.now().Add(3*time.Hour)))
		var s jobs.Session
		l.run(task, l.h.SessionStart, &s)
		oldSessions = append(oldSessions, s.ID)
		// Its task also lies in Redis as asynq may leave it: archived (failed
		// for good after it was applied), or a leftover pending duplicate.
		info, err := l.client.Enqueue(task)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := l.inspector.ArchiveTask(info.Queue, info.ID); err != nil {
				t.Fatal(err)
			}
		}
		if i == 1 { // a plate correction still waiting, of a request long done
			change, err := jobs.NewSessionChange(jobs.SessionChange{RequestID: id + "-c", SessionID: s.ID, Plate: ptr(plate), ReceivedAt: l.clk.now()})
			if err != nil {
				t.Fatal(err)
			}
			l.run(change, l.h.SessionChange, nil)
			if _, err := l.client.Enqueue(change, asynq.ProcessIn(time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A second start of a parked plate is refused: its message shows the plate masked.
	again, _ := startTask(old[2], nil)
	if r := l.run(again, l.h.SessionStart, nil); r.Status != repo.RequestRejected {
		t.Fatalf("second start of %s: %s", old[2], r.Status)
	}
	l.clk.add(time.Minute)
	for _, id := range oldSessions {
		l.run(stopTask(id), l.h.SessionStop, nil)
	}

	// Two hours on: a session that ends now, and one still open.
	l.clk.add(2 * time.Hour)
	youngTask, _ := startTask("ZQXYOUNG", ptr(l.clk.now().Add(time.Hour)))
	var young jobs.Session
	if r := l.run(youngTask, l.h.SessionStart, &young); r.Status != repo.RequestApplied {
		t.Fatalf("young start: %s", r.Error)
	}
	l.run(stopTask(young.ID), l.h.SessionStop, nil)
	openTask, _ := startTask("ZQXOPEN", ptr(l.clk.now().Add(time.Hour)))
	var open jobs.Session
	l.run(openTask, l.h.SessionStart, &open)

	before := pgDump(t, l.harness)
	for _, plate := range old {
		if !strings.Contains(before, plate) {
			t.Fatalf("the dump holds no %s before retention: the search below would prove nothing", plate)
		}
		if !strings.Contains(eventsOf(before), maskedPlateJSON(plate)) {
			t.Fatalf("the events hold no %s before retention: the search below would prove nothing", maskedPlateJSON(plate))
		}
	}
	if !strings.Contains(redisDump(t, l.rdb), old[0]) {
		t.Fatalf("Redis holds no %s before retention", old[0])
	}

	res, err := l.h.Retention(l.ctx)
	if err != nil {
		t.Fatal(err)
	}
	// 3 sessions; their starts, stops and the change: 7 outcomes, and the refused
	// start's hash; in Redis the
	// archived start, the pending duplicate start and the scheduled change.
	if res.Sessions != 3 || res.Requests != 8 || res.RedisTasks < 3 {
		t.Fatalf("retention %+v, want 3 sessions, 8 request rows, at least 3 tasks", res)
	}

	dump, keys := pgDump(t, l.harness), redisDump(t, l.rdb)
	for _, plate := range old {
		if strings.Contains(dump, plate) {
			t.Errorf("pg_dump still holds %s", plate)
		}
		// Events show plates masked; erased means those go too.
		if strings.Contains(eventsOf(dump), maskedPlateJSON(plate)) {
			t.Errorf("the events still hold %s", maskedPlateJSON(plate))
		}
		if strings.Contains(keys, plate) {
			t.Errorf("Redis still holds %s", plate)
		}
	}
	for _, id := range oldSessions {
		if s := l.session(id); s.Plate != "" || s.ChargedMinutes == nil {
			t.Errorf("session %s: plate %q, charge %v", id, s.Plate, s.ChargedMinutes)
		}
	}
	for id, plate := range map[string]string{young.ID: "ZQXYOUNG", open.ID: "ZQXOPEN"} {
		if s := l.session(id); s.Plate != plate || !strings.Contains(dump, plate) {
			t.Errorf("session %s lost its plate %s: %q", id, plate, s.Plate)
		}
		if !strings.Contains(eventsOf(dump), maskedPlateJSON(plate)) {
			t.Errorf("the events of session %s lost its plate %s", id, maskedPlateJSON(plate))
		}
	}
	for _, id := range oldSessions {
		evs := l.sessionEvents(id)
		if len(evs) < 2 {
			t.Fatalf("session %s has %d events, want its start's and its stop's at least", id, len(evs))
		}
		for _, ev := range evs {
			if d := wantSessionEventData(t, ev); d.Plate != "" || d.ID != id {
				t.Errorf("%s of session %s after retention: %s", ev.Type, id, ev.Data)
			}
		}
	}
	l.checkInvariants()

	// A second run finds nothing more.
	if res, err := l.h.Retention(l.ctx); err != nil || res.Sessions != 0 || res.Requests != 0 || res.RedisTasks != 0 {
		t.Fatalf("second run: %+v %v", res, err)
	}
}

// Three schedulers (three hosts), their clocks minutes apart, each fire the
// retention every second: one task per hour reaches the queue, the worker
// runs it once (it is kept, so no late scheduler enqueues the hour again).
func TestRetentionSchedulersOnThreeHostsEnqueueOncePerHour(t *testing.T) {
	l := withClock(setup(t), time.Now())
	l.start()
	hour := time.Date(2026, time.November, 24, 3, 35, 0, 0, time.UTC)
	for i := range 3 {
		m, err := worker.NewRetentionScheduler(l.redisOpt, worker.RetentionSchedule{
			Cronspec: "@every 1s", Sync: 100 * time.Millisecond, Clock: newTestClock(hour.Add(time.Duration(i) * 10 * time.Minute)),
		}, quietLog())
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(m.Shutdown)
	}
	deadline := time.Now().Add(10 * time.Second)
	var done []*asynq.TaskInfo
	for len(done) == 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		done, _ = l.inspector.ListCompletedTasks(jobs.QueueMaintenance)
	}
	time.Sleep(2500 * time.Millisecond) // every scheduler fires a few more times
	done, err := l.inspector.ListCompletedTasks(jobs.QueueMaintenance)
	if err != nil || len(done) != 1 || done[0].ID != jobs.RetentionTaskID(hour) || done[0].Type != jobs.TypePrivacyRetention {
		t.Fatalf("ran %d retention tasks (%v), want 1: %s", len(done), err, jobs.RetentionTaskID(hour))
	}
}

// A cancelled session ended when it was cancelled (DOMAIN.md "Privacy"), not
// at its planned start, which its end_at holds: a session planned three days
// ahead and cancelled now loses its plate, in its row, its request outcomes
// and its events, once the retention has passed since the cancellation, not
// three days later.
func TestRetentionCountsACancelledSessionFromItsCancellation(t *testing.T) {
	l := withClock(setup(t), time.Now())
	l.h.PlateRetention = time.Hour
	permit := l.permit(10)
	const plate = "ZQXCANC1"
	startAt := l.clk.now().Add(3 * 24 * time.Hour)
	start, err := jobs.NewSessionStart(jobs.SessionStart{RequestID: rid("start"), PermitID: permit, Plate: plate,
		StartAt: &startAt, ReceivedAt: l.clk.now()})
	if err != nil {
		t.Fatal(err)
	}
	var s jobs.Session
	if r := l.run(start, l.h.SessionStart, &s); r.Status != repo.RequestApplied {
		t.Fatalf("planned start: %s %s", r.Status, r.Error)
	}
	l.clk.add(time.Minute)
	cancel, err := jobs.NewSessionStop(jobs.SessionStop{RequestID: rid("stop"), SessionID: s.ID, ReceivedAt: l.clk.now()})
	if err != nil {
		t.Fatal(err)
	}
	l.run(cancel, l.h.SessionStop, nil)
	row := l.session(s.ID)
	if row.State != domain.StateCancelled || row.EndAt == nil || !row.EndAt.After(l.clk.now().Add(48*time.Hour)) {
		t.Fatalf("not cancelled with its planned start as its end: %+v", row)
	}
	if !strings.Contains(pgDump(t, l.harness), plate) || len(l.sessionEvents(s.ID)) < 2 {
		t.Fatal("the plate is nowhere before retention: the search below would prove nothing")
	}

	// Within the retention after the cancellation: kept.
	l.clk.add(59 * time.Minute)
	if res, err := l.h.Retention(l.ctx); err != nil || res.Sessions != 0 {
		t.Fatalf("retention within the hour: %+v %v, want nothing erased", res, err)
	}
	if l.session(s.ID).Plate != plate {
		t.Fatal("the plate was erased before the retention passed")
	}

	// The retention passed since the cancellation, the planned start still
	// days ahead: erased everywhere.
	l.clk.add(2 * time.Minute)
	res, err := l.h.Retention(l.ctx)
	if err != nil || res.Sessions != 1 || res.Requests != 2 {
		t.Fatalf("retention after the hour: %+v %v, want 1 session and its start's and cancel's outcomes", res, err)
	}
	if dump := pgDump(t, l.harness); strings.Contains(dump, plate) || strings.Contains(eventsOf(dump), maskedPlateJSON(plate)) {
		t.Error("pg_dump still holds the plate")
	}
	for _, ev := range l.sessionEvents(s.ID) {
		if d := wantSessionEventData(t, ev); d.Plate != "" || d.ID != s.ID {
			t.Errorf("%s after retention: %s", ev.Type, ev.Data)
		}
	}
	l.checkInvariants()
}
