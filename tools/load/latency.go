package load

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latency is a latency distribution as reported, in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// Recorder collects latencies of one kind of operation; safe for concurrent
// use. An HDR histogram keeps three significant digits over 1 µs to 1 h in a
// fixed few tens of kilobytes, however long the run.
type Recorder struct {
	mu sync.Mutex
	h  *hdrhistogram.Histogram
}

const (
	lowestUS  = 1
	highestUS = int64(time.Hour / time.Microsecond)
)

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder {
	return &Recorder{h: hdrhistogram.New(lowestUS, highestUS, 3)}
}

// Record adds one latency. Values beyond the histogram's range are clamped to
// it rather than dropped, so that a pathological request still shows in max.
func (r *Recorder) Record(d time.Duration) {
	us := min(max(d.Microseconds(), lowestUS), highestUS)
	r.mu.Lock()
	_ = r.h.RecordValue(us) // in range by construction
	r.mu.Unlock()
}

// Summary returns the distribution recorded so far.
func (r *Recorder) Summary() Latency {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h.TotalCount() == 0 {
		return Latency{}
	}
	ms := func(us int64) float64 { return float64(us) / 1000 }
	return Latency{
		Count: r.h.TotalCount(),
		P50:   ms(r.h.ValueAtQuantile(50)),
		P90:   ms(r.h.ValueAtQuantile(90)),
		P99:   ms(r.h.ValueAtQuantile(99)),
		Max:   ms(r.h.Max()),
		Mean:  r.h.Mean() / 1000,
	}
}

// Percentile is the nearest-rank percentile p (0–100) of sorted samples: the
// smallest sample at or below which p% of the samples lie. It is used where
// samples can be negative (an auto-stop settled before its planned end), which
// an HDR histogram cannot hold. NaN for no samples.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	return sorted[min(max(rank, 1), n)-1]
}

// Spread summarises samples (any unit) by p50, p99 and max.
type Spread struct {
	Count int     `json:"count"`
	Min   float64 `json:"min"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// SpreadOf sorts samples in place and summarises them.
func SpreadOf(samples []float64) Spread {
	if len(samples) == 0 {
		return Spread{}
	}
	slices.Sort(samples)
	return Spread{Count: len(samples), Min: samples[0], P50: Percentile(samples, 50), P90: Percentile(samples, 90),
		P99: Percentile(samples, 99), Max: samples[len(samples)-1]}
}

// FormatMS formats milliseconds with the precision that means something at their size.
func FormatMS(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.2fms", v)
	case v < 10:
		return fmt.Sprintf("%.1fms", v)
	case v < 10_000:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.1fs", v/1000)
}

// String is the distribution as the reports print it.
func (l Latency) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s p90 %s p99 %s max %s", FormatMS(l.P50), FormatMS(l.P90), FormatMS(l.P99), FormatMS(l.Max))
}
