package metrics

import (
	"context"
	"math"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parkd/parkd/repo"
)

// WatchEvents adds the gauges of events and webhooks, read from Postgres at
// each scrape: parkd_events_unsequenced, and for each active webhook
// parkd_webhook_undelivered and parkd_webhook_oldest_undelivered_age_seconds.
// Register it where WatchOutbox is.
func (m *Metrics) WatchEvents(store *repo.Store) {
	m.reg.MustRegister(&eventsCollector{store: store})
}

var (
	unsequencedDesc = prometheus.NewDesc("parkd_events_unsequenced",
		"Events committed and not yet numbered by a sequencer (a moment's worth is normal; a growing number means no worker runs one); NaN when Postgres did not answer.", nil, nil)
	undeliveredDesc = prometheus.NewDesc("parkd_webhook_undelivered",
		"Deliveries an active webhook is owed and has not had: pending (being tried) or failed (archived after their last retry).", []string{"webhook"}, nil)
	oldestUndeliveredDesc = prometheus.NewDesc("parkd_webhook_oldest_undelivered_age_seconds",
		"Age of the oldest event an active webhook is owed and has not had (0 when none): how far behind its receiver is.", []string{"webhook"}, nil)
)

// eventsCollector reads the gauges with two indexed queries per scrape.
type eventsCollector struct{ store *repo.Store }

func (c *eventsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- unsequencedDesc
	ch <- undeliveredDesc
	ch <- oldestUndeliveredDesc
}

func (c *eventsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), BacklogTimeout)
	defer cancel()
	n := math.NaN()
	if v, err := repo.UnsequencedEvents(ctx, c.store.DB); err == nil {
		n = float64(v)
	}
	ch <- prometheus.MustNewConstMetric(unsequencedDesc, prometheus.GaugeValue, n)
	backlogs, err := repo.WebhookBacklogs(ctx, c.store.DB)
	if err != nil {
		return // which webhooks there are is in Postgres too: the NaN above says it did not answer
	}
	for _, b := range backlogs {
		ch <- prometheus.MustNewConstMetric(undeliveredDesc, prometheus.GaugeValue, float64(b.Undelivered), b.Webhook)
		ch <- prometheus.MustNewConstMetric(oldestUndeliveredDesc, prometheus.GaugeValue, b.OldestSeconds, b.Webhook)
	}
}
