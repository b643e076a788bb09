package metrics_test

import (
	"context"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parkd/parkd/intake"
	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/metrics"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

var (
	_ worker.Observer = (*metrics.Metrics)(nil)
	_ intake.Observer = (*metrics.Metrics)(nil)
)

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

func TestWorkerObservations(t *testing.T) {
	m := metrics.New()
	m.RequestDone(jobs.TypeSessionStart, worker.OutcomeApplied, "", 12*time.Millisecond)
	m.RequestDone(jobs.TypeSessionStart, worker.OutcomeApplied, "", 30*time.Millisecond)
	m.RequestDone(jobs.TypeSessionStart, worker.OutcomeRejected, "insufficient_balance", 5*time.Millisecond)
	m.RequestDone(jobs.TypeSessionStart, worker.OutcomeDuplicate, "", time.Millisecond)
	m.SessionSettled(worker.SettledStop, 0)
	m.SessionSettled(worker.SettledAutoStop, 300*time.Millisecond)
	m.SessionSettled(worker.SettledAutoStop, -400*time.Millisecond) // ran a moment early: on time
	m.SessionSettled(worker.SettledReconciled, 70*time.Second)
	m.Reconciled(3, 0)
	m.Reconciled(1, 40)
	m.OutboxRelayed(2)

	want := `
# HELP parkd_requests_total Requests the worker finished, by task type and outcome (applied, rejected, duplicate, conflict); code is the rule of a rejection (or idempotency_conflict).
# TYPE parkd_requests_total counter
parkd_requests_total{code="",outcome="applied",type="session:start"} 2
parkd_requests_total{code="",outcome="duplicate",type="session:start"} 1
parkd_requests_total{code="insufficient_balance",outcome="rejected",type="session:start"} 1
# HELP parkd_sessions_settled_total Sessions settled, by how: stopped, cancelled, autostopped, reconciled, permit_end.
# TYPE parkd_sessions_settled_total counter
parkd_sessions_settled_total{how="autostopped"} 2
parkd_sessions_settled_total{how="cancelled"} 0
parkd_sessions_settled_total{how="permit_end"} 0
parkd_sessions_settled_total{how="reconciled"} 1
parkd_sessions_settled_total{how="stopped"} 1
# HELP parkd_reconciler_repairs_total What the reconciler repaired: settled (sessions overdue) or requeued (auto-stops queued again after Redis lost its data).
# TYPE parkd_reconciler_repairs_total counter
parkd_reconciler_repairs_total{kind="requeued"} 40
parkd_reconciler_repairs_total{kind="settled"} 4
# HELP parkd_outbox_relayed_total Outbox tasks the relay handed to Redis because the hand-over right after commit did not.
# TYPE parkd_outbox_relayed_total counter
parkd_outbox_relayed_total 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "parkd_requests_total",
		"parkd_sessions_settled_total", "parkd_reconciler_repairs_total", "parkd_outbox_relayed_total"); err != nil {
		t.Error(err)
	}
	body := scrape(t, m.Handler())
	for _, line := range []string{
		`parkd_autostop_lateness_seconds_bucket{le="0.1"} 1`, // the early one, as 0
		`parkd_autostop_lateness_seconds_bucket{le="0.5"} 2`,
		`parkd_autostop_lateness_seconds_bucket{le="60"} 2`,
		`parkd_autostop_lateness_seconds_bucket{le="90"} 3`,
		`parkd_autostop_lateness_seconds_count 3`,
		`parkd_settlement_duration_seconds_count{type="session:start"} 3`, // duplicates decide nothing
		`parkd_settlement_duration_seconds_bucket{type="session:start",le="0.01"} 1`,
		"go_goroutines ", "process_cpu_seconds_total ",
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// Each Metrics has its own registry: two in one process do not collide, and
// neither touches Prometheus' global one.
func TestMetricsAreIndependent(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.OutboxRelayed(5)
	if got := value(t, a, "parkd_outbox_relayed_total"); got != 5 {
		t.Errorf("a: %v", got)
	}
	if got := value(t, b, "parkd_outbox_relayed_total"); got != 0 {
		t.Errorf("b: %v", got)
	}
	if n, err := testutil.GatherAndCount(prometheus.DefaultGatherer, "parkd_outbox_relayed_total"); err != nil || n != 0 {
		t.Errorf("the global registry has parkd's metrics: %d %v", n, err)
	}
}

// The HTTP intake's latency by route: the mux pattern, never the raw path.
func TestHTTPLatencyByRoute(t *testing.T) {
	m := metrics.New()
	s := &intake.Server{Secret: []byte("k"), Log: nil, Observer: m, Metrics: m.Handler(), RateLimit: -1}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	for _, p := range []string{"/v1/sessions/1", "/v1/sessions/2", "/v1/sessions/3", "/nope/4"} {
		res, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	res, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	body := string(b)
	for _, line := range []string{
		`parkd_http_request_duration_seconds_count{code="401",method="GET",route="/v1/sessions/{session_id}"} 3`,
		`parkd_http_request_duration_seconds_count{code="404",method="GET",route="unmatched"} 1`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(body, `/v1/sessions/1"`) || strings.Contains(body, "/nope") {
		t.Error("a raw path became a label")
	}
}

