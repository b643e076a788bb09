package metrics_test

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/metrics"
	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/repo/repotest"
	"github.com/parkd/parkd/worker"
)

var _ worker.DeliveryObserver = (*metrics.Metrics)(nil)

func TestWebhookDeliveriesByOutcome(t *testing.T) {
	m := metrics.New()
	for _, o := range []string{worker.DeliveryRetried, worker.DeliveryRetried, worker.DeliveryDelivered} {
		m.WebhookDelivery("app", o)
	}
	m.WebhookDelivery("old", worker.DeliveryDropped)
	m.WebhookDelivery("dead", worker.DeliveryFailed)
	want := `
# HELP parkd_webhook_deliveries_total Webhook delivery attempts by webhook and outcome: delivered (2xx), retried (failed; the task retries), failed (the last retry failed: archived), dropped (webhook deleted or inactive).
# TYPE parkd_webhook_deliveries_total counter
parkd_webhook_deliveries_total{outcome="delivered",webhook="app"} 1
parkd_webhook_deliveries_total{outcome="failed",webhook="dead"} 1
parkd_webhook_deliveries_total{outcome="dropped",webhook="old"} 1
parkd_webhook_deliveries_total{outcome="retried",webhook="app"} 2
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "parkd_webhook_deliveries_total"); err != nil {
		t.Error(err)
	}
}

// The unnumbered events, and each active webhook's undelivered events and
// the age of its oldest, are read from Postgres at each scrape.
func TestEventAndWebhookGauges(t *testing.T) {
	store, _ := repotest.NewDB(t)
	ctx := context.Background()
	m := metrics.New()
	m.WatchEvents(store)
	if v := value(t, m, "parkd_events_unsequenced"); v != 0 {
		t.Fatalf("no events: %v unnumbered", v)
	}
	for _, w := range []*repo.Webhook{
		{Name: "behind", URL: "http://a.example/", Secret: "s", Active: true},
		{Name: "current", URL: "http://b.example/", Secret: "s", Types: []string{jobs.EventPermitEnded}, Active: true},
		{Name: "paused", URL: "http://c.example/", Secret: "s", Active: true},
	} {
		if _, err := repo.PutWebhook(ctx, store.DB, w); err != nil {
			t.Fatal(err)
		}
	}
	ev := func() *repo.Event {
		return &repo.Event{Type: jobs.EventSessionStarted, OccurredAt: time.Now(), Data: json.RawMessage(`{}`)}
	}
	if err := repo.AddEvents(ctx, store.DB, ev(), ev(), ev()); err != nil {
		t.Fatal(err)
	}
	if v := value(t, m, "parkd_events_unsequenced"); v != 3 {
		t.Fatalf("unnumbered: %v, want 3", v)
	}
	if _, _, err := repo.SequenceEvents(ctx, store.DB, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.PutWebhook(ctx, store.DB, &repo.Webhook{Name: "paused", URL: "http://c.example/", Secret: "s", Active: false}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.DB.ExecContext(ctx, "UPDATE webhook_deliveries SET created_at = now() - interval '10 minutes' WHERE webhook = 'behind' AND event_id = (SELECT id FROM events WHERE sequence = 1)"); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, m.Handler())
	for _, line := range []string{
		"parkd_events_unsequenced 0",
		`parkd_webhook_undelivered{webhook="behind"} 3`,
		`parkd_webhook_undelivered{webhook="current"} 0`,
		`parkd_webhook_oldest_undelivered_age_seconds{webhook="current"} 0`,
	} {
		if !strings.Contains(body, line) {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if strings.Contains(body, `webhook="paused"`) {
		t.Error("an inactive webhook has gauges")
	}
	if age := labelled(t, m, "parkd_webhook_oldest_undelivered_age_seconds", "behind"); age < 600 || age > 660 {
		t.Fatalf("oldest undelivered of behind: %vs, want about 600", age)
	}
	store.Close()
	if v := value(t, m, "parkd_events_unsequenced"); !math.IsNaN(v) {
		t.Fatalf("Postgres gone: %v, want NaN", v)
	}
}

// Every queue of jobs.AllQueues has its series from the first scrape, before
// any task was ever queued in it, so that an alert on the webhooks or the
// registrar queue has a series to watch.
func TestQueueMetricsHaveEveryQueueFromTheFirstScrape(t *testing.T) {
	rdb, idx := repotest.NewRedis(t)
	c := asynq.NewClient(asynq.RedisClientOpt{Addr: repotest.RedisAddr(), DB: idx})
	defer c.Close()
	if _, err := c.Enqueue(asynq.NewTask("custom", nil), asynq.Queue("custom")); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	m.WatchQueues(asynq.NewInspectorFromRedisClient(rdb))
	body := scrape(t, m.Handler())
	for _, q := range append(jobs.AllQueues(), "custom") {
		for _, line := range []string{
			`asynq_queue_latency_seconds{queue="` + q + `"}`,
			`asynq_tasks_enqueued_total{queue="` + q + `",state="retry"}`,
			`asynq_queue_size{queue="` + q + `"}`,
		} {
			if !strings.Contains(body, line) {
				t.Errorf("/metrics lacks %q", line)
			}
		}
	}
	if !strings.Contains(body, `asynq_queue_size{queue="webhooks"} 0`) || !strings.Contains(body, `asynq_queue_size{queue="custom"} 1`) {
		t.Errorf("queue sizes:\n%s", body)
	}
}

// labelled is the value of a gauge's series whose one label is value.
func labelled(t *testing.T, m *metrics.Metrics, name, value string) float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, s := range mf.GetMetric() {
			if s.GetLabel()[0].GetValue() == value {
				return s.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("%s{%s} not gathered", name, value)
	return 0
}
