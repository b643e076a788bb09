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
	registered *prometheus.CounterVec
	regLag     prometheus.Histogram
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
		registered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "parkd_registrations_total",
			Help: "right:register tasks by outcome: acknowledged (2xx), superseded (409: the registrar holds a newer version), rejected (refused for good), retried (5xx, 429, timeout, unreachable), skipped (a newer version queued, or already answered).",
		}, []string{"outcome"}),
		regLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "parkd_registration_lag_seconds",
			Help: "From the change of a session that made a right version to the registrar's acknowledgement of it (goal: p99 within 5 s).",
			// First try within milliseconds; retries after 1-2 s, 2-4 s, 4-8 s ...
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 3, 5, 10, 30, 60, 300},
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.requests, m.settlement, m.settled, m.lateness, m.repairs, m.relayed, m.http, m.deliveries,
		m.registered, m.regLag,
	)
	// Known label values start at zero, so that rate() and absent() work from the
	// first scrape rather than from the first event.
	for _, how := range []string{worker.SettledStop, worker.SettledCancel, worker.SettledAutoStop,
		worker.SettledReconciled, worker.SettledPermitEnd} {
		m.settled.WithLabelValues(how)
	}
	m.repairs.WithLabelValues("settled")
	m.repairs.WithLabelValues("requeued")
	for _, o := range []string{worker.RegisterAcknowledged, worker.RegisterSuperseded, worker.RegisterRejected,
		worker.RegisterRetried, worker.RegisterSkipped} {
		m.registered.WithLabelValues(o)
	}
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
	m.reg.MustRegister(&backlogCollector{count: pendingDesc, age: pendingAgeDesc,
		read: func(ctx context.Context) (repo.PendingStats, error) { return repo.PendingRequests(ctx, store.DB) }})
}

var (
	pendingDesc = prometheus.NewDesc("parkd_requests_pending",
		"Requests accepted whose outcome is not recorded yet; NaN when Postgres did not answer.", nil, nil)
	pendingAgeDesc = prometheus.NewDesc("parkd_requests_pending_oldest_age_seconds",
		"Age of the oldest pending request (0 when none is): minutes mean a request that nothing will run, or an outage; NaN when Postgres did not answer.", nil, nil)
)

// backlogCollector reads a count and the oldest's age with one query per
// scrape (pending requests, pending rights).
type backlogCollector struct {
	count, age *prometheus.Desc
	read       func(context.Context) (repo.PendingStats, error)
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.count
	ch <- c.age
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), BacklogTimeout)
	defer cancel()
	n, age := math.NaN(), math.NaN()
	if st, err := c.read(ctx); err == nil {
		n, age = float64(st.Count), st.Oldest.Seconds()
	}
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, n)
	ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age)
}

// WatchRights adds parkd_rights_pending and
// parkd_rights_pending_oldest_age_seconds: sessions' rights the registrar has
// not yet acknowledged nor refused, read from Postgres at each scrape (one
// query over a partial index). Register it where WatchOutbox is.
func (m *Metrics) WatchRights(store *repo.Store) {
	m.reg.MustRegister(&backlogCollector{count: rightsPendingDesc, age: rightsAgeDesc,
		read: func(ctx context.Context) (repo.PendingStats, error) { return repo.RightsBacklog(ctx, store.DB) }})
}

var (
	rightsPendingDesc = prometheus.NewDesc("parkd_rights_pending",
		"Sessions whose newest right version the registrar has neither acknowledged nor refused; NaN when Postgres did not answer.", nil, nil)
	rightsAgeDesc = prometheus.NewDesc("parkd_rights_pending_oldest_age_seconds",
		"Age of the change behind the oldest pending right (0 when none is): minutes mean the registrar is down or no worker registers; NaN when Postgres did not answer.", nil, nil)
)

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

// RightRegistered implements worker.Observer: the lag is observed for the
// acknowledgements that moved a right forward.
func (m *Metrics) RightRegistered(outcome string, lag time.Duration) {
	m.registered.WithLabelValues(outcome).Inc()
	if (outcome == worker.RegisterAcknowledged || outcome == worker.RegisterSuperseded) && lag > 0 {
		m.regLag.Observe(lag.Seconds())
	}
}

// HTTPDone implements intake.Observer.
func (m *Metrics) HTTPDone(route, method string, status int, took time.Duration) {
	m.http.WithLabelValues(route, method, strconv.Itoa(status)).Observe(took.Seconds())
}
