// Package chaos is `parkdlab chaos`: parkd's split topology on a private
// Postgres and Redis (see package faults) under a closed-loop load that
// behaves as a correct upstream app must (every write under an
// Idempotency-Key, sent again until definitively answered). Run goes through
// named phases: a directory, the servers, parkd, the municipality, the load
// with each fault injected in turn (and parkd's recovery and audit after
// each), then the verdict that holds the database to every answer the client
// was given, parkd's stop, and the report.
//
// Options.Topology chooses parkd's Redis: one private server
// (TopologySingle), or a primary, its replica and three Sentinels
// (TopologySentinel, faults.Sentinel), whose redis-sentinel:// URL parkd is
// given. FaultRedisFailover SIGKILLs the primary; the run reports the time
// from the kill to the Sentinels' promotion and to a probe start+stop
// answered through the API, then starts the killed node again as the new
// primary's replica. With Options.Intakes above one the load takes the
// intakes in turn, request by request, as a load balancer would.
package chaos
