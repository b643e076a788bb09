// Package bench is `parkdlab bench`: a load generator that drives parkd through
// its real HTTP API and reports the figures the project is judged by, measured
// the same way every time: start+stop pairs per second against the machine's
// pgbench TPC-B rate, start latency at half the maximum rate and on an idle
// system, auto-stop lateness, rights-check latency at a fixed rate, and the
// memory of the parkd processes over the run.
//
// It runs self-contained (a fresh database, a flushed Redis index and parkd
// child processes it starts and stops, see package cluster) or against a parkd that is
// already running (Options.Target). Closed-loop phases measure the maximum
// rate; open-loop phases send at a fixed rate and time every request from the
// instant it was due, not the instant it was sent, so that a stalled server
// cannot hide its stall by slowing the load down (coordinated omission).
package bench
