package metrics

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parkd/parkd/repo"
	"github.com/parkd/parkd/worker"
)

// BacklogTimeout bounds the outbox count at each scrape: a slow Postgres makes
// the gauge NaN, never the scrape hang.
const BacklogTimeout = time.Second

// Metrics is one process's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg        *prometheus.Registry
	requests   *prometheus.CounterVec
	settlement *prometheus.HistogramVec
	settled    *prometheus.CounterVec
	lateness   prometheus.Histogram
	repairs    *prometheus.CounterVec
	relayed    prometheus.Counter
	http       *prometheus.HistogramVec
	deliveries *prometheus.CounterVec
}

// New builds a Metrics on a registry of its own, with the Go and process
// collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parkd_requests_total",
			Help: "Requests the worker finished, by task type and outcome (applied, rejected, duplicate, conflict); code is the rule of a rejection (or idempotency_conflict).",
		}, []string{"type", "outcome", "code"}),
		settlement: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "parkd_settlement_duration_seconds",
			Help:    "Time of the Postgres transaction that decided a request, by task type.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parkd_sessions_settled_total",
			Help: "Sessions settled, by how: stopped, cancelled, autostopped, reconciled, permit_end.",
		}, []string{"how"}),
		lateness: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parkd_autostop_lateness_seconds",
			Help: "Planned end to settlement of sessions settled at their planned end (auto-stop task or reconciler); early ones count as 0.",
			// A healthy auto-stop is within a second; the reconciler's catch-up is 15-75 s.
			Buckets: []float64{.1, .25, .5, 1, 2, 5, 10, 20, 30, 60, 90, 120},
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parkd_reconciler_repairs_total",
			Help: "What the reconciler repaired: settled (sessions overdue) or requeued (auto-stops queued again after Redis lost its data).",
		}, []string{"kind"}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "parkd_outbox_relayed_total",
			Help: "Outbox tasks the relay handed to Redis because the hand-over right after commit did not.",
		}),
		http: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "parkd_http_request_duration_seconds",
			Help: "HTTP requests by route (the mux pattern, never the raw path), method and status code.",
			// Writes wait up to ?wait= (10 s at most) for their outcome.
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15},
		}, []string{"route", "method", "code"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parkd_webhook_deliveries_total",
			Help: "Webhook delivery attempts by webhook and outcome: delivered (2xx), retried (failed; the task retries), failed (the last retry failed: archived), dropped (webhook deleted or inactive).",
		}, []string{"webhook", "outcome"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.settlement, m.settled, m.lateness, m.repairs, m.relayed, m.http, m.deliveries,
	)
	// Known label values start at zero, so that rate() and absent() work from the
	// first scrape rather than from the first event.
	for _, how := range []string{worker.SettledStop, worker.SettledCancel, worker.SettledAutoStop,
		worker.SettledReconciled, worker.SettledPermitEnd} {
		m.settled.WithLabelValues(how)
	}
	m.repairs.WithLabelValues("settled")
	m.repairs.WithLabelValues("requeued")
	return m
}

// Registry is where the metrics are registered; add a process's own collectors
// to it.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in Prometheus' exposition format. A collector
// that fails leaves its metrics out of that scrape; the rest is served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	})
}

// WatchOutbox adds parkd_outbox_backlog, counted in Postgres at each scrape.
// Register it in one role per process (the worker and the monitor do).
func (m *Metrics) WatchOutbox(store *repo.Store) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "parkd_outbox_backlog",
		Help: "Outbox rows (auto-stops) committed but not yet handed to Redis; NaN when Postgres did not answer.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), BacklogTimeout)
		defer cancel()
		n, err := repo.OutboxBacklog(ctx, store.DB)
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	}))
}

// WatchRequests adds parkd_requests_pending and
// parkd_requests_pending_oldest_age_seconds, read from Postgres at each scrape
// (one indexed query for both). Register it where WatchOutbox is.
func (m *Metrics) WatchRequests(store *repo.Store) {
	m.reg.MustRegister(&pendingCollector{store: store})
}

var (
	pendingDesc = prometheus.NewDesc("parkd_requests_pending",
		"Requests accepted whose outcome is not recorded yet; NaN when Postgres did not answer.", nil, nil)
	pendingAgeDesc = prometheus.NewDesc("parkd_requests_pending_oldest_age_seconds",
		"Age of the oldest pending request (0 when none is): minutes mean a request that nothing will run, or an outage; NaN when Postgres did not answer.", nil, nil)
)

// pendingCollector reads both pending gauges with one query per scrape.
type pendingCollector struct{ store *repo.Store }

func (c *pendingCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pendingDesc
	ch <- pendingAgeDesc
}

func (c *pendingCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), BacklogTimeout)
	defer cancel()
	n, age := math.NaN(), math.NaN()
	if st, err := repo.PendingRequests(ctx, c.store.DB); err == nil {
		n, age = float64(st.Count), st.Oldest.Seconds()
	}
	ch <- prometheus.MustNewConstMetric(pendingDesc, prometheus.GaugeValue, n)
	ch <- prometheus.MustNewConstMetric(pendingAgeDesc, prometheus.GaugeValue, age)
}

// WatchQueues adds asynq's queue metrics (asynq_queue_size,
// asynq_queue_latency_seconds, asynq_tasks_enqueued_total{state}, ...), read
// from Redis at each scrape, for every queue of jobs.AllQueues from the first
// scrape (queues.go). They describe the whole system, not this process:
// export them from one role (the monitor) to keep sums over instances right.
func (m *Metrics) WatchQueues(inspector *asynq.Inspector) {
	m.reg.MustRegister(&queueCollector{inspector: inspector})
}

// RequestDone implements worker.Observer.
func (m *Metrics) RequestDone(typ, outcome, code string, took time.Duration) {
	m.requests.WithLabelValues(typ, outcome, code).Inc()
	if outcome == worker.OutcomeApplied || outcome == worker.OutcomeRejected {
		m.settlement.WithLabelValues(typ).Observe(took.Seconds())
	}
}

// SessionSettled implements worker.Observer. Lateness counts for sessions
// settled at their planned end by the system (auto-stop or reconciler); an
// auto-stop that ran a moment early counts as on time.
func (m *Metrics) SessionSettled(how string, lateness time.Duration) {
	m.settled.WithLabelValues(how).Inc()
	if how == worker.SettledAutoStop || how == worker.SettledReconciled {
		m.lateness.Observe(max(lateness, 0).Seconds())
	}
}

// Reconciled implements worker.Observer.
func (m *Metrics) Reconciled(settled, requeued int) {
	m.repairs.WithLabelValues("settled").Add(float64(settled))
	m.repairs.WithLabelValues("requeued").Add(float64(requeued))
}

// OutboxRelayed implements worker.Observer.
func (m *Metrics) OutboxRelayed(n int) { m.relayed.Add(float64(n)) }

// WebhookDelivery implements worker.DeliveryObserver.
func (m *Metrics) WebhookDelivery(webhook, outcome string) {
	m.deliveries.WithLabelValues(webhook, outcome).Inc()
}

// HTTPDone implements intake.Observer.
func (m *Metrics) HTTPDone(route, method string, status int, took time.Duration) {
	m.http.WithLabelValues(route, method, strconv.Itoa(status)).Observe(took.Seconds())
}
