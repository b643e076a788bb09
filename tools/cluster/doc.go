// Package cluster runs parkd as child processes of the lab, from a parkd
// binary built on its own: one `parkd serve`, or the production topology of
// intakes, workers and schedulers, each on a port of its own, which a driver
// can kill and restart by role and index.
package cluster
