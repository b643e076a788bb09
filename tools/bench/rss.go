package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parkd/parkd/tools/cluster"
)

// procStatus is what is read from /proc/<pid>/status.
type procStatus struct {
	RSSKB int64 // VmRSS: resident now
	HWMKB int64 // VmHWM: the kernel's own peak of VmRSS, which catches spikes between samples
}

// parseStatus reads VmRSS and VmHWM (in kB, as the kernel writes them) from the
// text of /proc/<pid>/status.
func parseStatus(r io.Reader) (procStatus, error) {
	var st procStatus
	var seen int
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return st, fmt.Errorf("proc status: %s: unexpected %q", key, strings.TrimSpace(val))
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return st, fmt.Errorf("proc status: %s: %w", key, err)
		}
		if key == "VmRSS" {
			st.RSSKB = n
		} else {
			st.HWMKB = n
		}
		seen++
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("proc status: %w", err)
	}
	if seen < 2 {
		// A zombie (or a kernel thread) has no Vm lines.
		return st, fmt.Errorf("proc status: no VmRSS/VmHWM (process exiting?)")
	}
	return st, nil
}

func readStatus(pid int) (procStatus, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procStatus{}, err
	}
	return parseStatus(bytes.NewReader(b))
}

// FindParkd lists the processes on this machine whose executable is named
// parkd, except the one with PID exclude (the bench itself). Each is named by
// its subcommand, e.g. "serve".
func FindParkd(exclude int) []cluster.ProcRef {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []cluster.ProcRef
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == exclude {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil || strings.TrimSuffix(filepath.Base(exe), " (deleted)") != "parkd" {
			continue
		}
		out = append(out, cluster.ProcRef{Name: procName(pid), PID: pid})
	}
	return out
}

// procName is a process's parkd subcommand from its command line.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return "parkd"
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(args) > 1 {
		return args[1]
	}
	return "parkd"
}

// RSSSampler samples the memory of a changing set of processes (a restarted
// worker has a new PID) at a fixed interval.
type RSSSampler struct {
	Interval time.Duration
	Procs    func() []cluster.ProcRef

	mu      sync.Mutex
	start   time.Time
	samples int
	procs   map[string]*procRSS // by "name (pid N)"
	peakKB  int64               // the largest sum over one sample
	lastKB  int64
	minutes []MinuteRSS
}

type procRSS struct {
	ref    cluster.ProcRef
	peakKB int64 // largest VmRSS sampled
	hwmKB  int64 // last VmHWM read
	lastKB int64
}

// MinuteRSS is the memory at the end of one minute of the run.
type MinuteRSS struct {
	Minute  int              `json:"minute"`
	TotalKB int64            `json:"total_kb"`
	ByProc  map[string]int64 `json:"by_proc_kb"`
}

// ProcRSSResult is one process's memory over the run.
type ProcRSSResult struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	PeakKB int64  `json:"peak_rss_kb"` // largest VmRSS sampled
	HWMKB  int64  `json:"vm_hwm_kb"`   // the kernel's peak, between samples too
	LastKB int64  `json:"last_rss_kb"`
}

// RSSResult is the memory of the parkd processes over the run.
type RSSResult struct {
	IntervalMS   int64           `json:"interval_ms"`
	Samples      int             `json:"samples"`
	Procs        []ProcRSSResult `json:"procs"`
	PeakTotalKB  int64           `json:"peak_total_kb"` // largest sum of VmRSS in one sample
	LastTotalKB  int64           `json:"last_total_kb"`
	MinuteTotals []MinuteRSS     `json:"minutes"`
}

// Run samples until ctx is done.
func (s *RSSSampler) Run(ctx context.Context) {
	s.mu.Lock()
	s.start = time.Now()
	if s.procs == nil {
		s.procs = map[string]*procRSS{}
	}
	s.mu.Unlock()
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	s.Sample()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample()
		}
	}
}

// Sample reads every process once.
func (s *RSSSampler) Sample() {
	refs := s.Procs()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.procs == nil {
		s.procs = map[string]*procRSS{}
		s.start = time.Now()
	}
	var total int64
	now := map[string]int64{}
	for _, ref := range refs {
		st, err := readStatus(ref.PID)
		if err != nil {
			continue // exited between listing and reading
		}
		key := fmt.Sprintf("%s (pid %d)", ref.Name, ref.PID)
		p := s.procs[key]
		if p == nil {
			p = &procRSS{ref: ref}
			s.procs[key] = p
		}
		p.peakKB = max(p.peakKB, st.RSSKB)
		p.hwmKB = max(p.hwmKB, st.HWMKB)
		p.lastKB = st.RSSKB
		total += st.RSSKB
		now[ref.Name] += st.RSSKB
	}
	s.samples++
	s.peakKB = max(s.peakKB, total)
	s.lastKB = total
	// The first sample past each minute boundary stands for that minute's end.
	if m := int(time.Since(s.start) / time.Minute); m > len(s.minutes) {
		s.minutes = append(s.minutes, MinuteRSS{Minute: m, TotalKB: total, ByProc: now})
	}
}

// Result is what was sampled so far.
func (s *RSSSampler) Result() RSSResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := RSSResult{IntervalMS: s.Interval.Milliseconds(), Samples: s.samples, PeakTotalKB: s.peakKB,
		LastTotalKB: s.lastKB, MinuteTotals: slices.Clone(s.minutes)}
	for _, p := range s.procs {
		r.Procs = append(r.Procs, ProcRSSResult{Name: p.ref.Name, PID: p.ref.PID, PeakKB: p.peakKB, HWMKB: p.hwmKB, LastKB: p.lastKB})
	}
	slices.SortFunc(r.Procs, func(a, b ProcRSSResult) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		return a.PID - b.PID
	})
	return r
}
