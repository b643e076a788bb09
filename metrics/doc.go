// Package metrics exports parkd's Prometheus metrics: what the worker decided
// (it implements worker.Observer), how the HTTP intake answered (intake.Observer),
// the outbox backlog, the pending requests, and asynq's own queue metrics (its x/metrics collector).
//
// Each Metrics has a registry of its own (with the Go and process collectors),
// never Prometheus' global default, so that a test can build as many as it
// likes and one process serves exactly what its roles produce:
//
//	parkd_requests_total{type,outcome,code}          requests applied, rejected (code = the rule) or found done
//	parkd_settlement_duration_seconds{type}          the transaction of each request
//	parkd_sessions_settled_total{how}                stopped, cancelled, autostopped, reconciled, permit_end
//	parkd_autostop_lateness_seconds                  planned end to settlement, auto-stops and reconciler
//	parkd_reconciler_repairs_total{kind}             settled (overdue) or requeued (Redis lost its data)
//	parkd_outbox_relayed_total                       auto-stops the relay handed to Redis late
//	parkd_outbox_backlog                             outbox rows waiting (read from Postgres at each scrape)
//	parkd_requests_pending                           requests without an outcome yet (read from Postgres at each scrape)
//	parkd_requests_pending_oldest_age_seconds        how long the oldest of them has waited
//	parkd_http_request_duration_seconds{route,method,code}
//	asynq_*                                          queue size, latency, pending, retry, archived, ...
package metrics
