package bench

import (
	"sync"
	"sync/atomic"

	"github.com/parkd/parkd/tools/load"
)

// OpStats counts one kind of operation in a phase: its latencies, its successes,
// how many were answered 202 pending first, and its failures by kind.
type OpStats struct {
	Lat     *load.Recorder
	ok      atomic.Int64
	pending atomic.Int64

	mu     sync.Mutex
	errors map[string]int64
}

// NewOpStats returns empty stats.
func NewOpStats() *OpStats { return &OpStats{Lat: load.NewRecorder(), errors: map[string]int64{}} }

// Fail counts a failure of kind (e.g. "503 unavailable", "transport: timeout").
func (s *OpStats) Fail(kind string) {
	s.mu.Lock()
	s.errors[kind]++
	s.mu.Unlock()
}

// Errors returns a copy of the failure counts.
func (s *OpStats) Errors() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.errors))
	for k, v := range s.errors {
		out[k] = v
	}
	return out
}

// OK and Pending are the counts of successes and of 202 answers.
func (s *OpStats) OK() int64      { return s.ok.Load() }
func (s *OpStats) Pending() int64 { return s.pending.Load() }

// OpResult is an OpStats as reported.
type OpResult struct {
	OK      int64            `json:"ok"`
	Pending int64            `json:"pending_202"`
	Errors  map[string]int64 `json:"errors,omitempty"`
	Latency load.Latency     `json:"latency"`
}

// Result snapshots the stats.
func (s *OpStats) Result() OpResult {
	return OpResult{OK: s.OK(), Pending: s.Pending(), Errors: s.Errors(), Latency: s.Lat.Summary()}
}

// ErrorCount is the number of failures of every kind.
func (r OpResult) ErrorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}
