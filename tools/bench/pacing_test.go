package bench

import (
	"context"
	"testing"
	"time"
)

func TestScheduleMath(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s := Schedule{Start: t0, Rate: 1000}
	if got := s.At(0); !got.Equal(t0) {
		t.Errorf("arrival 0 at %v", got)
	}
	if got := s.At(1500).Sub(t0); got != 1500*time.Millisecond {
		t.Errorf("arrival 1500 at +%v, want +1.5s", got)
	}
	if got := s.Interval(); got != time.Millisecond {
		t.Errorf("interval %v", got)
	}
	for _, c := range []struct {
		rate float64
		d    time.Duration
		want int64
	}{
		{1000, 20 * time.Second, 20000}, // exact: the arrival due at 20 s belongs to the next window
		{500, 2 * time.Second, 1000},
		{3, time.Second, 3},
		{115.7, 30 * time.Second, 3471}, // 3471 = ceil(3471.0); due times 0 .. 29.992 s
		{115.7, 10 * time.Second, 1157},
		{0.5, 3 * time.Second, 2}, // at 0 s and 2 s
		{10, 0, 0},
	} {
		if got := (Schedule{Start: t0, Rate: c.rate}).Count(c.d); got != c.want {
			t.Errorf("Count(%v) at %v/s = %d, want %d", c.d, c.rate, got, c.want)
		}
	}
	// No drift: the millionth arrival at 7/s is due where i/rate says.
	s7 := Schedule{Start: t0, Rate: 7}
	i, rate := int64(1_000_000), 7.0
	if got, want := s7.At(i).Sub(t0), time.Duration(float64(i)*float64(time.Second)/rate); got != want {
		t.Errorf("arrival 1e6 at 7/s: +%v, want +%v", got, want)
	}
	// The last arrival of a window is due before its end.
	last := Schedule{Start: t0, Rate: 115.7}
	if n := last.Count(30 * time.Second); !last.At(n - 1).Before(t0.Add(30 * time.Second)) {
		t.Errorf("arrival %d is due after the window", n-1)
	}
}

func TestPaceSendsEveryArrivalOnTime(t *testing.T) {
	out := make(chan arrival, 1000)
	s := Schedule{Start: time.Now(), Rate: 200}
	pace(context.Background(), s, 250*time.Millisecond, out)
	var got []arrival
	for a := range out {
		got = append(got, a)
	}
	if len(got) != 50 {
		t.Fatalf("%d arrivals, want 50", len(got))
	}
	for i, a := range got {
		if a.i != int64(i) || !a.due.Equal(s.At(int64(i))) {
			t.Fatalf("arrival %d = %+v", i, a)
		}
	}
	// Every arrival was sent no earlier than it was due (pace sleeps until
	// then); so the last one, due at 245 ms, took at least that long.
	if since := time.Since(s.Start); since < 245*time.Millisecond {
		t.Fatalf("pace returned after %v", since)
	}
}

func TestPaceStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan arrival) // nobody reads: pace must not hang
	done := make(chan struct{})
	go func() { pace(ctx, Schedule{Start: time.Now(), Rate: 10}, time.Hour, out); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("pace did not stop on cancel")
	}
}
