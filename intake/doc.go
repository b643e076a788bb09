// Package intake is parkd's HTTP front door: it validates requests, enqueues them
// through package jobs, waits briefly for their outcome, and answers reads and
// enforcement questions straight from Postgres.
//
// Server.Handler serves the API of README "The HTTP API" (described for machines
// in openapi.yaml, served at /v1/openapi.yaml). Bearer tokens, verified by package
// identity, carry the caller's role; a resident reaches only the permits it holds
// by parkd's own records (reach: the one check of it). Writes are registered as
// pending requests, enqueued under their request ID and awaited through a
// repo.Listener on Postgres LISTEN/NOTIFY; every error becomes an answer in one
// place (writeError).
//
// Every port parkd listens on also serves /healthz, /readyz and /metrics,
// unless they are apart (PARKD_METRICS_ADDR: Server.OpsApart, served by
// MetricsHandler), and may carry the operators' Console (package console)
// under its root; OpsHandler is such a port without the API (`parkd
// monitor`). Each request is labelled with its route, the mux pattern, for
// the logs and for an Observer (package metrics).
package intake
