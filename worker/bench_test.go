package worker_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parkd/parkd/jobs"
	"github.com/parkd/parkd/repo"
)

// BenchmarkStartStopThroughQueue drives b.N session start+stop pairs through
// the real asynq server (Redis) and Postgres, the way upstream apps do: all
// starts are enqueued, then, as each is applied, its stop. It reports settled
// pairs per second.
//
//	go test -run '^$' -bench StartStopThroughQueue -benchtime 4000x ./worker/
func BenchmarkStartStopThroughQueue(b *testing.B) {
	e := setup(b)
	e.start()
	permits := make([]string, 100)
	for i := range permits {
		permits[i] = e.permit(500)
	}
	b.ResetTimer()
	began := time.Now()
	startIDs := make([]string, b.N)
	for i := range b.N {
		task, id := e.startTask(permits[i%len(permits)], fmt.Sprintf("B%07d", i), nil, nil)
		e.enqueue(task)
		startIDs[i] = id
	}
	// Stop each session as soon as its start is applied.
	var stopped atomic.Int64
	var wg sync.WaitGroup
	const pollers = 8
	for w := range pollers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += pollers {
				var s jobs.Session
				if r := e.await(startIDs[i], &s); r.Status != repo.RequestApplied {
					b.Errorf("start %s: %s", startIDs[i], r.Error)
					continue
				}
				stop, _ := e.stopTask(s.ID, nil)
				e.enqueue(stop)
				stopped.Add(1)
			}
		}()
	}
	wg.Wait()
	// Wait until every stop has its outcome (the worker writes the request row
	// when it takes the task, so count finished stops, not pending rows).
	for {
		var done int
		if err := e.store.DB.NewRaw("SELECT count(*) FROM requests WHERE type = ? AND status <> 'pending'", jobs.TypeSessionStop).Scan(e.ctx, &done); err != nil {
			b.Fatal(err)
		}
		if done == int(stopped.Load()) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(began)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "pairs/s")
	e.checkInvariants()
	var open int
	if err := e.store.DB.NewRaw("SELECT count(*) FROM sessions WHERE state = 'open'").Scan(e.ctx, &open); err != nil || open != 0 {
		b.Fatalf("%d sessions still open (%v)", open, err)
	}
}

// BenchmarkStartStopHandlers measures the Postgres side alone: the start and
// stop handlers called directly, in parallel, one transaction each.
//
//	go test -run '^$' -bench StartStopHandlers -benchtime 5000x ./worker/
func BenchmarkStartStopHandlers(b *testing.B) {
	e := setup(b)
	e.h.Client = nil // no Redis: auto-stops stay in the outbox
	permits := make([]string, 100)
	for i := range permits {
		permits[i] = e.permit(500)
	}
	var n atomic.Int64
	b.ResetTimer()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			task, id := e.startTask(permits[int(i)%len(permits)], fmt.Sprintf("H%07d", i), nil, nil)
			if err := e.h.SessionStart(e.ctx, task); err != nil {
				b.Error(err)
				return
			}
			var s jobs.Session
			if r := e.outcome(id, &s); r.Status != repo.RequestApplied {
				b.Errorf("start: %s", r.Error)
				return
			}
			stop, _ := e.stopTask(s.ID, nil)
			if err := e.h.SessionStop(e.ctx, stop); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pairs/s")
	e.checkInvariants()
}
