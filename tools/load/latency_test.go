package load

import (
	"math"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	s := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p, want float64
	}{{0, 1}, {10, 1}, {11, 2}, {50, 5}, {90, 9}, {99, 10}, {100, 10}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("p%v of 1..10 = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile([]float64{-0.4}, 99); got != -0.4 {
		t.Errorf("p99 of one sample = %v", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("percentile of nothing should be NaN")
	}
}

func TestSpreadOfSortsAndKeepsNegatives(t *testing.T) {
	sp := SpreadOf([]float64{0.5, -0.2, 0.3, 75, 0.4})
	if sp.Count != 5 || sp.Min != -0.2 || sp.Max != 75 || sp.P50 != 0.4 || sp.P99 != 75 {
		t.Fatalf("spread = %+v", sp)
	}
	if (SpreadOf(nil) != Spread{}) {
		t.Fatal("spread of nothing should be zero")
	}
}

func TestRecorderPercentiles(t *testing.T) {
	r := NewRecorder()
	// 1..1000 ms: p50 500 ms, p90 900, p99 990, max 1000, within HDR's three
	// significant digits.
	for i := 1; i <= 1000; i++ {
		r.Record(time.Duration(i) * time.Millisecond)
	}
	s := r.Summary()
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > want/500 {
			t.Errorf("%s = %v ms, want about %v", name, got, want)
		}
	}
	if s.Count != 1000 {
		t.Fatalf("count = %d", s.Count)
	}
	near("p50", s.P50, 500)
	near("p90", s.P90, 900)
	near("p99", s.P99, 990)
	near("max", s.Max, 1000)
	near("mean", s.Mean, 500.5)

	// Out of range values are clamped, not lost.
	r2 := NewRecorder()
	r2.Record(0)
	r2.Record(2 * time.Hour)
	if s := r2.Summary(); s.Count != 2 || s.Max < 3_590_000 {
		t.Fatalf("clamped = %+v", s)
	}
	if (NewRecorder().Summary() != Latency{}) {
		t.Fatal("empty recorder should summarise to zero")
	}
}

func TestMsFormatting(t *testing.T) {
	for v, want := range map[float64]string{0.734: "0.73ms", 4.61: "4.6ms", 41.4: "41ms", 12345: "12.3s"} {
		if got := FormatMS(v); got != want {
			t.Errorf("FormatMS(%v) = %q, want %q", v, got, want)
		}
	}
}
