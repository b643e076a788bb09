package chaos

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/tools/load"
)

// The chaos client sends the same request under the same key through 503,
// 429, 500 and 202 until a definitive answer, and counts each retry by cause.
func TestChaosSendRetriesSameRequestUntilDefinitive(t *testing.T) {
	answers := []struct {
		status int
		body   string
	}{
		{503, `{"error":{"code":"unavailable","message":"x"}}`},
		{429, `{"error":{"code":"rate_limited","message":"x"}}`},
		{500, `{"error":{"code":"internal","message":"x"}}`},
		{202, `{"request_id":"k","status":"pending"}`},
		{201, `{"id":"42"}`},
	}
	var mu sync.Mutex
	var keys, bodies []string
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 512)
		k, _ := r.Body.Read(b)
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		bodies = append(bodies, string(b[:k]))
		mu.Unlock()
		a := answers[min(int(n.Add(1))-1, len(answers)-1)]
		w.WriteHeader(a.status)
		_, _ = w.Write([]byte(a.body))
	}))
	defer srv.Close()
	l := newChaosLoad(load.NewClient(srv.URL, 4), "t", 1, 0, time.Minute, time.Minute)
	l.minPause, l.maxPause = time.Millisecond, 2*time.Millisecond
	l.window.Store(2)
	rq := l.startRequest(load.Resident{PermitID: "7", Token: "tok"}, true, false)
	l.send(context.Background(), rq, time.Now().Add(10*time.Second))

	if rq.Answer != answerApplied || rq.Status != 201 || rq.SessionID != "42" || rq.Attempts != 5 {
		t.Fatalf("request = %+v; want applied 201, session 42, 5 attempts", rq)
	}
	for i := range keys {
		if keys[i] != rq.Key || bodies[i] != bodies[0] {
			t.Fatalf("attempt %d sent key %q body %q; want key %q body %q every time", i, keys[i], bodies[i], rq.Key, bodies[0])
		}
	}
	if !strings.Contains(bodies[0], `"end_at"`) || rq.PlannedEnd.IsZero() {
		t.Errorf("an auto-stop start sent %s with planned end %v", bodies[0], rq.PlannedEnd)
	}
	want := map[string]int64{"503 unavailable": 1, "429 rate_limited": 1, "500 internal": 1, "202 pending": 1}
	got := l.retriesIn(2)
	if len(got) != len(want) {
		t.Fatalf("retries in window 2 = %v; want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("retries[%q] = %d; want %d (all: %v)", k, got[k], v, got)
		}
	}
}

// A 4xx other than 429 is definitive; no answer before the deadline leaves
// the request unanswered; a refused connection is retried as such.
func TestChaosSendRejectedAndUnanswered(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/v1/permits/8/") {
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = w.Write([]byte(`{"error":{"code":"insufficient_balance","message":"x"}}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"request_id":"k","status":"pending"}`))
	}))
	l := newChaosLoad(load.NewClient(srv.URL, 4), "t", 1, 0, time.Minute, time.Minute)
	l.minPause, l.maxPause = time.Millisecond, 5*time.Millisecond
	ctx := context.Background()

	rej := l.startRequest(load.Resident{PermitID: "8"}, false, false)
	l.send(ctx, rej, time.Now().Add(time.Second))
	if rej.Answer != answerRejected || rej.Status != 422 || rej.Code != "insufficient_balance" || rej.Attempts != 1 {
		t.Errorf("422: %+v; want rejected at the first attempt", rej)
	}
	pend := l.stopRequest(load.Resident{PermitID: "7"}, "99", false)
	l.send(ctx, pend, time.Now().Add(100*time.Millisecond))
	if pend.Answer != answerNone || pend.Attempts < 2 {
		t.Errorf("pending forever: %+v; want unanswered after several attempts", pend)
	}

	srv.Close()
	gone := l.stopRequest(load.Resident{PermitID: "7"}, "98", false)
	l.send(ctx, gone, time.Now().Add(50*time.Millisecond))
	if gone.Answer != answerNone || l.retriesTotal()["connection refused"] == 0 {
		t.Errorf("server gone: %+v, retries %v; want unanswered, retried as connection refused", gone, l.retriesTotal())
	}
}

