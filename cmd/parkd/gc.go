package main

import (
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
)

// The garbage collector's defaults (issue 16). Go's default (GOGC=100)
// collects whenever the heap doubles: under load that was a tenth of parkd's
// CPU, for a heap of a few tens of MiB. At 400 the same load cost parkd 10 %
// less CPU a start+stop pair (docs/BENCHMARKS.md, issue 16, sixth session),
// and `parkd serve`'s peak RSS rose from 63 to 111 MiB. The soft memory
// limit keeps the heap under 128 MiB however the load grows: near it, the
// collector runs as often as it must, so the process stays within the
// 150 MB it is held to (docs/BENCHMARKS.md). An operator who sets GOGC or
// GOMEMLIMIT has chosen how this process collects: parkd then sets neither.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 128 << 20 // bytes
)

// gcDefaults is what parkd sets of the collector given the environment: the
// GC percent and the memory limit in bytes, or ok false when GOGC or
// GOMEMLIMIT is set and parkd leaves the collector as the operator set it.
// A GOGC Go would not read (neither "off" nor a whole number) is an error
// naming it: Go itself would quietly collect at its own default instead.
func gcDefaults(getenv func(string) string) (percent int, limit int64, ok bool, err error) {
	gogc, memlimit := getenv("GOGC"), getenv("GOMEMLIMIT")
	if gogc != "" && gogc != "off" {
		if _, perr := strconv.Atoi(gogc); perr != nil {
			return 0, 0, false, fmt.Errorf("GOGC=%q: want off or a whole number (a percent, such as 100)", gogc)
		}
	}
	if gogc != "" || memlimit != "" {
		return 0, 0, false, nil
	}
	return defaultGCPercent, defaultMemoryLimit, true, nil
}

// setGCDefaults applies gcDefaults to this process.
func setGCDefaults() error {
	percent, limit, ok, err := gcDefaults(os.Getenv)
	if err != nil || !ok {
		return err
	}
	debug.SetGCPercent(percent)
	debug.SetMemoryLimit(limit)
	return nil
}
