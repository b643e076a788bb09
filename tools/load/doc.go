// Package load is what the lab's loads are made of, shared by bench and
// chaos: a thin client of parkd's HTTP API, a municipality set up through it
// (zone, residents, permits, tokens), virtual users with their own permits,
// plates that never repeat, latency distributions, and reads of what a run
// left in Redis and Postgres (the latter through repo, parkd's only door to
// SQL).
package load