func TestRetryCause(t *testing.T) {
	for _, tc := range []struct {
		an   load.Answer
		err  error
		want string
	}{
		{load.Answer{Status: 200}, nil, ""},
		{load.Answer{Status: 201}, nil, ""},
		{load.Answer{Status: 404, Code: "not_found"}, nil, ""},
		{load.Answer{Status: 409, Code: "idempotency_conflict"}, nil, ""},
		{load.Answer{Status: 202}, nil, "202 pending"},
		{load.Answer{Status: 429, Code: "rate_limited"}, nil, "429 rate_limited"},
		{load.Answer{Status: 502}, nil, "502"},
		{load.Answer{}, context.DeadlineExceeded, "timeout"},
		{load.Answer{}, errors.New("weird"), "connection error"},
	} {
		if got := retryCause(tc.an, tc.err); got != tc.want {
			t.Errorf("retryCause(%d, %v) = %q; want %q", tc.an.Status, tc.err, got, tc.want)
		}
	}
}

// The verdict holds a database snapshot to the client's answers.
func TestChaosVerdict(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	at := func(s int) *time.Time { v := t0.Add(time.Duration(s) * time.Second); return &v }
	start := func(key, sid string, ans chaosAnswer, auto bool) *chaosRequest {
		return &chaosRequest{Key: key, Kind: kindStart, SessionID: sid, Answer: ans, Autostop: auto, Status: 201}
	}
	stop := func(key, sid string, ans chaosAnswer) *chaosRequest {
		return &chaosRequest{Key: key, Kind: kindStop, SessionID: sid, Answer: ans, Status: 200}
	}
	good := func() ([]*chaosRequest, dbSnapshot) {
		reqs := []*chaosRequest{
			start("s1", "1", answerApplied, false), stop("x1", "1", answerApplied),
			start("s2", "2", answerApplied, true),
			{Key: "s3", Kind: kindStart, Answer: answerRejected, Status: 422, Code: "plate_already_parked"},
			start("s4", "", answerNone, false), // never answered, never reached the database
		}
		snap := dbSnapshot{
			Requests: map[string]dbRequest{
				"s1": {Type: jobs.TypeSessionStart, Status: "applied"},
				"x1": {Type: jobs.TypeSessionStop, Status: "applied"},
				"s2": {Type: jobs.TypeSessionStart, Status: "applied"},
				"s3": {Type: jobs.TypeSessionStart, Status: "rejected", Code: "plate_already_parked"},
			},
			Sessions: []dbSession{
				{ID: 1, RequestID: "s1", State: "stopped", PlannedEnd: t0.Add(3 * time.Hour), Settled: at(5)},
				{ID: 2, RequestID: "s2", State: "stopped", PlannedEnd: t0.Add(time.Minute), Settled: at(60 + 75)},
			},
		}
		return reqs, snap
	}
	failed := func(cs []Check) map[string][]string {
		out := map[string][]string{}
		for _, c := range cs {
			if !c.OK {
				out[c.Name] = c.Violations
			}
		}
		return out
	}

	reqs, snap := good()
	if f := failed(chaosVerdict(reqs, snap, 2*time.Minute)); len(f) > 0 {
		t.Fatalf("a consistent run failed: %v", f)
	}
	if s, early := autostopLateness(reqs, snap); s.Count != 1 || s.Max != 75 || early != 0 {
		t.Errorf("lateness = %+v, %d early; want one session 75 s late", s, early)
	}

	for _, tc := range []struct {
		name   string
		mutate func(reqs []*chaosRequest, snap *dbSnapshot) []*chaosRequest
		check  string // the check that must fail
		id     string // an ID its violation names
	}{
		{"session left open", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			s.Sessions[1].State, s.Sessions[1].Settled = "open", nil
			return r
		}, "no session open", "session 2"},
		{"auto-stop settled too late", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			s.Sessions[1].Settled = at(60 + 121)
			return r
		}, "every session settled (stopped or cancelled) within 2m of its planned end", "session 2"},
		{"applied answer, pending row", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			s.Requests["x1"] = dbRequest{Type: jobs.TypeSessionStop, Status: "pending"}
			return r
		}, "every request the client saw succeed (200/201) is applied", "x1"},
		{"rejected answer, applied row", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			s.Requests["s3"] = dbRequest{Type: jobs.TypeSessionStart, Status: "applied"}
			s.Sessions = append(s.Sessions, dbSession{ID: 3, RequestID: "s3", State: "stopped", PlannedEnd: t0, Settled: at(0)})
			return r
		}, "every request the client saw rejected (4xx but 429) is rejected", "s3"},
		{"client told another session", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			r[0].SessionID = "7"
			return r
		}, "every start the client saw succeed made the session it was told of", "s1"},
		{"phantom session", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			s.Requests["ghost"] = dbRequest{Type: jobs.TypeSessionStart, Status: "applied"}
			s.Sessions = append(s.Sessions, dbSession{ID: 9, RequestID: "ghost", State: "stopped", PlannedEnd: t0, Settled: at(0)})
			return r
		}, "every session belongs to a start request the client sent", "ghost"},
		{"applied start without a session", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			s.Requests["s4"] = dbRequest{Type: jobs.TypeSessionStart, Status: "applied"}
			return r
		}, "the sessions are exactly the applied starts", "s4"},
		{"unanswered request left pending", func(r []*chaosRequest, s *dbSnapshot) []*chaosRequest {
			s.Requests["s4"] = dbRequest{Type: jobs.TypeSessionStart, Status: "pending"}
			return r
		}, "requests without a definitive answer are applied, rejected or absent in the database (never pending)", "s4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reqs, snap := good()
			reqs = tc.mutate(reqs, &snap)
			f := failed(chaosVerdict(reqs, snap, 2*time.Minute))
			v, ok := f[tc.check]
			if !ok {
				t.Fatalf("check %q did not fail; failed: %v", tc.check, f)
			}
			if !strings.Contains(strings.Join(v, "\n"), tc.id) {
				t.Errorf("violations %q do not name %s", v, tc.id)
			}
		})
	}
}