// The outbox backlog is counted in Postgres at each scrape; when Postgres does
// not answer it is NaN and the rest of the scrape is served.
func TestOutboxBacklogGauge(t *testing.T) {
	store, _ := repotest.NewDB(t)
	m := metrics.New()
	m.WatchOutbox(store)
	if v := value(t, m, "parkd_outbox_backlog"); v != 0 {
		t.Fatalf("empty outbox: %v", v)
	}
	ctx := context.Background()
	if err := repo.AddOutbox(ctx, store.DB, &repo.OutboxTask{TaskType: jobs.TypeSessionAutoStop, TaskID: "autostop:1:1", Queue: jobs.QueueCritical,
		Payload: []byte(`{"session_id":"1"}`), ProcessAt: time.Now()},
		&repo.OutboxTask{TaskType: jobs.TypeSessionAutoStop, TaskID: "autostop:2:1", Queue: jobs.QueueCritical,
			Payload: []byte(`{"session_id":"2"}`), ProcessAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if v := value(t, m, "parkd_outbox_backlog"); v != 2 {
		t.Fatalf("two rows: %v", v)
	}
	store.Close()
	if v := value(t, m, "parkd_outbox_backlog"); !math.IsNaN(v) {
		t.Fatalf("Postgres gone: %v, want NaN", v)
	}
	if body := scrape(t, m.Handler()); !strings.Contains(body, "go_goroutines") {
		t.Fatal("the scrape failed with Postgres")
	}
}

// The pending requests are counted, and the oldest aged, in Postgres at each
// scrape: a request whose task nothing will run shows as a growing age; when
// Postgres does not answer both are NaN.
func TestPendingRequestGauges(t *testing.T) {
	store, _ := repotest.NewDB(t)
	m := metrics.New()
	m.WatchRequests(store)
	if n, age := value(t, m, "parkd_requests_pending"), value(t, m, "parkd_requests_pending_oldest_age_seconds"); n != 0 || age != 0 {
		t.Fatalf("none pending: %v, oldest %v", n, age)
	}
	ctx := context.Background()
	for _, q := range []string{
		"INSERT INTO requests (request_id, type, body_hash, status, created_at) VALUES ('stuck', 'session:start', 'h', 'pending', now() - interval '10 minutes')",
		"INSERT INTO requests (request_id, type, body_hash, status) VALUES ('fresh', 'session:stop', 'h', 'pending')",
		"INSERT INTO requests (request_id, type, body_hash, status, result, created_at) VALUES ('done', 'session:stop', 'h', 'applied', '{}', now() - interval '1 day')",
	} {
		if _, err := store.DB.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if n := value(t, m, "parkd_requests_pending"); n != 2 {
		t.Fatalf("pending: %v, want 2", n)
	}
	if age := value(t, m, "parkd_requests_pending_oldest_age_seconds"); age < 600 || age > 660 {
		t.Fatalf("oldest pending: %vs, want about 600", age)
	}
	store.Close()
	if n, age := value(t, m, "parkd_requests_pending"), value(t, m, "parkd_requests_pending_oldest_age_seconds"); !math.IsNaN(n) || !math.IsNaN(age) {
		t.Fatalf("Postgres gone: %v, %v; want NaN", n, age)
	}
}

// asynq's queue metrics, from Redis.
func TestQueueMetrics(t *testing.T) {
	rdb, idx := repotest.NewRedis(t)
	opt := asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx}
	c := asynq.NewClient(opt)
	defer c.Close()
	for _, id := range []string{"q1", "q2", "q3"} {
		if _, err := c.Enqueue(asynq.NewTask("session:start", nil), asynq.Queue(jobs.QueueCritical), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
	}
	m := metrics.New()
	m.WatchQueues(asynq.NewInspectorFromRedisClient(rdb))
	body := scrape(t, m.Handler())
	for _, line := range []string{
		`asynq_queue_size{queue="critical"} 3`,
		`asynq_tasks_enqueued_total{queue="critical",state="pending"} 3`,
		`asynq_queue_latency_seconds{queue="critical"}`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q:\n%s", line, body)
		}
	}
}

// value is the first sample of a counter or gauge.
func value(t *testing.T, m *metrics.Metrics, name string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if c := mf.GetMetric()[0].GetCounter(); c != nil {
				return c.GetValue()
			}
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("%s not gathered", name)
	return 0
}

// Registrations by outcome, every outcome from the first scrape, and the lag
// of the acknowledgements that moved a right forward.
func TestRegistrationObservations(t *testing.T) {
	m := metrics.New()
	m.RightRegistered(worker.RegisterAcknowledged, 300*time.Millisecond)
	m.RightRegistered(worker.RegisterAcknowledged, 0) // acknowledged again: no lag
	m.RightRegistered(worker.RegisterSuperseded, 4*time.Second)
	m.RightRegistered(worker.RegisterRetried, 0)
	m.RightRegistered(worker.RegisterRetried, 0)
	want := `
# HELP parkd_registrations_total right:register tasks by outcome: acknowledged (2xx), superseded (409: the registrar holds a newer version), rejected (refused for good), retried (5xx, 429, timeout, unreachable), skipped (a newer version queued, or already answered).
# TYPE parkd_registrations_total counter
parkd_registrations_total{outcome="acknowledged"} 2
parkd_registrations_total{outcome="rejected"} 0
parkd_registrations_total{outcome="retried"} 2
parkd_registrations_total{outcome="skipped"} 0
parkd_registrations_total{outcome="superseded"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "parkd_registrations_total"); err != nil {
		t.Error(err)
	}
	body := scrape(t, m.Handler())
	for _, line := range []string{
		`parkd_registration_lag_seconds_bucket{le="0.25"} 0`,
		`parkd_registration_lag_seconds_bucket{le="0.5"} 1`,
		`parkd_registration_lag_seconds_bucket{le="5"} 2`,
		`parkd_registration_lag_seconds_count 2`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
}

// The pending-rights gauges read Postgres at each scrape: 0 and 0 with none
// pending, NaN once Postgres is gone.
func TestPendingRightsGauges(t *testing.T) {
	store, _ := repotest.NewDB(t)
	m := metrics.New()
	m.WatchRights(store)
	if n, age := value(t, m, "parkd_rights_pending"), value(t, m, "parkd_rights_pending_oldest_age_seconds"); n != 0 || age != 0 {
		t.Fatalf("none pending: %v, oldest %v", n, age)
	}
	store.Close()
	if n, age := value(t, m, "parkd_rights_pending"), value(t, m, "parkd_rights_pending_oldest_age_seconds"); !math.IsNaN(n) || !math.IsNaN(age) {
		t.Fatalf("Postgres gone: %v, %v; want NaN", n, age)
	}
}
