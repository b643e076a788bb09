package main

import (
	"os"
	"runtime/debug"
)

// The garbage collector's defaults (issue 16). Go's default (GOGC=100)
// collects whenever the heap doubles: under load that was a tenth of parkd's
// CPU, for a heap of a few tens of MiB. At 400 the same load cost parkd 10 %
// less CPU a start+stop pair (docs/BENCHMARKS.md, issue 16, sixth session),
// and `parkd serve`'s peak RSS rose from 63 to 111 MiB. The soft memory
// limit keeps the heap under 128 MiB however the load grows: near it, the
// collector runs as often as it must, so the process stays within the
// 150 MB it is held to (docs/BENCHMARKS.md). GOGC and GOMEMLIMIT, when set,
// are the operator's and win.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 128 << 20 // bytes
)

// gcDefaults is what parkd sets of the collector given the environment:
// the GC percent and the memory limit in bytes, each -1 where the
// environment sets it (GOGC, GOMEMLIMIT) and parkd leaves it alone.
func gcDefaults(getenv func(string) string) (percent int, limit int64) {
	percent, limit = defaultGCPercent, defaultMemoryLimit
	if getenv("GOGC") != "" {
		percent = -1
	}
	if getenv("GOMEMLIMIT") != "" {
		limit = -1
	}
	return percent, limit
}

// setGCDefaults applies gcDefaults to this process.
func setGCDefaults() {
	percent, limit := gcDefaults(os.Getenv)
	if percent >= 0 {
		debug.SetGCPercent(percent)
	}
	if limit >= 0 {
		debug.SetMemoryLimit(limit)
	}
}