func TestLogTapTalliesByKind(t *testing.T) {
	var out strings.Builder
	tap := newLogTap(&out)
	lines := []string{
		`[worker-1] time=x level=WARN msg="task failed, will retry" task_id=autostop:9464:17 err="auto-stop session 9464: ERROR: deadlock detected (SQLSTATE 40P01)"`,
		`[worker-2] time=x level=WARN msg="task failed, will retry" task_id=autostop:95:18 err="auto-stop session 95: ERROR: deadlock detected (SQLSTATE 40P01)"`,
		`[intake] time=x level=ERROR msg="request failed" status=503 err=refused`,
		`[intake] time=x level=INFO msg="intake listening"`,
		`[worker-1] time=x level=WARN msg="task failed, will retry" err="deliver event 26580528-0404-4a6c-984b-aa87c8336ce2 to webhook chaos: circuit breaker is open"`,
		`[worker-3] time=x level=WARN msg="task failed, will retry" err="deliver event 45732945-7292-4290-bff8-33970036eeb7 to webhook chaos: circuit breaker is open"`,
	}
	for _, l := range lines {
		// Split across writes: a line is a line however it arrives.
		_, _ = tap.Write([]byte(l[:10]))
		_, _ = tap.Write([]byte(l[10:] + "\n"))
	}
	if out.String() != strings.Join(lines, "\n")+"\n" {
		t.Errorf("passed on %q", out.String())
	}
	kinds := tap.Kinds()
	if len(kinds) != 3 {
		t.Fatalf("kinds = %+v; want 3", kinds)
	}
	k := kinds[0]
	if k.Count != 2 || k.Procs["worker-1"] != 1 || k.Procs["worker-2"] != 1 || !strings.HasPrefix(k.Kind, `worker WARN "task failed, will retry" err="auto-stop session N: ERROR: deadlock detected`) || k.First != lines[0] {
		t.Errorf("first kind = %+v", k)
	}
	if k := kinds[1]; k.Count != 2 || k.Kind != `worker WARN "task failed, will retry" err="deliver event UUID to webhook chaos: circuit breaker is open"` {
		t.Errorf("second kind = %+v; want both deliveries' failures as one kind", k)
	}
	if kinds[2].Kind != "intake ERROR \"request failed\" err=refused" {
		t.Errorf("third kind = %q", kinds[2].Kind)
	}
}

