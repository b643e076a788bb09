package metrics

import (
	"slices"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parkd/parkd/jobs"
)

// asynq's queue metrics, under the names and labels of asynq's own collector
// (github.com/hibiken/asynq/x/metrics), which lists only the queues Redis has
// seen a task in: a queue that has never had one (the webhooks queue before
// the first webhook, the registrar's without a registrar) would have no
// series, and an alert on it none to fire on. This one reports every queue of
// jobs.AllQueues from the first scrape, at zero until it has tasks, and any
// other queue Redis knows.
var (
	queueTasksDesc = prometheus.NewDesc("asynq_tasks_enqueued_total",
		"Number of tasks enqueued; broken down by queue and state.", []string{"queue", "state"}, nil)
	queueSizeDesc = prometheus.NewDesc("asynq_queue_size",
		"Number of tasks in a queue", []string{"queue"}, nil)
	queueLatencyDesc = prometheus.NewDesc("asynq_queue_latency_seconds",
		"Number of seconds the oldest pending task is waiting in pending state to be processed.", []string{"queue"}, nil)
	queueMemoryDesc = prometheus.NewDesc("asynq_queue_memory_usage_approx_bytes",
		"Number of memory used by a given queue (approximated number by sampling).", []string{"queue"}, nil)
	queueProcessedDesc = prometheus.NewDesc("asynq_tasks_processed_total",
		"Number of tasks processed (both succeeded and failed); broken down by queue", []string{"queue"}, nil)
	queueFailedDesc = prometheus.NewDesc("asynq_tasks_failed_total",
		"Number of tasks failed; broken down by queue", []string{"queue"}, nil)
	queuePausedDesc = prometheus.NewDesc("asynq_queue_paused_total",
		"Number of queues paused", []string{"queue"}, nil)
)

// queueCollector reads every queue's info from Redis at each scrape.
type queueCollector struct{ inspector *asynq.Inspector }

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{queueTasksDesc, queueSizeDesc, queueLatencyDesc, queueMemoryDesc,
		queueProcessedDesc, queueFailedDesc, queuePausedDesc} {
		ch <- d
	}
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	known, err := c.inspector.Queues()
	if err != nil {
		// Redis away: no series this scrape (asynq's collector does the same),
		// which ParkdTargetDown-style absence alerts see.
		ch <- prometheus.NewInvalidMetric(queueSizeDesc, err)
		return
	}
	names := jobs.AllQueues()
	for _, q := range known {
		if !slices.Contains(names, q) {
			names = append(names, q)
		}
	}
	for _, q := range names {
		info := &asynq.QueueInfo{Queue: q} // a queue that never had a task: all zero
		if slices.Contains(known, q) {
			if info, err = c.inspector.GetQueueInfo(q); err != nil {
				ch <- prometheus.NewInvalidMetric(queueSizeDesc, err)
				return
			}
		}
		gauge := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{q}, labels...)...)
		}
		gauge(queueTasksDesc, float64(info.Active), "active")
		gauge(queueTasksDesc, float64(info.Pending), "pending")
		gauge(queueTasksDesc, float64(info.Scheduled), "scheduled")
		gauge(queueTasksDesc, float64(info.Retry), "retry")
		gauge(queueTasksDesc, float64(info.Archived), "archived")
		gauge(queueTasksDesc, float64(info.Completed), "completed")
		gauge(queueSizeDesc, float64(info.Size))
		gauge(queueLatencyDesc, info.Latency.Seconds())
		gauge(queueMemoryDesc, float64(info.MemoryUsage))
		ch <- prometheus.MustNewConstMetric(queueProcessedDesc, prometheus.CounterValue, float64(info.ProcessedTotal), q)
		ch <- prometheus.MustNewConstMetric(queueFailedDesc, prometheus.CounterValue, float64(info.FailedTotal), q)
		paused := 0.0
		if info.Paused {
			paused = 1
		}
		gauge(queuePausedDesc, paused)
	}
}