func TestAutostopLatenessByWindow(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	sec := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	settled := func(s int) *time.Time { v := sec(s); return &v }
	reqs := []*chaosRequest{
		{Key: "a", Kind: kindStart, Autostop: true}, {Key: "b", Kind: kindStart, Autostop: true},
		{Key: "c", Kind: kindStart, Autostop: true}, {Key: "d", Kind: kindStart},
	}
	snap := dbSnapshot{Sessions: []dbSession{
		{ID: 1, RequestID: "a", PlannedEnd: sec(10), Settled: settled(11)},
		{ID: 2, RequestID: "b", PlannedEnd: sec(70), Settled: settled(100)},
		{ID: 3, RequestID: "c", PlannedEnd: sec(200), Settled: settled(202)},
		{ID: 4, RequestID: "d", PlannedEnd: sec(75), Settled: settled(20)}, // stopped: not an auto-stop
	}}
	got := autostopLatenessByWindow(reqs, snap, []time.Time{{}, sec(60), sec(120), sec(180)}, []string{"w0", "w1", "w2", "w3"})
	if len(got) != 3 || got[0].Window != "w0" || got[0].Lateness.Max != 1 || got[1].Window != "w1" || got[1].Lateness.Max != 30 ||
		got[2].Window != "w3" || got[2].Lateness.Count != 1 {
		t.Fatalf("by window = %+v", got)
	}
}

func TestReadDeadlocks(t *testing.T) {
	log := `2026-11-29 07:54:01.994 UTC [8045] LOG:  received fast shutdown request
2026-11-29 07:54:03.507 UTC [8501] ERROR:  deadlock detected
2026-11-29 07:54:03.507 UTC [8501] DETAIL:  Process 8501 waits for ShareLock on transaction 1; blocked by process 8502.
	Process 8502 waits for ShareLock on transaction 2; blocked by process 8501.
	Process 8501: SELECT permit.* FROM permits WHERE id = 12 FOR UPDATE
2026-11-29 07:54:03.507 UTC [8501] HINT:  See server log for query details.
2026-11-29 07:54:03.507 UTC [8501] CONTEXT:  while locking tuple (0,23) in relation "permits"
2026-11-29 07:54:03.507 UTC [8501] STATEMENT:  SELECT permit.* FROM permits WHERE id = 12 FOR UPDATE
2026-11-29 07:54:04.523 UTC [8511] ERROR:  deadlock detected
2026-11-29 07:54:04.523 UTC [8511] STATEMENT:  SELECT permit.* FROM permits WHERE id = 7 FOR UPDATE
2026-11-29 07:54:05.000 UTC [8045] LOG:  checkpoint starting: time
`
	path := t.TempDir() + "/postgres.log"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	d := readDeadlocks(path)
	if d.n != 2 || d.byStmt["SELECT permit.* FROM permits WHERE id = N FOR UPDATE"] != 2 {
		t.Fatalf("deadlocks = %d, %v", d.n, d.byStmt)
	}
	if !strings.HasPrefix(d.first, "2026-11-29 07:54:03.507 UTC [8501] ERROR") || !strings.HasSuffix(d.first, "id = 12 FOR UPDATE") || strings.Contains(d.first, "8511") {
		t.Errorf("first = %q", d.first)
	}
	if f := d.finding(); !strings.Contains(f, "2 deadlocks") {
		t.Errorf("finding = %q", f)
	}
	if readDeadlocks(path+".missing").n != 0 {
		t.Error("a missing log has deadlocks")
	}
}
